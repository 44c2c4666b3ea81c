"""One development cycle end to end on a real small fleet: qualify → adopt → sync → ledger → report.

Real template repository, real copier renders, real git, real trainings through each package's own CLI on
synthetic data the packages make themselves. The template of this fleet starts with learning rates that
barely learn, so that a candidate restoring them is clearly helpful and one lowering them again clearly
harmful (the decision rule must tell both apart).
"""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from scaffold import TemplateRepo, new_package, runner
from scaffold.adopt import next_version
from scaffold.cli import main
from scaffold.defaults import config_path, set_training_default, training_defaults
from scaffold.ledger import ADOPTION, QUALIFICATION, read
from scaffold.qualify import TrainJob, run_ray
from scaffold.report import chromium, screenshot

from .helpers import commit_all, git, make_template_repo

GOOD = {"lr": 0.002, "embedding_lr": 0.05}
SHARED_FLEET = pytest.mark.xdist_group("cycle")  # one worker builds the shared fleet once and runs its tests
# The packages of these fleets keep these of the template's test files: their gates in adopt and sync stay real
# pytest runs of the package (its features, its model at its answers, its local tests), while the rest of the
# suite, the template's model code under every answer, is what the template variants test once (test_variants).
FLEET_TESTS = ("conftest.py.jinja", "test_local.py.jinja", "test_metrics.py.jinja")


def make_fleet(root, learning_rates: dict, message: str):
    """A template repository with these default ``learning_rates`` and the ``good_lr`` technique, tagged v1.0.0,
    and its fleet of two packages (ctr_b pins its own lr), committed. The packages' suites are ``FLEET_TESTS``."""
    make_template_repo(root, tag=None)
    for test_file in (root / "template_repo" / "tests").iterdir():
        if test_file.name not in FLEET_TESTS:
            test_file.unlink()
    config = config_path(root)
    for option, value in learning_rates.items():
        set_training_default(config, option, value)
    set_training_default(config, "epochs", 2)
    catalogue = yaml.safe_load((root / "techniques.yml").read_text())
    catalogue["techniques"].append(
        {
            "id": "good_lr",
            "slot": "training",
            "switch": {"training": GOOD},
            "description": "Learning rates that learn",
            "reference": "this test",
        }
    )
    (root / "techniques.yml").write_text(yaml.safe_dump(catalogue, sort_keys=False))
    commit_all(root, message)
    git(root, "tag", "v1.0.0")
    repo = TemplateRepo.find(root)
    new_package(repo, "ctr_a")
    b = new_package(repo, "ctr_b", {"interaction": "concat"}).path
    (b / "src" / "ctr_b" / "train.yaml").write_text("lr: 0.001\n")  # pinned: opts out of a new lr default
    commit_all(root, "fleet of two")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("cycle") / "smt"
    make_fleet(root, {"lr": 1e-6, "embedding_lr": 1e-6}, "template whose learning rates barely learn")
    data = root.parent / "data"
    for name in ("ctr_a", "ctr_b"):
        for split, rows, seed in (("train", 3000, 1), ("valid", 1500, 2), ("test", 1500, 3)):
            out = data / name / f"{split}.parquet"
            assert (
                runner.run_cli(
                    root / "generated" / name, "synth", "--rows", str(rows), "--out", str(out), "--seed", str(seed)
                ).returncode
                == 0
            )
    return root, data


def smt(root, *args, capsys=None) -> tuple[int, str]:
    """``smt ARGS`` in-process; its stdout (a failure's stderr goes to the test log)."""
    code = main(["--repo", str(root), *args])
    if not capsys:
        return code, ""
    captured = capsys.readouterr()
    if code:
        print(captured.err, file=sys.__stderr__)
    return code, captured.out


@pytest.mark.slow
@SHARED_FLEET
def test_a_cycle_qualifies_adopts_syncs_and_records_every_pair(fleet, capsys):
    root, data = fleet
    code, out = smt(root, "subset", "--data", str(data), "--k", "1", "--json", capsys=capsys)
    subset = json.loads(out)
    assert code == 0 and len(subset["subset"]["representatives"]) == 1
    assert {d["package"] for d in subset["descriptors"]} == {"ctr_a", "ctr_b"}

    # 1. a clearly helpful technique is accepted (2 seeds, paired), and the record lands in the ledger
    args = ["qualify", "good_lr", "--packages", "ctr_a,ctr_b", "--seeds", "2", "--jobs", "2", "--data", str(data)]
    code, out = smt(root, *args, "--json", capsys=capsys)
    accepted = json.loads(out)
    assert code == 0 and accepted["decision"] == "accept", accepted["reasons"]
    assert accepted["aggregate"]["ci"][1] < 0 and set(accepted["results"]) == {"ctr_a", "ctr_b"}
    assert accepted["runs"] == 8 and accepted["machine_seconds"] > 0

    # 2. adopt: default changed, CHANGELOG, release, sync, every pair recorded; the pinned package opts out
    code, out = smt(root, "adopt", "good_lr", "--json", capsys=capsys)
    adoption = json.loads(out)
    assert code == 0 and adoption["to_version"] == "v1.1.0" and adoption["qualification"] == [accepted["id"]]
    assert adoption["package_tests"]
    assert adoption["packages"] == {"ctr_a": "adopted", "ctr_b": "opted out"}
    assert {k: training_defaults(config_path(root))[k] for k in GOOD} == GOOD
    changelog = (root / "template_repo" / "CHANGELOG.md").read_text()
    assert "## v1.1.0" in changelog and accepted["id"] in changelog
    assert "v1.1.0" in git(root, "tag", "--list")
    for name in ("ctr_a", "ctr_b"):
        answers = yaml.safe_load((root / "generated" / name / ".copier-answers.yml").read_text())
        assert answers["_commit"] == "v1.1.0"
    package_config = root / "generated" / "ctr_a" / "src" / "ctr_a" / "config.py"
    assert training_defaults(package_config)["lr"] == 0.002
    assert (root / "generated" / "ctr_b" / "src" / "ctr_b" / "train.yaml").read_text() == "lr: 0.001\n"
    assert git(root, "status", "--porcelain", "generated", "ledger.jsonl", "template_repo") == ""
    assert smt(root, "check", capsys=capsys)[0] == 0

    # 3. the next candidate, clearly harmful against the new incumbent, is rejected (subset path, k=1: the
    #    held-out package runs both arms on one guard seed and stays out of the subset's figure)
    args = ["qualify", "slow_lr", "--set", "lr=1e-6", "--set", "embedding_lr=1e-6", "--k", "1", "--seeds", "2"]
    code, out = smt(root, *args, "--jobs", "2", "--data", str(data), "--json", capsys=capsys)
    rejected = json.loads(out)
    assert code == 0 and rejected["decision"] == "reject" and rejected["template_version"] == "v1.1.0"
    assert rejected["aggregate"]["delta"] > 0.2 and rejected["subset"]["k"] == 1
    (representative,) = rejected["packages"]
    (held_out,) = rejected["guard"]
    assert {representative, held_out} == {"ctr_a", "ctr_b"} and rejected["guard_seeds"] == 1
    assert rejected["guard"][held_out]["seeds"] == [0] and rejected["guard"][held_out]["delta"] > 0.2
    assert rejected["runs"] == 2 * 2 + 2

    # 4. adoption refuses what was not accepted at this version, and what is already a default
    assert smt(root, "adopt", "good_lr")[0] == 2
    assert "already a template default" in capsys.readouterr().err
    assert smt(root, "adopt", "emb_wd")[0] == 2
    assert "never qualified" in capsys.readouterr().err
    assert smt(root, "adopt", "slow_lr")[0] == 2  # ad hoc: not in the catalogue, so never a default

    # 5. an answer technique with a recorded override: followers re-rendered at their FLOPs, others opt out
    #    (the packages' tests gated the first adoption above; dot's packages are the template variants' kind)
    args = ["adopt", "dot", "--override-reason", "test: answer adoption", "--no-test", "--json"]
    code, out = smt(root, *args, capsys=capsys)
    dot = json.loads(out)
    assert code == 0 and dot["packages"] == {"ctr_a": "adopted", "ctr_b": "opted out"}
    a = yaml.safe_load((root / "generated" / "ctr_a" / ".copier-answers.yml").read_text())
    b = yaml.safe_load((root / "generated" / "ctr_b" / ".copier-answers.yml").read_text())
    assert (a["interaction"], a["_commit"], b["interaction"], b["_commit"]) == ("dot", "v1.2.0", "concat", "v1.2.0")
    assert dot["package_tests"] is False
    assert a["flops_budget"] > 0 and dot["override_reason"] == "test: answer adoption"
    assert smt(root, "check", capsys=capsys)[0] == 0

    # 6. the ledger holds it all, validated; the matrix and the report show it
    ledger = read(root / "ledger.jsonl")
    assert [r["kind"] for r in ledger.records] == [QUALIFICATION, ADOPTION, QUALIFICATION, ADOPTION]
    code, out = smt(root, "ledger", "--json", capsys=capsys)
    matrix = json.loads(out)["matrix"]
    assert matrix["good_lr"]["ctr_a"]["state"] == "adopted" and matrix["good_lr"]["ctr_b"]["state"] == "opted out"
    assert matrix["slow_lr"]["ctr_a"]["state"] == "rejected"
    code, out = smt(root, "techniques", "--json", capsys=capsys)
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows["good_lr"]["default"] and rows["good_lr"]["adopted_in"] == "v1.1.0" and rows["dot"]["default"]
    report = root.parent / "report"
    assert smt(root, "report", "--out", str(report), capsys=capsys)[0] == 0
    page = (report / "index.html").read_text()
    for figure in ("ne_by_version.png", "matrix.png", "deltas.png"):
        assert figure in page and (report / figure).stat().st_size > 1000
    if chromium():
        assert screenshot(report / "index.html", report / "shot.png").stat().st_size > 10_000


@pytest.mark.slow
@SHARED_FLEET
def test_ray_runs_the_same_training_jobs_on_a_local_instance(fleet):
    pytest.importorskip("ray")
    root, data = fleet
    jobs = [TrainJob("ctr_a", "incumbent", str(root / "generated" / "ctr_a"), s, str(data / "ctr_a")) for s in (0, 1)]
    done = []
    results = run_ray(jobs, "local", done.append)
    assert sorted(r.seed for r in results) == [0, 1] and len(done) == 2
    assert all(0 < r.valid_ne < 2 and r.seconds > 0 for r in results)


@pytest.mark.slow
def test_an_adoption_killed_at_any_step_is_finished_by_running_it_again(tmp_path):
    """Kill -9 after the defaults' commit, then after the first sync group: each rerun picks up where it died;
    in the end the release, the fleet and exactly one adoption record agree, and nothing was lost.

    Its own fleet, so that it does not depend on the order of the shared fleet's tests nor share their worker.
    ``--no-test``: the packages' tests are not what is under test here (the other adoption tests run them).
    """
    import os
    import subprocess

    from .helpers import BIN

    root = tmp_path / "smt"
    make_fleet(root, GOOD, "template v1.0.0")
    target = next_version(TemplateRepo.find(root))
    features = {n: (root / "generated" / n / "src" / n / "features.yaml").read_bytes() for n in ("ctr_a", "ctr_b")}
    before = len(read(root / "ledger.jsonl").records)
    command = [str(BIN / "smt"), "--repo", str(root), "adopt", "residual_blocks", "--override-reason", "kill test"]
    command.append("--no-test")  # the packages' tests gate nothing here: the other adoption tests run them
    for fault in ("adopt:committed", "adopt:synced-group"):
        proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "SMT_FAULT": fault})
        assert proc.returncode == -9, proc.stderr
        ledger = read(root / "ledger.jsonl")
        assert len(ledger.records) == before and not ledger.torn_tail
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "(--no-test)" in proc.stdout  # the summary says the packages' tests were skipped
    records = read(root / "ledger.jsonl").records
    assert len(records) == before + 1 and records[-1]["resumed"] and records[-1]["to_version"] == target
    assert records[-1]["packages"] == {"ctr_a": "adopted", "ctr_b": "adopted"} and not records[-1]["package_tests"]
    for name in ("ctr_a", "ctr_b"):
        answers = yaml.safe_load((root / "generated" / name / ".copier-answers.yml").read_text())
        assert (answers["_commit"], answers["mlp_block"]) == (target, "residual")
        assert (root / "generated" / name / "src" / name / "features.yaml").read_bytes() == features[name]
    assert git(root, "tag", "--list").split().count(target) == 1
    assert main(["--repo", str(root), "check"]) == 0


@pytest.mark.slow
def test_a_package_whose_adoption_sync_was_refused_is_finished_by_running_adopt_again(tmp_path, capsys):
    """ctr_b's own tests fail during the adoption: its sync is refused and recorded ``not synced``. Its owner
    fixes them while the template moves on to another release, which a plain ``smt sync`` brings with ctr_b's
    old answer (it now looks opted out). ``smt adopt`` run again carries the technique to ctr_b at the latest
    release, at its own FLOPs, and appends a record that completes the first; ctr_a is not touched."""
    root = tmp_path / "smt"
    make_fleet(root, GOOD, "template v1.0.0")
    b = root / "generated" / "ctr_b"
    gate = b / "tests" / "test_a_local_gate.py"  # first in order: the fast tests stop at it (-x)
    gate.write_text("def test_gate():\n    assert False, 'a local test that fails'\n")
    commit_all(root, "ctr_b: a failing local test")
    adopt_args = ["adopt", "residual_blocks", "--override-reason", "finish test", "--json"]
    assert smt(root, *adopt_args, capsys=capsys)[0] == 1
    first = read(root / "ledger.jsonl").records[-1]
    assert first["packages"] == {"ctr_a": "adopted", "ctr_b": "not synced"} and first["to_version"] == "v1.1.0"
    assert list(first["not_synced"]) == ["ctr_b"]  # and why, in the record: the test that failed
    assert "tests/test_a_local_gate.py::test_gate" in first["not_synced"]["ctr_b"]

    def answers(name):
        return yaml.safe_load((root / "generated" / name / ".copier-answers.yml").read_text())

    assert (answers("ctr_b")["_commit"], answers("ctr_b")["mlp_block"]) == ("v1.0.0", "plain")
    gate.unlink()
    changelog = root / "template_repo" / "CHANGELOG.md"
    changelog.write_text(changelog.read_text() + "\n## v1.2.0\n- EPS is 1e-6.\n")
    metrics = root / "template_repo" / "src" / "{{ name }}" / "metrics.py"
    metrics.write_text(metrics.read_text().replace("EPS = 1e-7", "EPS = 1e-6"))
    commit_all(root, "ctr_b: the gate is fixed; template: EPS")
    assert smt(root, "release", "v1.2.0", capsys=capsys)[0] == 0
    assert smt(root, "sync", "--no-test", capsys=capsys)[0] == 0  # the tests of this sync gate nothing here
    commit_all(root, "fleet at v1.2.0")
    assert (answers("ctr_b")["_commit"], answers("ctr_b")["mlp_block"]) == ("v1.2.0", "plain")
    a_before = answers("ctr_a")

    code, out = smt(root, *adopt_args, capsys=capsys)
    done = json.loads(out)
    assert code == 0 and done["completes"] == first["id"] and done["packages"] == {"ctr_b": "adopted"}
    assert (done["from_version"], done["to_version"]) == ("v1.0.0", "v1.2.0")
    b_after = answers("ctr_b")
    assert (b_after["_commit"], b_after["mlp_block"]) == ("v1.2.0", "residual") and b_after["flops_budget"] > 0
    assert answers("ctr_a") == a_before
    assert git(root, "status", "--porcelain") == "" and "v1.3.0" not in git(root, "tag", "--list")
    assert (
        json.loads(smt(root, "ledger", "--json", capsys=capsys)[1])["matrix"]["residual_blocks"]["ctr_b"]["state"]
        == "adopted"
    )
    rows = {r["id"]: r for r in json.loads(smt(root, "techniques", "--json", capsys=capsys)[1])}
    assert rows["residual_blocks"]["adopted_in"] == "v1.1.0"  # the completing record is not a new adoption
    assert smt(root, "adopt", "residual_blocks")[0] == 2  # nothing left to finish
    assert "already a template default" in capsys.readouterr().err
    assert smt(root, "check", capsys=capsys)[0] == 0
