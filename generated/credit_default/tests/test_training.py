"""Training learns, schedules, checkpoints and resumes exactly (template-owned)."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

from credit_default.config import config_from_dict
from credit_default.errors import CheckpointError, ConfigError
from credit_default.spec import SPEC
from credit_default.train import Interrupted, lr_factor, train


def test_training_learns_the_synthetic_signal(trained):
    out, summary = trained
    for event, metrics in summary["valid"].items():
        assert metrics["ne"] < 0.97, event
        assert metrics["auc"] > 0.6, event
    losses = [r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert losses[-1] < losses[0]
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file() and (out / "metrics.json").is_file()


def test_a_checkpoint_records_its_size_and_loads_without_fitting_it_again(trained, tiny_schema, monkeypatch):
    """Fitting a FLOPs budget counts tens of probe models: train does it once and records the width multiplier,
    and every load (evaluate, export, capacity) builds that size directly."""
    import dataclasses

    from credit_default import builder
    from credit_default.checkpoint import load_for_inference, load_trained
    from credit_default.model import FeatureSizes

    run, _ = trained
    meta = load_for_inference(run)["meta"]
    sizes = FeatureSizes.from_dict(meta["sizes"])
    assert meta["width_multiplier"] == builder.sized_spec(SPEC, sizes).width_multiplier
    expected = load_trained(run, tiny_schema)[0].state_dict()

    def no_fit(*args):
        raise AssertionError("a checkpoint's model was fitted to the budget again")

    monkeypatch.setattr(builder, "fit_to_budget", no_fit)
    loaded = load_trained(run, tiny_schema)[0].state_dict()
    assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in expected)
    budgeted = dataclasses.replace(SPEC, flops_budget=123_456)
    recorded = builder.sized_spec(budgeted, sizes, 0.5)
    assert recorded.width_multiplier == 0.5 and recorded.flops_budget == 0
    with pytest.raises(AssertionError, match="fitted to the budget again"):
        builder.sized_spec(budgeted, sizes)  # a checkpoint without the record (template before v0.7.7) fits


def test_lr_schedule_warms_up_then_decays_to_floor():
    config = config_from_dict({"warmup_steps": 10, "min_lr_ratio": 0.1})
    factors = [lr_factor(step, 110, config) for step in range(111)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[110] == pytest.approx(0.1)


def test_resume_reproduces_the_uninterrupted_run(tmp_path, tiny_schema, tiny_files):
    config = config_from_dict({"epochs": 2, "batch_size": 256, "checkpoint_every": 3, "eval_every": 5})
    full = train(*tiny_files, tmp_path / "full", config, tiny_schema, show_progress=False)
    with pytest.raises(Interrupted):
        train(*tiny_files, tmp_path / "part", config, tiny_schema, stop_after=7, show_progress=False)
    resumed = train(*tiny_files, tmp_path / "part", config, tiny_schema, resume=True, show_progress=False)
    assert resumed["steps"] == full["steps"] and resumed["best_step"] == full["best_step"]
    assert resumed["valid"] == full["valid"]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_finished_runs_last_pt_keeps_weights_and_progress_only(tmp_path, tiny_schema, tiny_files):
    """Nothing is left to resume once a run is done, so its last.pt leaves out the optimizers' moments and the
    weight average (most of the bytes with large tables); resuming it again changes nothing."""
    config = config_from_dict({"epochs": 2, "batch_size": 256, "checkpoint_every": 3, "eval_every": 5})
    with pytest.raises(Interrupted):
        train(*tiny_files, tmp_path / "run", config, tiny_schema, stop_after=4, show_progress=False)
    unfinished = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert {"dense_opt", "sparse_opt", "average"} <= set(unfinished) and not unfinished["progress"]["done"]
    summary = train(*tiny_files, tmp_path / "run", config, tiny_schema, resume=True, show_progress=False)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert set(last) == {"meta", "model", "progress", "rng"} and last["progress"]["done"]
    full_state = io.BytesIO()
    torch.save(unfinished, full_state)
    assert (tmp_path / "run" / "last.pt").stat().st_size < 0.5 * full_state.getbuffer().nbytes
    again = train(*tiny_files, tmp_path / "run", config, tiny_schema, resume=True, show_progress=False)
    assert again["valid"] == summary["valid"] and again["steps"] == summary["steps"]
    kept = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(kept[k], last["model"][k]) for k in kept)
    torch.save({**last, "progress": {**last["progress"], "done": False}}, tmp_path / "run" / "last.pt")
    with pytest.raises(CheckpointError, match="no optimizer state"):
        train(*tiny_files, tmp_path / "run", config, tiny_schema, resume=True, show_progress=False)


def test_early_stopping_stops_before_the_last_epoch(tmp_path, tiny_schema, tiny_files):
    config = config_from_dict({"epochs": 30, "batch_size": 1024, "lr": 0.05, "eval_every": 1, "patience": 2})
    summary = train(*tiny_files, tmp_path / "run", config, tiny_schema, show_progress=False)
    assert summary["steps"] < 30 * 3
    assert summary["best_step"] <= summary["steps"] - 2


def test_negative_downsampling_is_corrected_at_evaluation(tmp_path, tiny_schema, tiny_files):
    from credit_default.checkpoint import load_trained
    from credit_default.data import read_table
    from credit_default.predict import predict

    config = config_from_dict({"epochs": 3, "batch_size": 256, "warmup_steps": 5, "negative_sampling": 0.25})
    train(*tiny_files, tmp_path / "s", config, tiny_schema, show_progress=False)
    model, _, pre = load_trained(tmp_path / "s", tiny_schema)
    assert (model.logit_shift >= math.log(0.25) - 0.1).all() and (model.logit_shift < -0.5).all()
    valid = pre.transform(read_table(tiny_files[1], tiny_schema))
    rates = valid.labels.numpy().mean(axis=0)
    corrected = predict(model, valid).mean(axis=0) / rates
    model.logit_shift.zero_()
    uncorrected = predict(model, valid).mean(axis=0) / rates
    assert (uncorrected > 1.2).all()  # trained on a quarter of the negatives, the raw model over-predicts
    assert (abs(corrected - 1) < abs(uncorrected - 1)).all()
    if len(SPEC.events) == 1:  # one event: the correction is exact up to noise
        assert abs(corrected[0] - 1) < 0.2
    # Several events: an event's kept negatives over-represent rows positive for another event, so its scalar
    # correction is approximate (it failed a "halves the error" bound for events [delayed, cancelled]).


def test_calibrated_bias_makes_valid_calibration_one_and_reports_valid_cross_fitted(tmp_path, tiny_schema, tiny_files):
    import numpy as np

    from credit_default.checkpoint import load_trained
    from credit_default.data import read_table
    from credit_default.metrics import all_metrics, cross_fitted_bias_probs
    from credit_default.predict import predict

    config = config_from_dict({"epochs": 2, "batch_size": 256, "warmup_steps": 5, "calibrate_bias": True})
    summary = train(*tiny_files, tmp_path / "c", config, tiny_schema, show_progress=False)
    model, meta, pre = load_trained(tmp_path / "c", tiny_schema)
    valid = pre.transform(read_table(tiny_files[1], tiny_schema))
    labels, probs = valid.labels.numpy(), predict(model, valid)
    np.testing.assert_allclose(probs.mean(axis=0) / labels.mean(axis=0), 1.0, atol=1e-3)  # the kept bias: all rows
    # ... but the metrics that qualify decides on score each half of valid with the bias fit on the other half
    record = [
        r for r in map(json.loads, (tmp_path / "c" / "log.jsonl").read_text().splitlines()) if "calibrated_bias" in r
    ]
    logits = np.log(probs / (1 - probs)) - np.array(record[-1]["calibrated_bias"])
    expected = all_metrics(SPEC.events, labels, cross_fitted_bias_probs(logits, labels), meta["train_base_rates"])
    assert record[-1]["valid_cross_fitted"] == summary["valid"]
    for event, metrics in summary["valid"].items():
        assert metrics["ne"] == pytest.approx(expected[event]["ne"], rel=1e-4), event
        assert metrics["ne"] > all_metrics(SPEC.events, labels, probs)[event]["ne"], event  # not the in-sample NE


def test_micro_batches_add_up_to_the_whole_batchs_gradients(tmp_path, tiny_schema, tiny_files):
    """One batch of 1,000 rows in micro-batches of 300 (300, 300, 300, 100): the same loss and gradients, dense and
    row-sparse, as one pass over it, up to the order of float sums; the row-sparse gradient lists the same ids in
    the same order (the passes' gradients are concatenated once, not merged pass by pass)."""
    from credit_default.builder import build_model
    from credit_default.cache import encode_file
    from credit_default.model import FeatureSizes
    from credit_default.train import _Run

    pre, encoded = encode_file(tiny_files[0], tiny_schema)
    sparse, multi = pre.cardinalities()
    sizes = FeatureSizes(tuple(sparse), tuple(multi), tiny_schema.dense_width)
    batch, grads, losses, ids = encoded.slice(0, 1000), {}, {}, {}
    for micro in (1000, 300):
        torch.manual_seed(0)
        config = config_from_dict({"batch_size": 1000, "micro_batch_size": micro})
        run = _Run(config, {}, tmp_path / str(micro), build_model(SPEC, sizes))
        losses[micro] = run._backward(batch)
        raw = {name: p.grad for name, p in run.model.named_parameters() if p.grad is not None}
        grads[micro] = {name: g.coalesce().to_dense() if g.is_sparse else g for name, g in raw.items()}
        ids[micro] = {name: g._indices() for name, g in raw.items() if g.is_sparse}
    assert losses[300].item() == pytest.approx(losses[1000].item(), rel=1e-6)
    assert grads[300].keys() == grads[1000].keys() and any("table" in name for name in grads[1000])
    for name, grad in grads[1000].items():
        assert torch.allclose(grads[300][name], grad, rtol=1e-3, atol=1e-6), name
    assert ids[300].keys() == ids[1000].keys() and ids[1000]
    for name, rows in ids[1000].items():
        assert torch.equal(ids[300][name], rows), name


def test_micro_batches_train_the_same_model(tmp_path, tiny_schema, tiny_files):
    """Training in micro-batches (300 rows) takes the same steps to the same validation NE as one pass a step,
    up to float sums (Adam's normalised steps carry them on); auto (0) below the CPU threshold is one pass, bit
    for bit."""
    from credit_default.train import micro_batch_rows

    base = {"epochs": 2, "batch_size": 1024, "warmup_steps": 2}
    runs = {}
    for name, micro in (("whole", 1024), ("auto", 0), ("micro", 300)):
        config = config_from_dict({**base, "micro_batch_size": micro})
        runs[name] = train(*tiny_files, tmp_path / name, config, tiny_schema, show_progress=False)
    weights = {name: torch.load(tmp_path / name / "last.pt", weights_only=True)["model"] for name in runs}
    assert runs["auto"]["valid"] == runs["whole"]["valid"]
    assert all(torch.equal(weights["auto"][k], weights["whole"][k]) for k in weights["whole"])
    assert runs["micro"]["steps"] == runs["whole"]["steps"] == 6
    for event, metrics in runs["whole"]["valid"].items():
        assert runs["micro"]["valid"][event]["ne"] == pytest.approx(metrics["ne"], rel=1e-4), event
    cpu = torch.device("cpu")
    assert [micro_batch_rows(config_from_dict({}), n, cpu) for n in (8192, 8193, 131072)] == [8192, 8192, 8192]
    assert micro_batch_rows(config_from_dict({}), 131072, torch.device("cuda")) == 131072
    assert micro_batch_rows(config_from_dict({"micro_batch_size": 5000}), 131072, cpu) == 5000
    with pytest.raises(ConfigError, match="micro_batch_size"):
        config_from_dict({"micro_batch_size": -1})
