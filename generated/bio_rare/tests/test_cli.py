"""End to end through the package's own CLI and its own features.yaml (template-owned)."""

from __future__ import annotations

import gc
import json
from dataclasses import fields

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bio_rare.cli import main
from bio_rare.config import TrainConfig
from bio_rare.spec import SPEC


def test_synth_train_evaluate_export_capacity(tmp_path, capsys):
    train, valid = tmp_path / "train.parquet", tmp_path / "valid.tsv"
    assert main(["synth", "--rows", "2000", "--out", str(train), "--seed", "1"]) == 0
    assert main(["synth", "--rows", "500", "--out", str(valid), "--seed", "2"]) == 0
    run = tmp_path / "run"
    overrides = ["epochs=1", "batch_size=256", "log_every=2"]
    capsys.readouterr()
    args = ["train", "--train", str(train), "--valid", str(valid), "--out", str(run), "--quiet"]
    assert main([*args, "--test", str(valid), *overrides]) == 0  # scored in this process: `evaluate --json` of run
    summary = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--checkpoint", str(run), "--data", str(valid), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert summary["test"] == result and summary["phases"]["test"] > 0
    assert json.loads((run / "metrics.json").read_text())["test"] == result
    assert list(result["events"]) == list(SPEC.events) and result["rows"] == 500
    train_labels = pq.read_table(train, columns=list(SPEC.events))
    for event, m in result["events"].items():  # He et al. NE: the training base rate the checkpoint records
        rate = m["train_base_rate"]
        assert rate == pytest.approx(pc.mean(train_labels[event]).as_py(), rel=1e-6)
        entropy = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
        assert m["ne_train"] == pytest.approx(m["logloss"] / entropy, rel=1e-6)
    assert main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "m.pt2"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parity_max_abs_diff"] <= 1e-5
    assert main(["capacity", "--checkpoint", str(run), "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured == summary["capacity"] and measured["dense_flops_per_example"] > 0  # train reports it too


def test_a_missing_test_file_stops_train_before_it_reads_anything(tmp_path, capsys):
    train, valid, run, missing = (tmp_path / name for name in ("train.parquet", "valid.parquet", "run", "test.parquet"))
    assert main(["train", "--train", str(train), "--valid", str(valid), "--out", str(run), "--test", str(missing)]) == 2
    assert f"--test {missing} is not a file" in capsys.readouterr().err and not run.exists()


def test_a_missing_config_file_stops_train_before_it_reads_anything(tmp_path, capsys):
    train, valid, run, missing = (tmp_path / name for name in ("train.parquet", "valid.parquet", "run", "tarin.yaml"))
    paths = ["--train", str(train), "--valid", str(valid), "--out", str(run)]
    assert main(["train", *paths, "--config", str(missing)]) == 2
    assert f"--config {missing} is not a file" in capsys.readouterr().err and not run.exists()  # was: the defaults


def test_train_help_lists_every_training_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = capsys.readouterr().out
    for option in fields(TrainConfig):
        assert f"{option.name}={option.default}" in shown and option.metadata["help"][:30] in shown


def test_without_a_terminal_progress_goes_to_stderr_as_lines(tmp_path, capsys, tiny_schema, tiny_files):
    from bio_rare.config import config_from_dict
    from bio_rare.train import train

    train(*tiny_files, tmp_path / "run", config_from_dict({"epochs": 1, "batch_size": 512}), tiny_schema)
    err = capsys.readouterr().err  # pytest's capture is not a terminal
    assert "valid mean NE" in err and "\r" not in err


OWN_PROCESS = """
import atexit, gc, json, runpy, sys
seen = []  # (generation, objects frozen then) of each collection
def collected(phase, info):
    if phase == "stop":
        seen.append((info["generation"], gc.get_freeze_count()))
gc.callbacks.append(collected)
report = lambda: print(json.dumps({"frozen": gc.get_freeze_count(), "enabled": gc.isenabled(), "collections": seen}))
atexit.register(report)  # exit_process runs the exit hooks, then leaves without tearing down
sys.argv = ["bio_rare", *sys.argv[1:]]
runpy.run_module("bio_rare", run_name="__main__", alter_sys=True)
"""


def test_a_command_in_its_own_process_freezes_its_imports_and_still_collects(
    tmp_path, tiny_schema, tiny_files, fresh_python
):
    """``python -m`` gives the command its process: torch and the training modules are imported with the garbage
    collector paused and frozen out of its passes, which still run for what the run makes. ``main`` called in
    another process's heap (this test's) freezes nothing."""
    features = tmp_path / "features.yaml"
    features.write_text(json.dumps(tiny_schema.to_dict()))  # JSON is YAML
    args = ["--features", str(features), "train", "--train", str(tiny_files[0]), "--valid", str(tiny_files[1])]
    args += ["--out", str(tmp_path / "run"), "--quiet", "epochs=1", "batch_size=256", "data_cache=false"]
    proc = fresh_python("-c", OWN_PROCESS, *args, timeout=None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["frozen"] > 50_000 and report["enabled"]  # torch alone makes more than that
    assert any(frozen > 50_000 for _, frozen in report["collections"])  # collections ran after the freeze
    before = gc.get_freeze_count()
    assert main(["--features", str(features), "capacity", "--json"]) == 0
    assert gc.get_freeze_count() == before
