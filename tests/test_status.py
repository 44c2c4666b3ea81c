"""`smt status`: versions, enabled techniques, drift in template-owned files only, behind/up to date, dirty."""

from __future__ import annotations

import json

from scaffold import TemplateRepo, fleet_status, new_package
from scaffold.cli import main

from .helpers import commit_all, git


def _fleet(template_repo):
    repo = TemplateRepo.find(template_repo)
    new_package(repo, "ctr_a")
    new_package(repo, "ctr_b", {"events": ["click", "buy"], "interaction": "dot"})
    commit_all(template_repo, "fleet")
    return repo


def test_fresh_fleet_is_up_to_date_without_drift(template_repo):
    statuses = fleet_status(_fleet(template_repo))
    assert [s.name for s in statuses] == ["ctr_a", "ctr_b"]
    assert all(s.state == "up to date" and not s.drift and not s.dirty and s.version == "v1" for s in statuses)
    assert statuses[1].answers["events"] == ["click", "buy"] and statuses[1].answers["towers"] == "mmoe"


def test_drift_lists_template_owned_files_only(template_repo):
    repo = _fleet(template_repo)
    src = template_repo / "generated" / "ctr_a" / "src" / "ctr_a"
    (src / "metrics.py").write_text((src / "metrics.py").read_text() + "# local\n")
    (src / "loss.py").unlink()
    (src / "features.yaml").write_text((src / "features.yaml").read_text() + "# model-owned edit\n")
    (src / "extensions.py").write_text("# model-owned\n")
    a, b = fleet_status(repo)
    assert {(d.path, d.kind) for d in a.drift} == {
        ("src/ctr_a/metrics.py", "modified"),
        ("src/ctr_a/loss.py", "deleted"),
    }
    assert a.dirty and not b.drift and not b.dirty


def test_template_commit_makes_packages_behind(template_repo):
    repo = _fleet(template_repo)
    (template_repo / "template_repo" / "CHANGES.md").write_text("v2\n")
    commit_all(template_repo, "template change")
    assert {s.state for s in fleet_status(repo)} == {"behind"}
    (template_repo / "README.md").write_text("not the template\n")
    commit_all(template_repo, "unrelated change")
    assert {s.state for s in fleet_status(repo, ["ctr_b"])} == {"behind"}


def test_unknown_version_is_reported_not_guessed(template_repo):
    repo = _fleet(template_repo)
    git(template_repo, "tag", "-d", "v1")
    statuses = fleet_status(repo)
    assert {s.state for s in statuses} == {"unknown version"} and "not in this clone" in statuses[0].note


def test_cli_json(template_repo, capsys):
    _fleet(template_repo)
    assert main(["--repo", str(template_repo), "status", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["ctr_a", "ctr_b"] and rows[0]["drift"] == []
    assert main(["--repo", str(template_repo), "status", "nope"]) == 2


def test_changes_to_files_the_template_excludes_are_not_a_new_version(template_repo):
    repo = _fleet(template_repo)
    changelog = template_repo / "template_repo" / "CHANGELOG.md"
    changelog.write_text(changelog.read_text() + "\n- a note that never reaches a package\n")
    commit_all(template_repo, "changelog only")
    assert {s.state for s in fleet_status(repo)} == {"up to date"}
    metrics = template_repo / "template_repo" / "src" / "{{ name }}" / "metrics.py"
    metrics.write_text(metrics.read_text() + "# changed\n")
    commit_all(template_repo, "a real template change")
    assert {s.state for s in fleet_status(repo)} == {"behind"}


def test_worker_processes_report_what_one_process_reports(template_repo):
    """Renders run in worker processes (--jobs): same statuses, drift and order as in one process, across two
    recorded template versions (two snapshots)."""
    repo = _fleet(template_repo)
    (template_repo / "template_repo" / "CHANGES.md").write_text("v2\n")
    commit_all(template_repo, "template change")
    git(template_repo, "tag", "v2")
    new_package(repo, "ctr_c", {"interaction": "dcn_v2"})
    src_a = template_repo / "generated" / "ctr_a" / "src" / "ctr_a"
    (src_a / "metrics.py").write_text((src_a / "metrics.py").read_text() + "# local\n")
    (template_repo / "generated" / "ctr_c" / "src" / "ctr_c" / "loss.py").unlink()
    commit_all(template_repo, "fleet: ctr_c, local edits")
    one, workers = fleet_status(repo, jobs=1), fleet_status(repo, jobs=3)
    assert [s.to_dict() for s in workers] == [s.to_dict() for s in one]
    assert [(s.name, s.state, [d.path for d in s.drift]) for s in workers] == [
        ("ctr_a", "behind", ["src/ctr_a/metrics.py"]),
        ("ctr_b", "behind", []),
        ("ctr_c", "up to date", ["src/ctr_c/loss.py"]),
    ]


def test_each_package_lists_the_catalogue_techniques_it_has_on(template_repo, capsys):
    repo = _fleet(template_repo)
    train_yaml = template_repo / "generated" / "ctr_a" / "src" / "ctr_a" / "train.yaml"
    train_yaml.write_text("embedding_weight_decay: 0.001\n")  # emb_wd's switch, pinned by the model
    a, b = fleet_status(repo)
    assert "emb_wd" in a.techniques and "emb_wd" not in b.techniques
    assert "dot" in b.techniques and "mmoe" in b.techniques and "dot" not in a.techniques
    assert main(["--repo", str(template_repo), "status", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["ctr_a"]["techniques"] == a.techniques and rows["ctr_b"]["techniques"] == b.techniques


def test_an_unreadable_train_yaml_or_catalogue_leaves_techniques_unknown_and_the_rest_reported(template_repo, capsys):
    repo = _fleet(template_repo)
    (template_repo / "generated" / "ctr_a" / "src" / "ctr_a" / "train.yaml").write_text("lr: [0.1\n")
    a, b = fleet_status(repo)
    assert a.techniques is None and "train.yaml is not valid YAML" in a.note and a.state == "up to date"
    assert b.techniques and not b.note
    (template_repo / "generated" / "ctr_b" / "src" / "ctr_b" / "config.py").unlink()  # a deleted template file
    a, b = fleet_status(repo)
    assert (
        b.techniques is None
        and "config.py" in b.note
        and ("src/ctr_b/config.py", "deleted") in {(d.path, d.kind) for d in b.drift}
    )
    catalogue = template_repo / "techniques.yml"
    catalogue.write_text("techniques: [\n")
    assert all(s.techniques is None and "techniques.yml" in s.note for s in fleet_status(repo))
    assert main(["--repo", str(template_repo), "status"]) == 0
    assert "techniques unknown" in capsys.readouterr().out
    catalogue.unlink()  # a repository without a catalogue has no techniques to list
    assert all(s.techniques == [] and "techniques" not in s.note for s in fleet_status(repo))
