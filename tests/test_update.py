"""`copier update` brings a package to a newer template version and keeps its local edits."""

from __future__ import annotations

import yaml

from scaffold import TemplateRepo, new_package

from .helpers import commit_all, git, run_package_tests, run_tool


def _edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_update_keeps_model_owned_and_template_owned_edits(template_repo):
    package = new_package(TemplateRepo.find(template_repo), "ctr_a").path
    commit_all(template_repo, "add ctr_a")
    src = package / "src" / "ctr_a"
    # Local edits: a model-owned file (the schema) and a template-owned file (metrics.py), committed.
    _edit(src / "features.yaml", "cardinality: 500}", "cardinality: 777}")
    _edit(src / "metrics.py", "EPS = 1e-7\n", "EPS = 1e-7\nLOCAL_NOTE = 'kept'  # a local edit\n")
    commit_all(template_repo, "ctr_a: local edits")
    # Template v2: a new function in a template-owned file, and a changed default schema.
    template_src = template_repo / "template_repo" / "src" / "{{ name }}"
    with (template_src / "loss.py").open("a") as fh:
        fh.write("\n\ndef total_loss_v2(losses: list[torch.Tensor]) -> torch.Tensor:\n    return sum(losses)\n")
    _edit(template_src / "features.yaml.jinja", "cardinality: 500}", "cardinality: 501}")
    commit_all(template_repo, "template v2")
    git(template_repo, "tag", "v2")

    result = run_tool("copier", "update", "--defaults", "generated/ctr_a", cwd=template_repo)

    assert result.returncode == 0, result.stderr
    assert "def total_loss_v2" in (src / "loss.py").read_text()
    assert "LOCAL_NOTE = 'kept'" in (src / "metrics.py").read_text()
    features = (src / "features.yaml").read_text()
    assert "cardinality: 777}" in features and "cardinality: 501}" not in features
    assert yaml.safe_load((package / ".copier-answers.yml").read_text())["_commit"] == "v2"
    assert git(template_repo, "ls-files", "-u") == ""
    assert run_package_tests(package, "-x", "tests/test_local.py", "tests/test_modules.py").returncode == 0


def test_new_question_with_default_reaches_the_package_on_update(template_repo):
    package = new_package(TemplateRepo.find(template_repo), "ctr_a").path
    commit_all(template_repo, "add ctr_a")
    with (template_repo / "copier.yml").open("a") as fh:
        fh.write("\nowner_team:\n  type: str\n  help: Team that owns the model\n  default: ads-ranking\n")
    (template_repo / "template_repo" / "OWNERS.jinja").write_text("{{ owner_team }}\n")
    commit_all(template_repo, "template v2: owner_team")
    git(template_repo, "tag", "v2")

    result = run_tool("copier", "update", "--defaults", "generated/ctr_a", cwd=template_repo)

    assert result.returncode == 0, result.stderr
    assert (package / "OWNERS").read_text() == "ads-ranking\n"
    assert yaml.safe_load((package / ".copier-answers.yml").read_text())["owner_team"] == "ads-ranking"


def test_the_readme_plain_copier_path_never_records_a_phantom_commit(template_repo):
    """With untracked files in the clone, an implicit HEAD makes copier record a commit that does not exist;
    the README's `--vcs-ref "$(git rev-parse HEAD)"` records the real one, and `smt check` passes."""
    from scaffold.check import check_fleet

    git(template_repo, "tag", "-d", "v1")  # like main: no release tags, the template version is HEAD
    repo = TemplateRepo.find(template_repo)
    new_package(repo, "ctr_a")
    commit_all(template_repo, "add ctr_a")
    metrics = template_repo / "template_repo" / "src" / "{{ name }}" / "metrics.py"
    _edit(metrics, "EPS = 1e-7\n", "EPS = 1e-6\n")
    commit_all(template_repo, "template: EPS")
    (template_repo / "scratch.txt").write_text("an untracked file elsewhere in the clone\n")
    head = git(template_repo, "rev-parse", "HEAD").strip()
    done = run_tool("copier", "update", "-q", "--defaults", "--vcs-ref", head, "generated/ctr_a", cwd=template_repo)
    assert done.returncode == 0, done.stderr
    recorded = yaml.safe_load((template_repo / "generated/ctr_a/.copier-answers.yml").read_text())["_commit"]
    assert repo.resolve(recorded) == head
    git(template_repo, "add", "-A", "generated/ctr_a")
    commit_all(template_repo, "ctr_a: updated with plain copier")
    assert check_fleet(repo) == []
