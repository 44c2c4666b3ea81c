"""`smt sync`: a template change reaches every package, nothing is lost, failures leave packages untouched."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from scaffold import TemplateRepo, fleet_status, new_package, sync_fleet
from scaffold.cli import main

from .helpers import BIN, commit_all, git, make_template_repo, run_tool, tree_files

TEMPLATE_SRC = "template_repo/src/{{ name }}"


def _fleet(root, names=("ctr_a", "ctr_b", "ctr_c")):
    repo = TemplateRepo.find(root)
    for i, name in enumerate(names):
        data = {"events": ["click", "buy"], "interaction": "dot"} if i == 1 else {}
        new_package(repo, name, data)
    commit_all(root, "fleet")
    return repo


def _edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _release(root, tag: str, message: str = "template change") -> None:
    commit_all(root, message)
    git(root, "tag", tag)


def _change_metrics_default(root) -> None:
    _edit(root / TEMPLATE_SRC / "metrics.py", "EPS = 1e-7\n", "EPS = 1e-6\n")


def _pkg_file(root, name, rel) -> str:
    return (root / "generated" / name / "src" / name / rel).read_text()


@pytest.fixture
def fleet_repo(template_repo):
    _fleet(template_repo)
    return template_repo


def test_change_reaches_every_package_with_zero_hand_edits(fleet_repo):
    _change_metrics_default(fleet_repo)
    with (fleet_repo / TEMPLATE_SRC / "loss.py").open("a") as fh:
        fh.write("\n\ndef focal_v2(x: torch.Tensor) -> torch.Tensor:\n    return x\n")
    _release(fleet_repo, "v2")
    results = sync_fleet(TemplateRepo.find(fleet_repo), run_tests=False)
    assert {r.result for r in results} == {"updated"} and {r.to_version for r in results} == {"v2"}
    for name in ("ctr_a", "ctr_b", "ctr_c"):
        assert "EPS = 1e-6" in _pkg_file(fleet_repo, name, "metrics.py")
        assert "def focal_v2" in _pkg_file(fleet_repo, name, "loss.py")
        assert yaml.safe_load((fleet_repo / "generated" / name / ".copier-answers.yml").read_text())["_commit"] == "v2"
    statuses = fleet_status(TemplateRepo.find(fleet_repo))
    assert all(s.state == "up to date" and not s.drift for s in statuses)
    assert git(fleet_repo, "status", "--porcelain", "--", "generated").startswith("M  ")  # staged, ready to commit
    assert sync_fleet(TemplateRepo.find(fleet_repo), run_tests=False)[0].result == "up to date"


def _replace_in_template(root, old: str, new: str) -> None:
    for path in (root / "template_repo").rglob("*.jinja"):
        text = path.read_text()
        if old in text:
            path.write_text(text.replace(old, new))


def _remove_description_question(root) -> None:
    config = root / "copier.yml"
    text = config.read_text()
    start = text.index("\ndescription:")
    config.write_text(text[:start] + text[text.index("\nevents:") :])
    _replace_in_template(root, "{{ description | wordwrap(100) }}", "A ranking model.")
    _replace_in_template(root, "{{ description }}", "A ranking model")


SUMMARY_QUESTION = """
summary:
  type: str
  help: One line saying what the model predicts
  default: "Ranking model built from the Standard Model Template"
"""
RENAME_MIGRATION = """
_migrations:
  - version: v2
    when: "{{ _stage == 'before' }}"
    command:
      - "{{ _copier_python }}"
      - "-c"
      - "import pathlib; p = pathlib.Path('.copier-answers.yml');
        p.write_text(p.read_text().replace('description:', 'summary:'))"
"""


def _rename_description_to_summary(root) -> None:
    """v2 renames the question `description` to `summary`; a copier migration renames the recorded answer."""
    config = root / "copier.yml"
    text = config.read_text()
    start, end = text.index("\ndescription:"), text.index("\nevents:")
    config.write_text(text[:start] + SUMMARY_QUESTION + text[end:] + RENAME_MIGRATION)
    _replace_in_template(root, "{{ description", "{{ summary")


SCENARIOS = {
    "edit-elsewhere-in-changed-file": lambda root: _change_metrics_default(root),
    "new-template-file": lambda root: (root / TEMPLATE_SRC / "calibration.py").write_text('"""New."""\n\nK = 1\n'),
    "new-question-with-default": lambda root: (
        (root / "copier.yml").open("a").write("\nowner_team:\n  type: str\n  help: Owner\n  default: ads\n"),
        (root / "template_repo" / "OWNERS.jinja").write_text("{{ owner_team }}\n"),
    ),
    "removed-question": _remove_description_question,
    "template-deletes-unmodified-file": lambda root: (root / TEMPLATE_SRC / "loss.py").unlink()
    or _edit(root / TEMPLATE_SRC / "train.py", "from .loss import multi_event_bce\n", ""),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_result_equals_copier_update(scenario, fleet_repo, tmp_path):
    # A local edit in a template-owned file and in a model-owned file, committed, in every package.
    for name in ("ctr_a", "ctr_b"):
        _edit(fleet_repo / "generated" / name / "src" / name / "config.py", '"""Typed', '"""Local note.\n\nTyped')
        _edit(fleet_repo / "generated" / name / "src" / name / "features.yaml", "cardinality: 500", "cardinality: 9")
    commit_all(fleet_repo, "local edits")
    SCENARIOS[scenario](fleet_repo)
    _release(fleet_repo, "v2")
    twin = tmp_path / "twin"
    shutil.copytree(fleet_repo, twin)
    results = sync_fleet(TemplateRepo.find(fleet_repo), ["ctr_a", "ctr_b"], run_tests=False)
    assert {r.result for r in results} == {"updated"}, results
    for name in ("ctr_a", "ctr_b"):
        done = run_tool("copier", "update", "-q", "--defaults", f"generated/{name}", cwd=twin)
        assert done.returncode == 0, done.stderr
        git(twin, "add", "-A", f"generated/{name}")
        assert tree_files(fleet_repo / "generated" / name) == tree_files(twin / "generated" / name), name


def test_conflict_leaves_that_package_byte_identical_and_updates_the_others(fleet_repo, capsys):
    _edit(fleet_repo / "generated/ctr_a/src/ctr_a/metrics.py", "EPS = 1e-7\n", "EPS = 1e-9  # ctr_a needs it\n")
    commit_all(fleet_repo, "ctr_a: local EPS")
    before = tree_files(fleet_repo / "generated" / "ctr_a")
    _change_metrics_default(fleet_repo)
    _release(fleet_repo, "v2")
    code = main(["--repo", str(fleet_repo), "sync", "--no-test"])
    out = capsys.readouterr().out
    assert code == 1
    assert "ctr_a" in out and "conflict" in out and "<<<<<<< package" in out and "EPS = 1e-9" in out
    assert tree_files(fleet_repo / "generated" / "ctr_a") == before
    assert "EPS = 1e-6" in _pkg_file(fleet_repo, "ctr_b", "metrics.py")
    assert not list(fleet_repo.rglob("*.rej")) and git(fleet_repo, "ls-files", "-u") == ""
    assert "<<<<<<<" not in _pkg_file(fleet_repo, "ctr_a", "metrics.py")


def test_model_owned_files_are_never_overwritten(fleet_repo):
    _edit(fleet_repo / "generated/ctr_a/src/ctr_a/features.yaml", "cardinality: 500", "cardinality: 42")
    commit_all(fleet_repo, "ctr_a: own schema")
    untouched = _pkg_file(fleet_repo, "ctr_b", "features.yaml")
    _edit(fleet_repo / TEMPLATE_SRC / "features.yaml.jinja", "cardinality: 300}", "cardinality: 301}")
    _edit(fleet_repo / TEMPLATE_SRC / "extensions.py", "    return Extension()\n", "    return Extension()  # v2\n")
    _change_metrics_default(fleet_repo)
    _release(fleet_repo, "v2")
    assert {r.result for r in sync_fleet(TemplateRepo.find(fleet_repo), run_tests=False)} == {"updated"}
    assert "cardinality: 42" in _pkg_file(fleet_repo, "ctr_a", "features.yaml")
    assert _pkg_file(fleet_repo, "ctr_b", "features.yaml") == untouched
    assert "# v2" not in _pkg_file(fleet_repo, "ctr_c", "extensions.py")


def test_template_deleting_a_modified_file_is_reported(fleet_repo):
    _edit(fleet_repo / "generated/ctr_a/src/ctr_a/loss.py", '"""Training loss', '"""Our loss')
    commit_all(fleet_repo, "ctr_a: customise loss.py")
    before = tree_files(fleet_repo / "generated" / "ctr_a")
    (fleet_repo / TEMPLATE_SRC / "loss.py").unlink()
    _edit(fleet_repo / TEMPLATE_SRC / "train.py", "from .loss import multi_event_bce\n", "")
    _release(fleet_repo, "v2")
    results = {r.name: r for r in sync_fleet(TemplateRepo.find(fleet_repo), run_tests=False)}
    assert results["ctr_a"].result == "conflict" and "deletes this file" in results["ctr_a"].reason
    assert tree_files(fleet_repo / "generated" / "ctr_a") == before
    assert results["ctr_b"].result == "updated" and not (fleet_repo / "generated/ctr_b/src/ctr_b/loss.py").exists()


def test_deletions_are_not_resurrected_by_later_syncs(fleet_repo):
    (fleet_repo / TEMPLATE_SRC / "loss.py").unlink()
    _edit(fleet_repo / TEMPLATE_SRC / "train.py", "from .loss import multi_event_bce\n", "")
    _release(fleet_repo, "v2")
    repo = TemplateRepo.find(fleet_repo)
    assert sync_fleet(repo, ["ctr_a"], run_tests=False)[0].result == "updated"  # left staged, uncommitted
    assert sync_fleet(repo, ["ctr_b"], run_tests=False)[0].result == "updated"
    assert sync_fleet(repo, ["ctr_c"], run_tests=False)[0].result == "updated"
    for name in ("ctr_a", "ctr_b", "ctr_c"):
        assert not (fleet_repo / "generated" / name / "src" / name / "loss.py").exists(), name


def test_stray_rej_and_unmerged_state_block_the_sync(fleet_repo):
    _change_metrics_default(fleet_repo)
    _release(fleet_repo, "v2")
    stray = fleet_repo / "generated/ctr_b/src/ctr_b/train.py.rej"
    stray.write_text("@@ a rejected hunk someone must apply @@\n")
    with pytest.raises(Exception, match="stray rejected-hunk"):
        sync_fleet(TemplateRepo.find(fleet_repo), run_tests=False)
    assert stray.read_text().startswith("@@") and "EPS = 1e-7" in _pkg_file(fleet_repo, "ctr_a", "metrics.py")


def test_dirty_package_is_refused_and_the_others_proceed(fleet_repo):
    _change_metrics_default(fleet_repo)
    _release(fleet_repo, "v2")
    note = fleet_repo / "generated/ctr_a/NOTES.md"
    note.write_text("work in progress\n")
    results = {r.name: r for r in sync_fleet(TemplateRepo.find(fleet_repo), run_tests=False)}
    assert results["ctr_a"].result == "refused" and "uncommitted changes" in results["ctr_a"].reason
    assert note.read_text() == "work in progress\n" and "EPS = 1e-7" in _pkg_file(fleet_repo, "ctr_a", "metrics.py")
    assert results["ctr_b"].result == results["ctr_c"].result == "updated"


def test_failing_post_update_tests_leave_the_package_as_it_was(fleet_repo):
    broken = fleet_repo / "template_repo" / "tests" / "test_a_broken.py"  # first in order: -x stops there
    broken.write_text("def test_broken():\n    assert False\n")
    _release(fleet_repo, "v2")
    before = tree_files(fleet_repo / "generated" / "ctr_a")
    result = sync_fleet(TemplateRepo.find(fleet_repo), ["ctr_a"])[0]
    assert result.result == "failed" and "tests fail" in result.reason
    assert "FAILED tests/test_a_broken.py::test_broken" in result.reason  # which test, not pytest's banner
    assert tree_files(fleet_repo / "generated" / "ctr_a") == before
    assert git(fleet_repo, "status", "--porcelain", "--", "generated") == ""


def test_sigkill_at_any_moment_then_rerun_completes(fleet_repo, tmp_path):
    _change_metrics_default(fleet_repo)
    _release(fleet_repo, "v2")
    reference = tmp_path / "reference"
    shutil.copytree(fleet_repo, reference)
    sync_fleet(TemplateRepo.find(reference), run_tests=False)
    for delay in (0.5, 1.2, 2.0):
        victim = tmp_path / f"victim{delay}"
        shutil.copytree(fleet_repo, victim)
        proc = subprocess.Popen([str(BIN / "smt"), "sync", "--no-test", "--jobs", "1"], cwd=victim)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        results = sync_fleet(TemplateRepo.find(victim), run_tests=False)
        assert {r.result for r in results} <= {"updated", "up to date"}, (delay, results)
        assert tree_files(victim / "generated") == tree_files(reference / "generated"), delay


def test_parallel_workers_give_the_same_result_as_one(fleet_repo, tmp_path):
    _change_metrics_default(fleet_repo)
    (fleet_repo / TEMPLATE_SRC / "calibration.py").write_text('"""New."""\n\nK = 1\n')
    _release(fleet_repo, "v2")
    twin = tmp_path / "twin"
    shutil.copytree(fleet_repo, twin)
    one = sync_fleet(TemplateRepo.find(fleet_repo), jobs=1, run_tests=False)
    two = sync_fleet(TemplateRepo.find(twin), jobs=2, run_tests=False)
    assert [(r.name, r.result, r.files_changed) for r in one] == [(r.name, r.result, r.files_changed) for r in two]
    assert tree_files(fleet_repo / "generated") == tree_files(twin / "generated")


def test_adopt_a_technique_by_answer(fleet_repo):
    results = sync_fleet(TemplateRepo.find(fleet_repo), ["ctr_b"], overrides={"interaction": "dcn_v2"}, run_tests=False)
    assert results[0].result == "updated" and "src/ctr_b/spec.py" in results[0].files_changed
    assert 'interaction="dcn_v2"' in _pkg_file(fleet_repo, "ctr_b", "spec.py")
    answers = yaml.safe_load((fleet_repo / "generated/ctr_b/.copier-answers.yml").read_text())
    assert answers["interaction"] == "dcn_v2" and answers["dcn_rank"] == 32
    assert not fleet_status(TemplateRepo.find(fleet_repo), ["ctr_b"])[0].drift
    bad = sync_fleet(TemplateRepo.find(fleet_repo), ["ctr_a"], overrides={"towers": "mmoe"}, run_tests=False)
    assert bad[0].result == "failed" and "needs two or more events" in bad[0].reason


def test_no_downgrade_and_unknown_versions(fleet_repo):
    _change_metrics_default(fleet_repo)
    _release(fleet_repo, "v2")
    repo = TemplateRepo.find(fleet_repo)
    sync_fleet(repo, run_tests=False)
    commit_all(fleet_repo, "fleet at v2")
    assert {r.result for r in sync_fleet(repo, ref="v1", run_tests=False)} == {"refused"}
    with pytest.raises(Exception, match="not found"):
        sync_fleet(repo, ref="v9", run_tests=False)


def test_dry_run_writes_nothing(fleet_repo):
    _change_metrics_default(fleet_repo)
    _release(fleet_repo, "v2")
    before = tree_files(fleet_repo / "generated")
    results = sync_fleet(TemplateRepo.find(fleet_repo), dry_run=True, run_tests=False)
    assert {r.result for r in results} == {"would update"}
    assert all("src/ctr_a/metrics.py" in r.files_changed or r.name != "ctr_a" for r in results)
    assert tree_files(fleet_repo / "generated") == before


def test_syncs_to_the_latest_release_not_an_untagged_head(fleet_repo):
    _change_metrics_default(fleet_repo)
    commit_all(fleet_repo, "unreleased template change")
    results = sync_fleet(TemplateRepo.find(fleet_repo), run_tests=False)
    assert {(r.result, r.to_version) for r in results} == {("up to date", "v1")}


def test_make_template_repo_helper_is_real(tmp_path):
    root = make_template_repo(tmp_path / "r")
    assert git(root, "tag").split() == ["v1"]


def test_renamed_question_is_migrated_as_copier_does(template_repo, tmp_path):
    repo = TemplateRepo.find(template_repo)
    new_package(repo, "ctr_a", {"description": "Clicks on the feed"})
    commit_all(template_repo, "fleet")
    _rename_description_to_summary(template_repo)
    _release(template_repo, "v2")
    twin = tmp_path / "twin"
    shutil.copytree(template_repo, twin)
    refused = sync_fleet(repo, run_tests=False)[0]
    assert refused.result == "refused" and "--trust" in refused.reason
    assert sync_fleet(repo, run_tests=False, trust=True)[0].result == "updated"
    answers = yaml.safe_load((template_repo / "generated/ctr_a/.copier-answers.yml").read_text())
    assert answers["summary"] == "Clicks on the feed" and "description" not in answers
    assert "Clicks on the feed" in (template_repo / "generated/ctr_a/README.md").read_text()
    done = run_tool("copier", "update", "-q", "--defaults", "--trust", "generated/ctr_a", cwd=twin)
    assert done.returncode == 0, done.stderr
    assert tree_files(template_repo / "generated" / "ctr_a") == tree_files(twin / "generated" / "ctr_a")


def test_fleet_of_separate_repositories_listed_in_a_fleet_file(template_repo, tmp_path, capsys):
    repo = TemplateRepo.find(template_repo)
    for name in ("ext_a", "ext_b"):
        package = new_package(repo, name, dest=tmp_path / "repos" / name).path
        git(package, "init", "-q", "-b", "main")
        git(package, "config", "user.email", "t@smt.invalid")
        git(package, "config", "user.name", "t")
        commit_all(package, "rendered")
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("packages:\n  - repos/ext_a\n  - repos/ext_b\n")
    (tmp_path / "repos" / "ext_b" / "scratch.txt").write_text("uncommitted\n")
    _change_metrics_default(template_repo)
    _release(template_repo, "v2")
    results = {r.name: r for r in sync_fleet(repo, run_tests=False, fleet_file=fleet)}
    assert results["ext_a"].result == "updated" and results["ext_b"].result == "refused"
    assert "EPS = 1e-6" in (tmp_path / "repos/ext_a/src/ext_a/metrics.py").read_text()
    assert git(tmp_path / "repos" / "ext_a", "status", "--porcelain").startswith("M  ")  # staged in its own repo
    assert git(template_repo, "status", "--porcelain") == ""
    assert main(["--repo", str(template_repo), "--fleet", str(fleet), "status", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["ext_a"]["state"] == "up to date" and rows["ext_b"]["state"] == "behind" and rows["ext_b"]["dirty"]
    fleet.write_text("packages: [repos/nowhere]\n")
    with pytest.raises(Exception, match="not packages"):
        sync_fleet(repo, fleet_file=fleet)


def test_a_release_of_the_same_tree_is_recorded_without_other_changes(fleet_repo):
    before = tree_files(fleet_repo / "generated" / "ctr_a")
    (fleet_repo / "NOTES.md").write_text("outside the template\n")
    _release(fleet_repo, "v2", "not a template change")
    results = sync_fleet(TemplateRepo.find(fleet_repo), run_tests=False)
    assert {(r.result, r.to_version) for r in results} == {("updated", "v2")}
    after = tree_files(fleet_repo / "generated" / "ctr_a")
    assert [rel for rel in after if after[rel] != before[rel]] == [".copier-answers.yml"]
    assert yaml.safe_load(after[".copier-answers.yml"])["_commit"] == "v2"
