"""`smt check` (the CI gate) and `smt release` (template versions)."""

from __future__ import annotations

import re

import pytest

from scaffold import SmtError, TemplateRepo, new_package, releases, sync_fleet
from scaffold.check import check_fleet
from scaffold.cli import main
from scaffold.versions import release

from .helpers import commit_all, git


@pytest.fixture
def repo(template_repo):
    repo = TemplateRepo.find(template_repo)
    new_package(repo, "ctr_a")
    new_package(repo, "ctr_b")
    commit_all(template_repo, "fleet")
    return repo


def _whats(repo):
    return [(p.package, p.what.split(":")[0].split(" (")[0]) for p in check_fleet(repo)]


def test_clean_fleet_passes(repo, capsys):
    assert check_fleet(repo) == []
    assert main(["--repo", str(repo.root), "check"]) == 0 and "ok" in capsys.readouterr().out


def test_behind_after_a_release_until_synced(repo):
    changelog = repo.root / "template_repo" / "CHANGELOG.md"
    changelog.write_text(changelog.read_text() + "\n## v1.1.0\n- EPS is 1e-6.\n")
    metrics = repo.root / "template_repo" / "src" / "{{ name }}" / "metrics.py"
    metrics.write_text(metrics.read_text().replace("EPS = 1e-7", "EPS = 1e-6"))
    commit_all(repo.root, "template: EPS")
    assert "EPS is 1e-6" in release(repo, "v1.1.0")
    assert _whats(repo) == [("ctr_a", "behind"), ("ctr_b", "behind")]
    assert main(["--repo", str(repo.root), "check"]) == 1
    sync_fleet(repo, run_tests=False)
    commit_all(repo.root, "fleet at v1.1.0")
    assert check_fleet(repo) == []


def test_undeclared_drift_fails_declared_passes(repo):
    metrics = repo.root / "generated" / "ctr_a" / "src" / "ctr_a" / "metrics.py"
    metrics.write_text(metrics.read_text() + "# tuned here\n")
    commit_all(repo.root, "ctr_a: local change")
    assert _whats(repo) == [("ctr_a", "undeclared drift in template-owned files")]
    (repo.root / "generated" / "ctr_a" / ".smt-drift").write_text("src/ctr_a/metrics.py  # kept on purpose\n")
    commit_all(repo.root, "ctr_a: declare the drift")
    assert check_fleet(repo) == []


def test_unmerged_state_markers_and_rej_fail(repo):
    loss = repo.root / "generated" / "ctr_b" / "src" / "ctr_b" / "loss.py"
    loss.write_text(loss.read_text() + "<<<<<<< before updating\nx = 1\n=======\nx = 2\n>>>>>>> after updating\n")
    (loss.parent / "train.py.rej").write_text("@@ hunk @@\n")
    whats = _whats(repo)
    assert ("ctr_b", "stray src/ctr_b/train.py.rej") in whats and (
        "ctr_b",
        "conflict markers in src/ctr_b/loss.py",
    ) in whats


def test_a_clone_without_tags_is_checked_against_the_template(repo, tmp_path):
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--no-tags", "--depth", "1", f"file://{repo.root}", str(clone))
    assert check_fleet(TemplateRepo.find(clone)) == []
    metrics = clone / "generated" / "ctr_a" / "src" / "ctr_a" / "metrics.py"
    metrics.write_text(metrics.read_text() + "# edited\n")
    assert {p.package for p in check_fleet(TemplateRepo.find(clone))} == {"ctr_a"}
    full = tmp_path / "full"  # a full clone that left the tags behind (some CI checkouts do)
    git(tmp_path, "clone", "-q", "--no-tags", f"file://{repo.root}", str(full))
    assert check_fleet(TemplateRepo.find(full)) == []


def _release_eps(repo, version: str, eps: str) -> None:
    changelog = repo.root / "template_repo" / "CHANGELOG.md"
    changelog.write_text(changelog.read_text() + f"\n## {version}\n- EPS is {eps}.\n")
    metrics = repo.root / "template_repo" / "src" / "{{ name }}" / "metrics.py"
    metrics.write_text(re.sub(r"EPS = \S+", f"EPS = {eps}", metrics.read_text()))
    commit_all(repo.root, f"template: EPS {eps}")
    release(repo, version)


def test_a_clone_without_tags_gets_the_recorded_releases_back_and_can_sync(repo, tmp_path):
    _release_eps(repo, "v1.1.0", "1e-6")
    sync_fleet(repo, run_tests=False)
    commit_all(repo.root, "fleet at v1.1.0; the release record")
    assert releases.read(repo.root) == {"v1.1.0": git(repo.root, "rev-parse", "v1.1.0^{commit}").strip()}
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--no-tags", f"file://{repo.root}", str(clone))
    assert git(clone, "tag", "--list") == ""
    copy = TemplateRepo.find(clone)  # puts back the recorded tag (v1 was never recorded: not restored)
    assert git(clone, "tag", "--list").split() == ["v1.1.0"]
    assert git(clone, "rev-parse", "v1.1.0^{commit}") == git(repo.root, "rev-parse", "v1.1.0^{commit}")
    _release_eps(copy, "v1.2.0", "1e-5")  # the next release, made in the clone: sync needs v1.1.0 as its base
    results = sync_fleet(copy, run_tests=False)
    assert [(r.name, r.result) for r in results] == [("ctr_a", "updated"), ("ctr_b", "updated")]
    assert "EPS = 1e-5" in (clone / "generated" / "ctr_a" / "src" / "ctr_a" / "metrics.py").read_text()
    assert list(releases.read(clone)) == ["v1.1.0", "v1.2.0"]
    (clone / "releases.txt").write_text("v1.3.0 " + "0" * 40 + "\n")  # a commit this clone lacks: left alone
    TemplateRepo.find(clone)
    assert "v1.3.0" not in git(clone, "tag", "--list")


def test_uncommitted_packages_and_phantom_versions_fail(repo):
    extra = repo.root / "generated" / "ctr_a" / "NOTES.md"
    extra.write_text("not committed\n")
    assert [p for p in check_fleet(repo) if p.package == "ctr_a" and "uncommitted" in p.what]
    extra.unlink()
    answers = repo.root / "generated" / "ctr_b" / ".copier-answers.yml"
    answers.write_text(answers.read_text().replace("_commit: v1", "_commit: v1-1-g0123abc"))
    commit_all(repo.root, "what copier update with a dirty tree records")
    problems = check_fleet(repo)
    assert [p for p in problems if p.package == "ctr_b" and "phantom" in p.what], problems
    assert not [p for p in problems if p.package == "ctr_a"]


def test_release_guards(repo):
    with pytest.raises(SmtError, match="must look like v1.2.3"):
        release(repo, "1.0")
    with pytest.raises(SmtError, match="not newer"):
        release(repo, "v0.9.0")
    with pytest.raises(SmtError, match="no entry '## v2.0.0'"):
        release(repo, "v2.0.0")
    git(repo.root, "tag", "2024.1")
    assert ("", "tag '2024.1' parses as a template version; rename it") in [
        (p.package, p.what) for p in check_fleet(repo)
    ]
    changelog = repo.root / "template_repo" / "CHANGELOG.md"
    changelog.write_text(changelog.read_text() + "\n## v2.0.0\n- something\n")
    commit_all(repo.root, "changelog")
    with pytest.raises(SmtError, match="rename them"):
        release(repo, "v2.0.0")


def test_a_package_rendered_after_the_latest_release_is_ahead_not_behind(repo):
    metrics = repo.root / "template_repo" / "src" / "{{ name }}" / "metrics.py"
    metrics.write_text(metrics.read_text().replace("EPS = 1e-7", "EPS = 1e-6"))
    commit_all(repo.root, "template: EPS, not released yet")
    sync_fleet(repo, ref="HEAD", run_tests=False)
    commit_all(repo.root, "fleet at the unreleased template")
    assert _whats(repo) == [("ctr_a", "ahead of the latest release"), ("ctr_b", "ahead of the latest release")]


def test_worker_processes_find_what_one_process_finds(repo):
    """The renders of `smt check --jobs N` run in worker processes: the same problems, in package order."""
    for name, line in (("ctr_a", "# tuned here\n"), ("ctr_b", "# and here\n")):
        metrics = repo.root / "generated" / name / "src" / name / "metrics.py"
        metrics.write_text(metrics.read_text() + line)
    (repo.root / "generated" / "ctr_b" / "stray.rej").write_text("x\n")
    commit_all(repo.root, "local changes")
    one = check_fleet(repo, jobs=1)
    assert check_fleet(repo, jobs=2) == one
    assert [(p.package, p.what.split(":")[0]) for p in one] == [
        ("ctr_a", "undeclared drift in template-owned files"),
        ("ctr_b", "stray stray.rej"),
        ("ctr_b", "undeclared drift in template-owned files"),
    ]
