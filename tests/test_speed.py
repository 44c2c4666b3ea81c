"""`smt bench speed`: a Criteo-shaped set, a package trained through its own CLI, a table and JSON (no peers)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from scaffold.peers.deepctr import normalized_entropy
from scaffold.speed import CRITEO_CARDINALITIES, SpeedSetup, make_dataset

from .helpers import REPO, commit_all, run_tool


def test_criteo_shaped_set_has_the_criteo_columns_and_capped_cardinalities(tmp_path):
    data = make_dataset(tmp_path, SpeedSetup(rows=2000, cap=500))
    train = pq.read_table(data / "train.parquet")
    assert train.num_rows == 2000 and pq.read_table(data / "valid.parquet").num_rows == 200
    assert [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)] + ["label"] == train.column_names
    for i, card in enumerate(CRITEO_CARDINALITIES, start=1):
        assert int(np.max(train.column(f"C{i}").to_numpy())) < min(card, 500)
    assert 0.05 < float(np.mean(train.column("label").to_numpy())) < 0.6


def test_normalized_entropy_of_the_peer_runner():
    labels = np.array([0, 0, 1, 1], dtype=float)
    assert normalized_entropy(labels, np.full(4, 0.5)) == pytest.approx(1.0)
    assert normalized_entropy(labels, np.array([0.1, 0.2, 0.8, 0.9])) < 0.5


@pytest.mark.slow
def test_bench_speed_trains_a_package_and_writes_table_and_json(tmp_path, template_repo):
    out = tmp_path / "speed"
    args = ["smt", "bench", "speed", "--rows", "6000", "--cap", "300", "--interactions", "dcn_v2", "--peers", ""]
    variant = ["--variant", "embedding_lr=0.2 weight_decay=0.001"]  # side by side with the default, in its own render
    proc = run_tool(*args, *variant, "--batch-size", "512", "--out", str(out), cwd=template_repo)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(out.with_suffix(".json").read_text())
    result, other = payload["results"]
    assert result["trainer"] == "smt dcn_v2" and result["samples_per_second"] > 0
    assert (
        other["trainer"] == "smt dcn_v2 (embedding_lr=0.2 weight_decay=0.001)"
        and other["valid_ne"] != result["valid_ne"]
    )
    assert {"read", "fit", "encode"} <= set(other["phases"]["cold"])  # its cold run did encode: its own cache
    assert 0 < result["valid_ne"] < 1.0 and result["peak_rss_mb"] > 50
    assert set(result["latency_ms"]) == {"1", "64", "4096"} and result["dense_flops_per_example"] > 0
    assert "smt dcn_v2" in out.with_suffix(".md").read_text() and "nan" not in out.with_suffix(".md").read_text()
    assert result["ratio_vs_reference"] is None  # no peer ran: no ratio, not NaN (which JSON does not have)
    cold, warm = result["phases"]["cold"], result["phases"]["warm"]  # the process breakdown, cold then warm cache
    assert {"read", "fit", "encode", "cache_write", "steps", "checkpoint"} <= set(cold)
    assert "cache_load" in warm and not {"read", "fit", "encode"} & set(warm)  # a warm cache skips the encoding
    assert result["wall_seconds"] >= sum(warm.values()) - 0.05 and result["process_samples_per_second"] > 0
    assert "| trainer | cache |" in out.with_suffix(".md").read_text()
    assert result["template"] == other["template"] == "v1"  # the fixture's clean, tagged template
    assert "Packages rendered from template v1." in out.with_suffix(".md").read_text()


def test_speed_results_name_the_template_they_measured(tmp_path, template_repo):
    """A render records the template version it came from (``+dirty`` with uncommitted template edits) and a fleet
    package its copier ``_commit``; gpu_speed's report names them; a corrupt stamp reads as unknown, not an error."""
    from benchmarks.gpu_speed import _templates_line
    from scaffold.speed import RENDER_STAMP, render_package, template_version
    from scaffold.template import TemplateRepo

    repo, setup = TemplateRepo.find(template_repo), SpeedSetup(rows=100, cap=50)
    (template_repo / "notes.txt").write_text("not the template\n")
    commit_all(template_repo, "a change outside the template")  # the template is still v1's
    assert template_version(render_package(repo, tmp_path / "clean", "dcn_v2", setup)) == "v1"
    with (template_repo / "copier.yml").open("a") as f:
        f.write("# an edit not yet committed\n")
    dirty = render_package(repo, tmp_path / "dirty", "dcn_v2", setup)
    assert template_version(dirty).startswith("v1-1-g") and template_version(dirty).endswith("+dirty")
    commit_all(template_repo, "an unreleased template change")
    unreleased = template_version(render_package(repo, tmp_path / "unreleased", "dcn_v2", setup))
    assert unreleased.startswith("v1-2-g") and not unreleased.endswith("dirty")
    (dirty / RENDER_STAMP).write_text("{not json")
    assert template_version(dirty) is None and template_version(tmp_path) is None
    fleet = REPO / "generated" / "adult_income"
    assert template_version(fleet) == yaml.safe_load((fleet / ".copier-answers.yml").read_text())["_commit"]
    assert _templates_line([{"template": "v1"}, {"template": "v1+dirty"}, {"template": "v1"}]) == [
        "Template: v1, v1+dirty."
    ]
    assert _templates_line([{"template": "v1"}, {}]) == ["Template: v1 (some runs do not say)."]
    assert _templates_line([{}]) == []


def test_bench_speed_rejects_an_unknown_interaction(template_repo):
    proc = run_tool("smt", "bench", "speed", "--interactions", "mlp", "--peers", "", cwd=template_repo)
    assert proc.returncode != 0 and "unknown interaction" in proc.stderr


def test_bench_speed_rejects_a_variant_that_is_not_key_value(template_repo):
    proc = run_tool("smt", "bench", "speed", "--peers", "", "--variant", "compile", cwd=template_repo)
    assert proc.returncode != 0 and "key=value" in proc.stderr and "compile" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rows", "0"], "--rows must be at least 10"),
        (["--peers", "LightGBM"], r"unknown DeepCTR-Torch model\(s\) \['LightGBM'\]"),
        (["--peers", "", "--out", "FILE/speed"], "taken is a file, not a folder"),
        (["--peers", "", "--work", "FILE/work"], "--work .*taken/work: .*taken is a file, not a folder"),
    ],
)
def test_bench_speed_refuses_bad_arguments_before_it_renders(template_repo, tmp_path, capsys, taken, args, message):
    from scaffold.cli import main

    args = [a.replace("FILE", str(taken)) for a in args]
    assert main(["--repo", str(template_repo), "bench", "speed", "--work", str(tmp_path / "work"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(message, err) and not (tmp_path / "work").exists() and taken.read_text() == "mine\n"


def test_gpu_speed_report_compares_every_run_with_the_first_batch_warm():
    from benchmarks.gpu_speed import report

    def run(batch, cache, recipe, ne, phases):
        return {
            "batch_size": batch, "recipe": recipe, "cache": cache, "epochs": 2, "steps": 10,
            "loop_samples_per_second": 1e6, "steady_samples_per_second": None, "process_samples_per_second": 2e5,
            "wall_seconds": sum(phases.values()), "valid_ne": ne, "valid_auc": 0.8, "valid_calibration": 1.0,
            "phases": phases,
        }  # fmt: skip

    payload = {"device": "GPU", "torch": "2", "bf16_matmul_tflops": 1.0, "rows": 1000, "data_seconds": 1.0}
    payload["runs"] = [
        run(4096, "cold", "default", 0.80, {"imports": 1.0, "encode": 5.0, "steps": 2.0}),
        run(4096, "warm", "default", 0.70, {"imports": 1.0, "cache_load": 0.5, "steps": 2.0}),
        run(65536, "warm", "lr5e-4", 0.707, {"imports": 1.0, "cache_load": 0.5, "steps": 1.0}),
    ]
    payload["steps"] = [{"package": "p", "batch_size": 65536, "compile": False, "ms_per_step": 10.0,
                         "samples_per_second": 6553600, "peak_gpu_gb": 3.8}]  # fmt: skip
    text = report(payload)
    rows = [line for line in text.splitlines() if line.startswith("| 65,536 | lr5e-4")]
    assert len(rows) == 1 and "| +1.00% |" in rows[0]  # against the warm 4,096 run, not the cold one
    assert "| 4,096 | cold | 1.00 | 5.00 | – | 2.00 | 8.00 |" in text  # phases: default recipe only, in order
    assert "| 65,536 | warm |" not in text.split("Train step alone")[0].split("wall seconds went")[1]
    assert "| p | 65,536 | False | 10.00 | 6,553,600 | 3.8 |" in text
    assert text.startswith("Machine: GPU, torch 2, bf16 matmul 1 TFLOP/s. Data: 1,000 train rows")


def test_gpu_speed_report_compares_each_seed_with_its_own_first_batch():
    from benchmarks.gpu_speed import report

    def run(batch, seed, ne, cache="warm"):
        return {
            "batch_size": batch, "recipe": "default", "seed": seed, "cache": cache, "epochs": 2, "steps": 10,
            "loop_samples_per_second": 1e6, "steady_samples_per_second": None, "process_samples_per_second": 2e5,
            "wall_seconds": 1.0, "valid_ne": ne, "valid_ne_by_epoch": [ne + 0.01, ne], "valid_auc": 0.8,
            "valid_calibration": 1.0, "phases": {"steps": 1.0},
        }  # fmt: skip

    payload = {"device": "cpu", "torch": "2", "bf16_matmul_tflops": 0.0, "rows": 1000, "data_seconds": 1.0}
    payload["runs"] = [run(4096, 0, 0.90, "cold"), run(4096, 0, 0.80), run(65536, 0, 0.808)]
    payload["runs"] += [run(4096, 1, 0.70), run(65536, 1, 0.714)]
    text = report(payload)
    assert text.startswith("Machine: cpu, torch 2 (no GPU: fp32). Data:")  # no "bf16 matmul 0 TFLOP/s"
    assert "| 65,536 | default | 1 | warm |" in text and "| +2.00% | 0.7240 → 0.7140 |" in text  # seed 1 vs 0.70
    summary = text.split("Over seeds")[1]
    assert "| 4,096 | default | 2 | 0.7500 | +0.00% | +0.00%, +0.00% |" in summary  # the warm run, not the cold one
    assert "| 65,536 | default | 2 | 0.7610 | +1.50% | +1.00%, +2.00% |" in summary


def test_gpu_speed_merge_labels_each_process_by_its_options_and_refuses_other_machines():
    from benchmarks.gpu_speed import merge, report

    def payload(batch, extra, ne, device="cpu"):
        run = {
            "batch_size": batch, "recipe": "default", "seed": None, "extra": extra, "cache": "warm", "epochs": 2,
            "steps": 10, "loop_samples_per_second": 1e6, "steady_samples_per_second": None,
            "process_samples_per_second": 2e5, "wall_seconds": 1.0, "valid_ne": ne, "valid_auc": 0.8,
            "valid_calibration": 1.0, "phases": {"steps": 1.0},
        }  # fmt: skip
        return {"device": device, "torch": "2", "bf16_matmul_tflops": 0.0, "rows": 1000, "data_seconds": 1.0,
                "setup": {}, "runs": [run], "steps": []}  # fmt: skip

    one_epoch = payload(4096, ["seed=1"], 0.69)
    one_epoch["runs"][0]["epochs"] = 1
    runs = [payload(4096, ["seed=1"], 0.70), payload(65536, ["seed=1", "embedding_lr=0.1"], 0.707), one_epoch]
    merged = merge(runs)
    labels = [("default", 1), ("embedding_lr=0.1", 1), ("epochs=1", 1)]  # not a second default 4,096 base
    assert [(r["recipe"], r["seed"]) for r in merged["runs"]] == labels
    assert "| 65,536 | embedding_lr=0.1 | 1 | warm |" in report(merged) and "| +1.00% |" in report(merged)
    with pytest.raises(SystemExit, match="device differ"):
        merge([payload(4096, [], 0.7), payload(4096, [], 0.7, device="NVIDIA H100")])


def test_gpu_speed_merge_names_a_missing_or_corrupt_file(tmp_path):
    bad = tmp_path / "gpu_speed.json"
    bad.write_text("{not json")
    for path in (bad, tmp_path / "absent.json"):
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.gpu_speed", "--merge", str(path), "--out", str(tmp_path / "o")],
            capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
        assert proc.returncode != 0 and f"cannot merge {path}" in proc.stderr.strip().splitlines()[-1]


def test_process_ab_takes_each_package_as_committed_at_a_ref(tmp_path):
    """`benchmarks.process_ab` compares packages at two commits: each is extracted from git as committed there."""
    from benchmarks.process_ab import checkout, copy_render
    from scaffold.fleet import load_package
    from scaffold.speed import template_version

    package = checkout("HEAD", "adult_income", tmp_path)
    committed = subprocess.run(
        ["git", "show", "HEAD:generated/adult_income/src/adult_income/train.py"], cwd=REPO, capture_output=True
    ).stdout
    assert (package / "src" / "adult_income" / "train.py").read_bytes() == committed
    assert template_version(package) == str(load_package(REPO / "generated" / "adult_income").version)
    (package / "runs" / "a").mkdir(parents=True)
    (package / "runs" / "a" / "last.pt").write_bytes(b"a checkpoint")
    copy = copy_render(package, tmp_path / "copy")  # --dirs: named as its import name, without its runs
    assert copy == tmp_path / "copy" / "adult_income" and not (copy / "runs").exists()
    assert (copy / "src" / "adult_income" / "train.py").read_bytes() == committed


def test_superseded_write_times_both_ends_with_a_packages_own_writer(tmp_path):
    """`benchmarks.superseded_write` loads the package's checkpoint module and times waited and cancelled ends."""
    out = tmp_path / "sw"
    args = [sys.executable, "-m", "benchmarks.superseded_write", "--package", str(REPO / "generated" / "adult_income")]
    args += ["--mb", "8", "--after", "0", "--repeats", "2", "--dir", str(tmp_path), "--out", str(out)]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    assert [len(report["runs"][mode]) for mode in ("waited", "cancelled")] == [2, 2]
    assert report["files_written"]["waited"] == 2  # a waited write always lands
    assert list(tmp_path.glob("tmp*")) == []  # its scratch directory is gone
    bad = subprocess.run([*args[:3], "--package", str(tmp_path), *args[5:]], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode != 0 and "is not a package of the template" in bad.stderr.strip().splitlines()[-1]


def test_import_ab_times_a_packages_train_import_and_lists_what_it_loaded(tmp_path):
    """`benchmarks.import_ab` imports each package's `train` in fresh interpreters; a fleet package at v0.7.31 or
    later imports neither pyarrow nor dynamo for it."""
    out = tmp_path / "imports"
    package = REPO / "generated" / "adult_income"
    args = [sys.executable, "-m", "benchmarks.import_ab", "--dirs", str(package), "--repeats", "2", "--out", str(out)]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert len(row["runs"]) == 2 and 0 < row["median_import_s"] < row["median_wall_s"]
    assert str(row["template"]).startswith("v0.")  # the version its .copier-answers.yml records
    assert row["loaded"]["pyarrow"] == 0 and row["loaded"]["torch._dynamo"] == 0 and row["loaded"]["numpy"] == 2
    bad = subprocess.run([*args[:4], str(tmp_path), *args[5:]], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode != 0 and "is not a package of the template" in bad.stderr.strip().splitlines()[-1]


def test_adam_eps_reads_the_steps_a_packages_embedding_rows_take(tmp_path, template_repo):
    """`benchmarks.adam_eps` trains a rendered package's first steps and reads its embedding moments: at the tuned
    batch (512) and below, the scaled ε is the template's 1e-8; above it, the smaller ε takes more of each step."""
    from scaffold.speed import render_package
    from scaffold.template import TemplateRepo

    package = render_package(TemplateRepo.find(template_repo), tmp_path / "r", "dcn_v2", SpeedSetup(rows=100, cap=50))
    out = tmp_path / "eps"
    args = [sys.executable, "-m", "benchmarks.adam_eps", "--package", str(package), "--rows", "3000"]
    args += ["--batches", "256,2048", "--steps", "2", "--out", str(out)]
    env = {**os.environ, "DATA": str(tmp_path / "d")}
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    below, above = json.loads((out / "adam_eps.json").read_text())["results"]
    assert below["scaled_eps"] == 1e-8 and below["scaled"] == below["fixed"]
    assert above["scaled_eps"] == pytest.approx(1e-8 / 4) and above["scaled"][1] > above["fixed"][1]
    assert "| 2,048 |" in (out / "adam_eps.md").read_text()
    bad = subprocess.run([*args[:4], str(tmp_path), *args[5:]], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode != 0 and "no rendered package there" in bad.stderr.strip().splitlines()[-1]


def test_micro_batch_report_reads_its_results_file_and_a_batch_never_timed_in_one_pass():
    """`benchmarks.micro_batch.report` gives the committed table from its JSON, and "–" for "vs one pass" where
    ``--micros`` lacked 0 (it used to fail formatting None)."""
    from benchmarks.micro_batch import report

    results = REPO / "benchmarks" / "results"
    payload = json.loads((results / "micro_batch_cpu.json").read_text())
    committed = (results / "micro_batch_cpu.md").read_text()
    rows = [line for line in report(payload).splitlines() if line.startswith("| ")]
    assert len(rows) == len(payload["results"]) + 1 and all(row in committed for row in rows)
    split = [r for r in payload["results"] if r["micro_batch_size"] != r["batch_size"]][0]
    only = {**payload, "results": [{**split, "vs_one_pass": None}]}
    line = report(only).splitlines()[-1]
    assert line.startswith(f"| {split['batch_size']:,} | {split['micro_batch_size']:,} |") and "| – |" in line


@pytest.mark.parametrize("out", ["v0.7.40", "v0.7.40.json", "v0.7.40.md"])
def test_results_files_keep_every_dot_of_the_name_they_are_given(tmp_path, out):
    from scaffold.results import write_results

    write_results(tmp_path / "runs" / out, {"ne": 0.74}, "| ne |\n")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["v0.7.40.json", "v0.7.40.md"]
    assert json.loads((tmp_path / "runs" / "v0.7.40.json").read_text()) == {"ne": 0.74}
    assert (tmp_path / "runs" / "v0.7.40.md").read_text() == "| ne |\n"
