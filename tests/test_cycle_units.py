"""The development cycle's parts that need no training: catalogue, defaults, decision rule, ledger, subset."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from scaffold import SmtError, TemplateRepo
from scaffold.cli import main
from scaffold.defaults import (
    answer_default,
    config_path,
    set_answer_default,
    set_training_default,
    training_defaults,
)
from scaffold.descriptors import Descriptor
from scaffold.ledger import ADOPTION, QUALIFICATION, append, new_record, pair_matrix, read
from scaffold.qualify import PackageOutcome, Rule, bootstrap_mean, decide, without_effect
from scaffold.subset import choose_subset
from scaffold.techniques import load_catalogue

from .helpers import REPO, copy_template

# --- the catalogue ---


def test_catalogue_lists_every_switch_of_the_template_and_validates_against_it():
    catalogue = load_catalogue(REPO)
    assert {"dcn_v2", "dot", "mmoe", "ple", "residual_blocks", "qr_embeddings", "emb_wd"} <= set(catalogue)
    # every choice of every technique-slot question is a technique of the catalogue
    answers = {(k, v) for t in catalogue.values() for k, v in t.answers.items()}
    for question, off in (("interaction", "concat"), ("towers", "single"), ("mlp_block", "plain")):
        choices = yaml.safe_load((REPO / "copier.yml").read_text())[question]["choices"]
        assert {c for c in choices if c != off} <= {v for k, v in answers if k == question}


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"switch": {"answers": {"no_such_question": 1}}}, "not a question of copier.yml"),
        ({"switch": {"answers": {"interaction": "wukong"}}}, "not one of copier.yml's choices"),
        ({"switch": {"training": {"no_such_option": 1}}}, "not an option of the template's TrainConfig"),
        ({"switch": {"training": {"lr": "fast"}}}, "takes a float"),
        ({"slot": "nowhere"}, "slot must be one of"),
        ({}, "exactly one of 'switch'"),
    ],
)
def test_catalogue_errors_name_the_technique_and_the_fix(tmp_path, entry, message):
    root = copy_template(tmp_path / "t")
    base = {"id": "bad_one", "slot": "training", "description": "d", "reference": "r"}
    (root / "techniques.yml").write_text(yaml.safe_dump({"version": 1, "techniques": [{**base, **entry}]}))
    with pytest.raises(SmtError, match=message):
        load_catalogue(root)


def test_unreadable_catalogue_is_one_clear_error(tmp_path):
    root = copy_template(tmp_path / "t")
    (root / "techniques.yml").write_text("techniques: [\n")
    with pytest.raises(SmtError, match="not valid YAML"):
        load_catalogue(root)


# --- template defaults, rewritten in place ---


def test_training_and_answer_defaults_are_rewritten_in_place_and_nothing_else_changes(tmp_path):
    root = copy_template(tmp_path / "t")
    config = config_path(root)
    before_config, before_copier = config.read_text(), (root / "copier.yml").read_text()
    assert training_defaults(config)["embedding_weight_decay"] == 0.0
    set_training_default(config, "embedding_weight_decay", 0.001)  # a multi-line _option(...) call
    set_training_default(config, "calibrate_bias", True)
    assert training_defaults(config)["embedding_weight_decay"] == 0.001
    assert training_defaults(config)["calibrate_bias"] is True
    changed = [a for a, b in zip(before_config.splitlines(), config.read_text().splitlines()) if a != b]
    assert len(changed) == 2 and len(before_config.splitlines()) == len(config.read_text().splitlines())
    set_answer_default(root, "mlp_block", "residual")
    set_answer_default(root, "over_arch", [128, 64])
    assert answer_default(root, "mlp_block") == "residual" and answer_default(root, "over_arch") == [128, 64]
    after = (root / "copier.yml").read_text().splitlines()
    assert sum(a != b for a, b in zip(before_copier.splitlines(), after)) == 2
    with pytest.raises(SmtError, match="computed"):
        set_answer_default(root, "towers", "ple")  # a Jinja default
    with pytest.raises(SmtError, match="is a bool"):
        set_training_default(config, "calibrate_bias", 3)


# --- the decision rule ---


def _outcomes(deltas_by_package: dict[str, list[float]]) -> list[PackageOutcome]:
    out = []
    for name, deltas in deltas_by_package.items():
        inc = [0.5] * len(deltas)
        cand = [0.5 * (1 + d / 100) for d in deltas]
        out.append(PackageOutcome(name, list(range(len(deltas))), inc, cand, inc, cand, 1e5, 1e5))
    return out


def test_clearly_helpful_is_accepted_and_clearly_harmful_rejected():
    rule = Rule(resamples=2000)
    aggregate, decision, reasons = decide(_outcomes({"a": [-1.0, -1.2, -0.9], "b": [-0.5, -0.7, -0.6]}), rule)
    assert decision == "accept" and aggregate["delta"] == pytest.approx(-0.8167, abs=1e-3)
    assert aggregate["ci"][1] < 0
    aggregate, decision, reasons = decide(_outcomes({"a": [3.0, 2.5, 3.1], "b": [1.0, 1.4, 0.9]}), rule)
    assert decision == "reject" and any("not a gain" in r for r in reasons)


def test_one_package_beyond_the_regression_bound_rejects_a_fleet_gain():
    _, decision, reasons = decide(_outcomes({"a": [-3.0, -3.1, -2.9], "b": [0.9, 1.0, 1.1]}), Rule(resamples=2000))
    assert decision == "reject" and any("b regresses" in r for r in reasons)


def test_a_held_out_package_beyond_the_guard_bound_rejects_what_the_subset_accepts():
    subset = {"a": [-1.0, -1.2, -0.9], "b": [-0.5, -0.7, -0.6]}
    rule = Rule(resamples=2000, guard_regression=1.0)
    aggregate, decision, reasons = decide(_outcomes(subset), rule, _outcomes({"c": [0.8], "d": [-0.3]}))
    assert decision == "accept" and aggregate["delta"] == pytest.approx(-0.8167, abs=1e-3)  # the subset's figure
    aggregate, decision, reasons = decide(_outcomes(subset), rule, _outcomes({"c": [6.9], "d": [-0.3]}))
    assert decision == "reject" and aggregate["delta"] == pytest.approx(-0.8167, abs=1e-3)
    assert reasons == ["held-out c regresses +6.900% on 1 seed(s) (guard bound +1%)"]


def test_noise_and_one_seed_never_decide_for_a_technique():
    _, decision, reasons = decide(_outcomes({"a": [-2.0, 1.8, -0.1], "b": [0.4, -0.9, 0.2]}), Rule(resamples=2000))
    assert decision == "reject" and any("not below zero" in r for r in reasons)
    _, decision, reasons = decide(_outcomes({"a": [-2.0], "b": [-2.0]}), Rule(resamples=2000))
    assert decision == "reject" and any("one seed" in r for r in reasons)


def test_bootstrap_is_deterministic_and_covers_the_mean():
    deltas = [[-1.0, -0.5, -0.8], [0.2, -0.1, 0.0]]
    low, high = bootstrap_mean(deltas, 0.95, 4000)
    assert (low, high) == bootstrap_mean(deltas, 0.95, 4000)
    assert low < (sum(deltas[0]) / 3 + sum(deltas[1]) / 3) / 2 < high


def test_a_package_the_candidate_does_not_touch_is_named_as_such_and_stays_in_the_mean():
    from rich.console import Console

    from scaffold.cli.qualify import show

    def outcome(name, inc, cand, test_inc=(0.5, 0.5), test_cand=(0.5, 0.5)):
        return PackageOutcome(name, [0, 1], list(inc), list(cand), list(test_inc), list(test_cand), 1e5, 1e5)

    touched = outcome("with_tables", [0.80, 0.81], [0.78, 0.79], [0.7, 0.7], [0.69, 0.69])
    untouched = outcome("no_tables", [0.30, 0.31], [0.30, 0.31])
    valid_only = outcome("same_valid", [0.40, 0.41], [0.40, 0.41], [0.6, 0.6], [0.6, 0.61])  # test moved
    held_out = outcome("held", [0.2], [0.2], [0.1], [0.1])
    held_out.seeds = [0]
    aggregate, _, _ = decide([touched, untouched, valid_only], Rule(resamples=500), [held_out])
    assert aggregate["delta"] == pytest.approx(touched.delta / 3)  # counted at zero, as after adoption
    results = {o.package: o.to_dict() for o in (touched, untouched, valid_only)}
    assert without_effect({**results, "held": held_out.to_dict()}) == ["no_tables", "held"]
    record = {
        "technique": "t",
        "template_version": "v1",
        "seeds": 2,
        "results": results,
        "guard": {"held": held_out.to_dict()},
        "aggregate": aggregate,
        "rule_text": "r",
        "decision": "reject",
        "reasons": ["x"],
        "machine_seconds": 1.0,
        "runs": 14,
        "cached_runs": 0,
        "executor": "local pool of 1",
        "id": "abc",
    }
    console = Console(record=True, width=400)
    show(console, record)
    lines = [line for line in console.export_text().splitlines() if line.startswith("no effect on")]
    assert [line.split(":")[0] for line in lines] == ["no effect on no_tables", "no effect on held"]
    assert "enters the subset mean at +0.000%" in lines[0] and "held out, so not in the mean" in lines[1]


# --- the ledger ---


def _record(technique="emb_wd", decision="reject"):
    result = {"delta": 1.0, "ci": [0.5, 1.5], "delta_test": 1.0}
    return new_record(
        QUALIFICATION,
        technique=technique,
        template_version="v1",
        candidate={"answers": {}, "training": {"embedding_weight_decay": 0.001}},
        packages=["a"],
        seeds=3,
        rule={},
        results={"a": result},
        aggregate={"delta": 1.0, "ci": [0.5, 1.5], "delta_test": 1.0},
        decision=decision,
        reasons=["r"],
        machine_seconds=1.0,
    )


def test_ledger_appends_one_line_per_record_and_validates_when_read(tmp_path):
    path = tmp_path / "ledger.jsonl"
    first, second = append(path, _record()), append(path, _record("dot", "accept"))
    assert [r["id"] for r in read(path).records] == [first["id"], second["id"]]
    assert len(path.read_text().splitlines()) == 2
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[1].replace('"decision":"accept"', '"decision":"maybe"') + "\n")
    with pytest.raises(SmtError, match="line 2: decision must be accept or reject"):
        read(path)
    path.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(SmtError, match="line 2 is not valid JSON.*git checkout"):
        read(path)
    with pytest.raises(SmtError, match="lacks"):
        append(path, {"kind": QUALIFICATION, "id": "x"})


def test_a_torn_last_line_is_skipped_and_cut_by_the_next_writer(tmp_path):
    path = tmp_path / "ledger.jsonl"
    kept = append(path, _record())
    with open(path, "ab") as f:
        f.write(b'{"kind":"qualification","id":"torn","tech')  # a writer killed mid-line
    ledger = read(path)
    assert ledger.torn_tail and [r["id"] for r in ledger.records] == [kept["id"]]
    new = append(path, _record("dot"))
    ledger = read(path)
    assert not ledger.torn_tail and [r["id"] for r in ledger.records] == [kept["id"], new["id"]]


def _writer(path: str, n: int) -> None:
    for _ in range(n):
        append(path, _record(random.choice(["emb_wd", "dot"])))


def test_two_writers_at_once_lose_and_tear_nothing(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), 60)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    ledger = read(path)
    assert len(ledger.records) == 180 and not ledger.torn_tail


def test_a_writer_killed_at_any_point_leaves_complete_records_only(tmp_path):
    path = tmp_path / "ledger.jsonl"
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); "
        f"from tests.test_cycle_units import _writer; _writer({str(path)!r}, 100000)"
    )
    for delay in (0.3, 0.45, 0.6):
        proc = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = read(path)  # every complete line is a valid record; a torn tail is at most the last
        append(path, _record("dot"))
        after = read(path)
        assert len(after.records) == len(before.records) + 1 and not after.torn_tail


def test_an_adopted_pair_shows_what_its_own_qualification_measured_and_nothing_older(tmp_path):
    def qualification(version, decision, results, guard=None):
        r = {"delta": 0.0, "ci": [0.0, 0.0], "delta_test": 0.0}
        return new_record(
            QUALIFICATION,
            technique="periodic_numeric",
            template_version=version,
            candidate={"answers": {"numeric_embedding": "periodic"}, "training": {}},
            packages=sorted(results),
            seeds=3,
            rule={},
            results={n: {**r, "delta": d, "ci": [d - 1, d + 1]} for n, d in results.items()},
            guard={n: {**r, "delta": d, "ci": [d, d]} for n, d in (guard or {}).items()},
            aggregate=r,
            decision=decision,
            reasons=["r"],
            machine_seconds=6.0,
        )

    path = tmp_path / "ledger.jsonl"
    old = append(path, qualification("v1", "reject", {"a": -0.6, "bio": 216.0, "c": 0.4}))
    basis = append(path, qualification("v2", "accept", {"a": -0.5}, guard={"c": -0.2}))  # bio: not applicable
    adoption = new_record(
        ADOPTION,
        technique="periodic_numeric",
        qualification=[basis["id"]],
        from_version="v2",
        to_version="v3",
        packages={"a": "adopted", "bio": "not applicable", "c": "adopted", "d": "adopted"},
        machine_seconds=8.0,
    )
    append(path, adoption)
    row = pair_matrix(read(path).records)["periodic_numeric"]
    assert row["a"]["state"] == "adopted" and row["a"]["delta"] == -0.5 and row["a"]["ci"] == [-1.5, 0.5]
    assert row["c"]["delta"] == -0.2  # a held-out package of the basis: measured on its guard seeds
    assert row["bio"]["state"] == "not applicable" and row["bio"]["delta"] is None  # not v1's +216%
    assert row["d"]["delta"] is None and row["d"]["template_version"] == "v3"
    assert old["id"] not in {c["record"] for c in row.values()}


# --- the representative subset ---


def _descriptor(name, rows, rate, sparse, dense, events=1):
    return Descriptor(name, rows, events, rate, rate, sparse, 0, dense, sparse * 100, 1e5 * events, events > 1)


def test_subset_is_deterministic_and_one_representative_per_kind_of_model():
    fleet = [
        _descriptor("big_sparse_a", 10**6, 0.02, 20, 0),
        _descriptor("big_sparse_b", 2 * 10**6, 0.03, 22, 0),
        _descriptor("dense_a", 10**4, 0.4, 0, 40),
        _descriptor("dense_b", 2 * 10**4, 0.35, 0, 44),
        _descriptor("multi_a", 10**5, 0.1, 8, 4, events=3),
        _descriptor("multi_b", 2 * 10**5, 0.12, 9, 4, events=3),
    ]
    subset = choose_subset(fleet, 3)
    again = choose_subset(list(reversed(fleet)), 3)
    assert subset == again
    kinds = {name.rsplit("_", 1)[0] for name in subset.representatives}
    assert kinds == {"big_sparse", "dense", "multi"}
    assert subset.represented_by["dense_b"] in ("dense_a", "dense_b")
    with pytest.raises(SmtError, match="--k must be between 1 and"):
        choose_subset(fleet, 7)


def test_techniques_command_lists_the_catalogue_with_fleet_state(template_repo, capsys):
    from scaffold import new_package

    from .helpers import commit_all

    repo = TemplateRepo.find(template_repo)
    new_package(repo, "ctr_a", {"interaction": "dot"})
    commit_all(template_repo, "fleet")
    assert main(["--repo", str(template_repo), "techniques", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["dot"]["on_in"] == ["ctr_a"] and rows["dcn_v2"]["default"] and not rows["dot"]["default"]
    assert rows["dcn_v2"]["on_in"] == [] and rows["bucketized_dense"]["switch"].startswith("features.yaml")


# --- the cycle benchmark's figures ---


def _qual(results: dict[str, tuple[float, float, float]], seconds: float, cached: float = 0.0) -> dict:
    return {
        "results": {p: {"delta": d, "ci": [d - w, d + w], "delta_test": d / 2} for p, (d, w, _) in results.items()},
        "machine_seconds": seconds,
        "cached_seconds": cached,
        "candidate": {"answers": {}, "training": {"lr": 0.001}},
        "rule": {"min_gain": 0.1},
    }


def test_cycle_figures_charge_each_way_its_runs_and_count_pairs():
    from benchmarks.cycle import figures, per_model_choices

    per_model = {
        "t1": _qual({"a": (-1.0, 0.2, 0), "b": (-0.5, 0.2, 0), "c": (0.3, 0.1, 0)}, 3600),
        "t2": _qual({"a": (-2.0, 0.5, 0), "b": (0.4, 0.1, 0), "c": (-0.05, 0.01, 0)}, 3600),
    }
    choices = per_model_choices(per_model, 0.1)
    assert {p: c["technique"] for p, c in choices.items()} == {"a": "t2", "b": "t1", "c": None}
    subset = {"t1": _qual({"a": (-1.0, 0.2, 0)}, 0, cached=720), "t2": _qual({"a": (-2.0, 0.5, 0)}, 0, cached=720)}
    adoption = {"per_technique": {"t1": {"a": "adopted", "b": "adopted", "c": "opted out"}}, "machine_seconds": 360}
    f = figures(per_model, subset, ["t1"], adoption, 3)
    assert f["throughput"]["smt_pairs"] == 2 and f["throughput"]["per_model_pairs"] == 2
    assert f["throughput"]["smt_machine_hours"] == pytest.approx(0.5)  # cached runs still cost what they took
    assert f["throughput"]["per_model_machine_hours"] == pytest.approx(2.0)
    assert f["fleet_ne"]["smt_valid"] == pytest.approx((-1.0 - 0.5 + 0) / 3)
    assert f["fleet_ne"]["per_model_valid"] == pytest.approx((-2.0 - 0.5 + 0) / 3)
    assert f["iteration_cost"]["smt_hand_edited_lines_per_model"] == 0


def test_per_model_search_combines_what_passes_alone_and_stops_when_nothing_more_helps():
    from benchmarks.cycle import figures, merged_switch, per_model_search

    per_model = {
        "t1": _qual({"a": (-1.0, 0.2, 0), "b": (-0.5, 0.2, 0)}, 3600),
        "t2": _qual({"a": (-0.8, 0.2, 0), "b": (0.4, 0.1, 0)}, 3600),
        "t3": _qual({"a": (-0.6, 0.2, 0), "b": (-0.3, 0.1, 0)}, 3600),
    }
    per_model["t2"]["candidate"] = {"answers": {"interaction": "dot"}, "training": {}}
    per_model["t3"]["candidate"] = {"answers": {}, "training": {"lr": 0.002}}  # conflicts with t1's lr
    assert merged_switch(per_model, ["t1", "t3"]) is None
    assert merged_switch(per_model, ["t1", "t2"]) == {"answers": {"interaction": "dot"}, "training": {"lr": 0.001}}
    measured = {("a", "t1+t2"): -1.6, ("b", "t1+t2"): -0.45}
    calls = []

    def run_combination(package, name, switch):
        calls.append((package, name))
        d = measured[(package, name)]
        return {"results": {package: {"delta": d, "ci": [d - 0.2, d + 0.2], "delta_test": d}}, "machine_seconds": 60}

    choices, combinations = per_model_search(per_model, 0.1, run_combination)
    # a: t1 best alone, t2 adds (−1.6 beats −1.0), t3 cannot join t1 (same key); b: t2 fails alone, never tried
    assert calls == [("a", "t1+t2")]
    assert choices["a"]["techniques"] == ["t1", "t2"] and choices["a"]["delta"] == -1.6
    assert choices["b"]["techniques"] == ["t1"] and choices["b"]["delta"] == -0.5
    f = figures(per_model, {}, [], None, 2, choices, combinations)
    assert f["throughput"]["per_model_pairs"] == 3
    assert f["throughput"]["per_model_machine_hours"] == pytest.approx(3 + 60 / 3600)
    assert f["iteration_cost"]["per_model_hand_edited_lines_per_model"] == pytest.approx(1.0)  # lr, per package


def test_per_model_search_keeps_the_single_technique_when_the_combination_is_not_better_enough():
    from benchmarks.cycle import per_model_search

    per_model = {"t1": _qual({"a": (-1.0, 0.2, 0)}, 1), "t2": _qual({"a": (-0.8, 0.2, 0)}, 1)}
    per_model["t2"]["candidate"] = {"answers": {"mlp_block": "residual"}, "training": {}}

    def run_combination(package, name, switch):  # −1.05 is better, but by less than min_gain
        return {"results": {package: {"delta": -1.05, "ci": [-1.3, -0.8], "delta_test": 0.0}}, "machine_seconds": 1}

    choices, combinations = per_model_search(per_model, 0.1, run_combination)
    assert choices["a"]["techniques"] == ["t1"] and list(combinations) == ["a:t1+t2"]


def test_a_candidate_that_cannot_be_sized_to_the_incumbents_flops_is_not_applicable(template_repo, capsys):
    """A cross network far wider than a plain DNN's FLOPs: the template refuses the sizing in one line, and
    qualify records the package as not applicable instead of failing or training a degenerate model."""
    from scaffold import new_package

    from .helpers import commit_all

    repo = TemplateRepo.find(template_repo)
    new_package(repo, "ctr_b", {"interaction": "concat", "over_arch": [16]})
    commit_all(template_repo, "fleet")
    data = template_repo.parent / "data" / "ctr_b"
    data.mkdir(parents=True)
    (data / "train.parquet").write_bytes(b"")  # never read: nothing trains
    args = ["--repo", str(template_repo), "qualify", "huge_cross", "--set", "interaction=dcn_v2"]
    args += ["--set", "dcn_rank=4096", "--set", "dcn_layers=16", "--packages", "ctr_b"]
    assert main([*args, "--data", str(data.parent)]) == 2  # an SmtError: nothing to qualify
    err = capsys.readouterr().err
    assert "no package of ['ctr_b'] can qualify huge_cross" in err
    assert "not applicable at neutral capacity" in err and re.search(r"flops_budget [\d,]+ is too small", err)


def test_adoption_keeps_the_old_answer_where_the_new_one_does_not_fit_the_packages_flops(template_repo):
    """A follower of the default cross network that cannot hold rank 4096 × 16 layers at its own FLOPs is
    ``not applicable``: its sync pins its old answers; a follower that can is re-rendered at its FLOPs."""
    from scaffold import new_package
    from scaffold.adopt import ADOPTED, NOT_APPLICABLE, _states, not_applicable, sync_overrides
    from scaffold.defaults import config_path, training_defaults
    from scaffold.fleet import load_package
    from scaffold.techniques import ad_hoc
    from scaffold.template import questions

    from .helpers import commit_all

    repo = TemplateRepo.find(template_repo)
    follower = load_package(new_package(repo, "ctr_a").path)
    commit_all(template_repo, "fleet")
    defaults = questions(repo.root), training_defaults(config_path(repo.root))
    huge = ad_hoc("huge_cross", {"dcn_rank": 4096, "dcn_layers": 16}, *defaults)
    small = ad_hoc("small_cross", {"dcn_rank": 8}, *defaults)
    assert "too small for any model" in not_applicable(repo, huge, follower, "v1")
    states = _states(repo, [huge, small], [follower], "v1")
    assert states == {"huge_cross": {"ctr_a": NOT_APPLICABLE}, "small_cross": {"ctr_a": ADOPTED}}
    assert sync_overrides([huge], [follower], states) == {"ctr_a": {"dcn_rank": 32, "dcn_layers": 2}}
    carried = sync_overrides([small], [follower], states)["ctr_a"]
    assert carried["dcn_rank"] == 8 and carried["flops_budget"] > 0


def test_a_jobs_thread_count_reaches_the_package_process_and_not_ours(tmp_path, monkeypatch):
    """Qualification runs each job on ``threads`` OpenMP threads: set in the package's process environment, so a
    job run inline (a reused Ray worker) leaves the caller's own ``OMP_NUM_THREADS`` as it was."""
    from scaffold.package_cli import PackageCLI

    probe = tmp_path / "probe"
    (probe / "src" / "probe").mkdir(parents=True)
    (probe / "src" / "probe" / "__main__.py").write_text("import os\nprint(os.environ.get('OMP_NUM_THREADS'))\n")
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert PackageCLI(probe, threads=3)._run("any").strip() == "3"
    assert PackageCLI(probe)._run("any").strip() == "7"
    assert os.environ["OMP_NUM_THREADS"] == "7"


def test_capacity_is_measured_once_per_content_of_the_packages_source(tmp_path):
    """One command asks for the capacity of one tree several times (incumbent, a candidate that renders alike,
    a sizing check): the package's process runs once per content of its ``src/``; an edit, another features
    file or a checkpoint measures again, and a failure is not remembered."""
    from scaffold.package_cli import PackageCLI

    probe = tmp_path / "probe_cap"
    src = probe / "src" / "probe_cap"
    src.mkdir(parents=True)
    (src / "__main__.py").write_text(
        "import json, pathlib, sys\n"
        "open('calls.log', 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "width = int((pathlib.Path(__file__).parent / 'width.txt').read_text())\n"
        "if width < 0:\n    sys.exit('capacity: width must be positive')\n"
        "keys = ('parameters', 'dense_parameters', 'embedding_parameters', 'embedding_bytes')\n"
        "print(json.dumps({**{k: width for k in keys}, 'dense_flops_per_example': 2.0 * width}))\n"
    )
    width = src / "width.txt"
    width.write_text("8")

    def calls() -> int:
        return len((probe / "calls.log").read_text().splitlines())

    cli = PackageCLI(probe)
    assert cli.capacity().parameters == 8 and PackageCLI(probe).capacity().parameters == 8 and calls() == 1
    width.write_text("16")
    assert cli.capacity().dense_flops_per_example == 32.0 and calls() == 2
    features = tmp_path / "features.yaml"
    features.write_text("features: []\n")
    assert PackageCLI(probe, features=features).capacity().parameters == 16 and calls() == 3
    assert cli.capacity(checkpoint=tmp_path / "run").parameters == 16 and calls() == 4
    width.write_text("-1")
    for expected in (5, 6):
        with pytest.raises(SmtError, match="width must be positive"):
            cli.capacity()
        assert calls() == expected


PROBE_TRAIN = """\
import json, pathlib, sys
here = pathlib.Path(__file__).parent
open('calls.log', 'a').write(' '.join(a for a in sys.argv[1:] if not a.startswith('/')) + '\\n')
if '--help' in sys.argv:
    print((here / 'help.txt').read_text())
    sys.exit(0)
events = {'click': {'rows': 10, 'logloss': 0.5, 'ne': 0.9, 'auc': 0.7, 'calibration': 1.0}}
if sys.argv[1] == 'evaluate':
    print(json.dumps({'rows': 10, 'events': events}))
else:
    summary = {'steps': 3, 'best_step': 3, 'train_seconds': 0.1, 'samples_per_second': 10.0, 'valid': events}
    if '--test' in sys.argv:
        summary['test'] = {'rows': 10, 'events': events}
    print(json.dumps(summary))
"""


def test_a_package_scores_its_test_split_in_the_train_process_when_its_cli_takes_test(tmp_path):
    """``train_and_test`` asks the package's ``train --help`` once per content of its ``src/``: a package that
    takes ``--test`` (template >= v0.7.10) trains and tests in one process; an older one trains, then
    evaluates; an option that merely contains the name does not count."""
    from scaffold.package_cli import PackageCLI

    probe = tmp_path / "probe_test"
    src = probe / "src" / "probe_test"
    src.mkdir(parents=True)
    (src / "__main__.py").write_text(PROBE_TRAIN)
    help_text = src / "help.txt"
    cli, files = PackageCLI(probe), [tmp_path / f"{s}.parquet" for s in ("train", "valid", "test")]

    def calls() -> list[str]:
        log = probe / "calls.log"
        lines = log.read_text().splitlines() if log.is_file() else []
        log.unlink(missing_ok=True)
        return lines

    one = ["train --train --valid --out --quiet --test"]
    two = ["train --train --valid --out --quiet", "evaluate --checkpoint --data --json"]
    for usage, runs in (("[--test PATH]", one), ("[--test-split PATH]", two)):
        help_text.write_text(f"usage: train --train T --valid V --out O {usage}")
        for _ in range(2):
            trained, test = cli.train_and_test(*files, tmp_path / "run")
            assert test.rows == 10 and test.events["click"].ne == 0.9 and trained.steps == 3
        assert calls() == ["train --help", *runs, *runs]  # --help asked once per content of src/


def test_capacities_are_kept_across_processes_and_a_corrupt_or_failed_one_is_measured_again(tmp_path):
    """``capacities``: a new smt process (here: an empty in-memory table) reads what an earlier one measured
    of the same ``src/`` instead of starting the package's process; an edit misses; a corrupt entry is measured
    again and rewritten; a failure leaves no entry."""
    from scaffold import package_cli
    from scaffold.package_cli import PackageCLI

    probe = tmp_path / "probe_kept"
    src = probe / "src" / "probe_kept"
    src.mkdir(parents=True)
    (src / "__main__.py").write_text(
        "import json, pathlib, sys\n"
        "open('calls.log', 'a').write('capacity\\n')\n"
        "width = int((pathlib.Path(__file__).parent / 'width.txt').read_text())\n"
        "if width < 0:\n    sys.exit('capacity: width must be positive')\n"
        "keys = ('parameters', 'dense_parameters', 'embedding_parameters', 'embedding_bytes')\n"
        "print(json.dumps({**{k: width for k in keys}, 'dense_flops_per_example': 2.0 * width}))\n"
    )
    (src / "width.txt").write_text("8")
    kept = tmp_path / "kept"

    def new_process_capacity() -> float:
        package_cli._CAPACITY.clear()
        return PackageCLI(probe, capacities=kept).capacity().dense_flops_per_example

    def calls() -> int:
        return len((probe / "calls.log").read_text().splitlines())

    assert new_process_capacity() == 16.0 and calls() == 1
    (entry,) = kept.iterdir()
    assert new_process_capacity() == 16.0 and calls() == 1  # read, not measured
    entry.write_text("{torn")
    assert new_process_capacity() == 16.0 and calls() == 2 and json.loads(entry.read_text())["parameters"] == 8
    (src / "width.txt").write_text("-1")
    with pytest.raises(SmtError, match="width must be positive"):
        new_process_capacity()
    assert calls() == 3 and [p.name for p in kept.iterdir()] == [entry.name]
    (src / "width.txt").write_text("8")
    assert new_process_capacity() == 16.0 and calls() == 3  # the content it had: its entry again
    package_cli._CAPACITY.clear()


def test_the_smt_cache_ignores_itself_in_a_repository_that_does_not_name_it(tmp_path):
    """A qualification or adoption in a repository whose ``.gitignore`` does not list ``.smt-cache/`` leaves
    ``git status`` clean (adopt and release refuse to run on uncommitted changes)."""
    from scaffold import smt_cache

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (smt_cache.runs(tmp_path) / "abc.json").write_text("{}")
    (smt_cache.capacities(tmp_path) / "def.json").write_text("{}")
    status = subprocess.run(["git", "-C", str(tmp_path), "status", "--porcelain"], capture_output=True, text=True)
    assert status.returncode == 0 and status.stdout == ""
    ignore = tmp_path / ".smt-cache" / ".gitignore"
    ignore.write_text("*\n# the user's own\n")
    smt_cache.runs(tmp_path)
    assert ignore.read_text() == "*\n# the user's own\n"  # an existing file is left as it is


def test_a_package_without_its_config_py_is_one_clear_error_for_the_catalogue(tmp_path):
    from scaffold.fleet import Package
    from scaffold.techniques import package_training

    (tmp_path / "pkg" / "src" / "pkg").mkdir(parents=True)
    package = Package(tmp_path / "pkg", {"name": "pkg"})
    with pytest.raises(SmtError, match=r"config.py is missing; it is template-owned: restore it with `git checkout"):
        package_training(package)


def test_report_refuses_a_file_as_its_folder_and_names_a_bad_ledger_or_cycle_file(
    template_repo, tmp_path, capsys, taken
):
    def report(*extra):
        code = main(["--repo", str(template_repo), "report", *extra])
        return code, capsys.readouterr().err.strip()

    code, err = report("--out", str(taken))
    assert code == 2 and "is a file; the report's index.html" in err and taken.read_text() == "mine\n"
    code, err = report("--out", str(taken / "report"))
    assert code == 2 and f"{taken} is a file, not a folder" in err and taken.read_text() == "mine\n"
    out = tmp_path / "report"
    code, err = report("--out", str(out), "--ledger", str(tmp_path / "nope.jsonl"))
    assert code == 2 and "--ledger" in err and "is not a file" in err
    for text, message in (("{bad", "is not valid JSON"), ("[1]", "is not a cycle benchmark's JSON object")):
        (tmp_path / "cycle.json").write_text(text)
        code, err = report("--out", str(out), "--cycle", str(tmp_path / "cycle.json"))
        assert code == 2 and message in err and "\n" not in err
    code, err = report("--out", str(out), "--cycle", str(tmp_path / "missing.json"))
    assert code == 2 and "No such file" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--packages", "ctr_a", "--k", "1"], "not both"),
        (["--min-gain", "-1"], "--min-gain -1: the rule's percentages are 0 or more"),
        (["--max-regression", "-0.5"], "--max-regression -0.5"),
        (["--confidence", "1.5"], "--confidence must be between 0 and 1"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--ledger", "FILE/ledger.jsonl"], "taken is a file, not a folder"),  # refused before the trainings
        (["--ledger", "DIR"], "is a folder; give a file name"),
    ],
)
def test_qualify_refuses_a_rule_or_plan_it_cannot_mean_and_the_ledger_stays_as_it_was(
    template_repo, tmp_path, capsys, taken, args, message
):
    ledger = template_repo / "ledger.jsonl"
    before = ledger.read_bytes() if ledger.exists() else None
    args = [a.replace("FILE", str(taken)).replace("DIR", str(tmp_path)) for a in args]
    assert main(["--repo", str(template_repo), "qualify", "emb_wd", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert (ledger.read_bytes() if ledger.exists() else None) == before and taken.read_text() == "mine\n"


@pytest.mark.parametrize("command", [["sync"], ["status"], ["check"], ["adopt", "emb_wd"], ["qualify", "emb_wd"]])
def test_every_jobs_option_takes_one_worker_or_more(template_repo, capsys, command):
    for value, message in (("0", "must be at least 1, got 0"), ("two", "must be a whole number of workers")):
        with pytest.raises(SystemExit) as exit_:
            main(["--repo", str(template_repo), *command, "--jobs", value])
        assert exit_.value.code == 2 and f"argument --jobs: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_blank_override_reason_adopts_nothing(template_repo, capsys, reason):
    from .helpers import git

    before = (
        git(template_repo, "status", "--porcelain"),
        git(template_repo, "tag"),
        git(template_repo, "rev-parse", "HEAD"),
    )
    assert main(["--repo", str(template_repo), "adopt", "emb_wd", "--override-reason", reason]) == 2
    err = capsys.readouterr().err.strip()
    assert "--override-reason is blank; say why" in err and "\n" not in err  # "   " released and synced before
    after = (
        git(template_repo, "status", "--porcelain"),
        git(template_repo, "tag"),
        git(template_repo, "rev-parse", "HEAD"),
    )
    assert after == before
