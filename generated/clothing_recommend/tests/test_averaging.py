"""Weight averaging (template-owned): the lazy per-row average equals the dense one, and training uses it."""

from __future__ import annotations

import io
import json

import pytest
import torch

from clothing_recommend.averaging import WeightAverage
from clothing_recommend.config import TrainConfig, config_from_dict
from clothing_recommend.errors import ConfigError
from clothing_recommend.model import FeatureSizes, RankingModel
from clothing_recommend.optimizers import build_optimizers
from clothing_recommend.spec import SPEC
from clothing_recommend.train import Interrupted, train


def _batches(steps: int, seed: int = 0):
    """Batches touching few rows of each table, so most rows sit out most steps: (ids, bags, dense)."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids = torch.randint(0, 30, (8, 1), generator=gen)
        bags = [torch.randint(0, 12, (8, 3), generator=gen)]
        yield ids, bags, torch.randn(8, 2, generator=gen)


def _model_and_optimizers(sparse_gradients: bool = True):
    torch.manual_seed(0)
    model = RankingModel(SPEC, FeatureSizes((30,), (12,), 2))
    return model, build_optimizers(model, TrainConfig(embedding_lr=0.1, lr=0.01), sparse_gradients)


def _train_steps(model, optimizers, average, batches, reference=None):
    """Optimizer steps with ``average`` around each; ``reference`` (list) gets the plain dense EMA beside it."""
    for ids, bags, dense in batches:
        loss = model(ids, dense, bags).pow(2).mean()
        optimizers.dense.zero_grad()
        optimizers.embedding.zero_grad()
        loss.backward()
        average.before_step()
        optimizers.dense.step()
        optimizers.embedding.step()
        average.after_step()
        if reference is not None:
            n = len(reference)
            weights = [p.detach().clone() for p in average.params]
            if n:
                d = min(average.decay, n / (n + 1))
                weights = [d * r + (1 - d) * w for r, w in zip(reference[-1], weights)]
            reference.append(weights)


@pytest.mark.parametrize("sparse_gradients", [True, False])
def test_lazy_average_equals_the_dense_average(sparse_gradients):
    model, optimizers = _model_and_optimizers(sparse_gradients)
    average = WeightAverage(model.parameters(), decay=0.9)
    reference: list = []
    _train_steps(model, optimizers, average, _batches(40), reference)
    own = [p.detach().clone() for p in model.parameters()]
    with average.applied():
        for got, want in zip(model.parameters(), reference[-1]):
            torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(p.detach(), w) for p, w in zip(model.parameters(), own))  # weights back after
    assert not all(torch.equal(a, w) for a, w in zip(reference[-1], own))  # the average is not the weights


def test_average_state_round_trip_continues_exactly():
    batches = list(_batches(30, seed=1))
    finals = []
    for restart in (False, True):
        model, optimizers = _model_and_optimizers()
        average = WeightAverage(model.parameters(), decay=0.8)
        _train_steps(model, optimizers, average, batches[:12])
        if restart:  # through bytes, as a checkpoint does
            buffer = io.BytesIO()
            torch.save(average.state_dict(), buffer)
            buffer.seek(0)
            average = WeightAverage(model.parameters(), decay=0.8)
            average.load_state_dict(torch.load(buffer, weights_only=True))
        _train_steps(model, optimizers, average, batches[12:])
        with average.applied():
            finals.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*finals))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        WeightAverage(model.parameters(), decay=1.0)


def _evaluations(run) -> list[dict]:
    return [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "valid" in r]


def test_training_validates_and_keeps_the_average(tmp_path, tiny_schema, tiny_files):
    options = {"epochs": 2, "batch_size": 256, "checkpoint_every": 3, "eval_every": 4, "weight_averaging": 0.9}
    config = config_from_dict(options)
    full = train(*tiny_files, tmp_path / "full", config, tiny_schema, show_progress=False)
    last = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "full" / "best.pt", weights_only=True)
    if best["step"] == full["steps"]:  # best.pt holds what validated better, last.pt the weights themselves
        same = all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"])
        assert same == (full["best_weights"] == "weights")
    plain = train(*tiny_files, tmp_path / "plain", config_from_dict({**options, "weight_averaging": 0.0}), tiny_schema)
    evals, plain_evals = _evaluations(tmp_path / "full"), _evaluations(tmp_path / "plain")
    # averaging leaves the weights' own path alone; each validation keeps the better of weights and average
    assert [e["valid_mean_ne_weights"] for e in evals] == [e["valid_mean_ne"] for e in plain_evals]
    assert all(e["valid_mean_ne"] == min(e["valid_mean_ne_weights"], e["valid_mean_ne_average"]) for e in evals)
    assert any(e["valid_mean_ne_weights"] != e["valid_mean_ne_average"] for e in evals)
    assert full["best_weights"] in ("weights", "average") and "best_weights" not in plain
    with pytest.raises(Interrupted):
        train(*tiny_files, tmp_path / "part", config, tiny_schema, stop_after=7, show_progress=False)
    assert torch.load(tmp_path / "part" / "last.pt", weights_only=True)["average"]["updates"] == 7  # full state
    resumed = train(*tiny_files, tmp_path / "part", config, tiny_schema, resume=True, show_progress=False)
    assert resumed["valid"] == full["valid"] and resumed["best_step"] == full["best_step"]
    with pytest.raises(ConfigError, match="weight_averaging must be in"):
        config_from_dict({"weight_averaging": 1.0})
