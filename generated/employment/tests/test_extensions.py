"""The extension contract: stage slots are placed where they belong, and a broken slot is named (template-owned)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from employment import extensions
from employment.builder import build_model, sized_spec
from employment.capacity import capacity
from employment.config import config_from_dict
from employment.model import FeatureSizes, RankingModel, layout
from employment.optimizers import build_optimizers
from employment.optim import RowSparseAdam
from employment.spec import SPEC
from employment.stages import Extension, ExtensionError

SIZES = FeatureSizes((30, 20), (12,), 3)
E = len(SPEC.events)


class HashedCross(nn.Module):
    """One extra vector: a sparse-gradient embedding of (feature 0 × feature 1) hashed into 97 rows."""

    num_vectors = 1

    def __init__(self, dim: int):
        super().__init__()
        self.table = nn.Embedding(97, dim, sparse=True)

    def forward(self, sparse, dense, multi_hot):  # → (B, 1, D)
        return self.table((sparse[:, 0] * 31 + sparse[:, 1]) % 97).unsqueeze(1)


class MeanPool(nn.Module):
    """Interaction: the mean vector and a linear map of the flattened vectors, (B, F, D) → (B, 2D)."""

    def __init__(self, num_vectors: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(num_vectors * dim, dim)
        self.output_dim = 2 * dim

    def forward(self, x):
        return torch.cat([x.mean(dim=1), self.proj(x.flatten(1))], dim=1)


class LinearHeads(nn.Module):
    def __init__(self, in_dim: int, events: int):
        super().__init__()
        self.out = nn.Linear(in_dim, events)

    def forward(self, x):
        return self.out(x)

    def init_output_bias(self, bias):
        with torch.no_grad():
            self.out.bias.copy_(bias)


def l2_on_logits(logits, labels, model):
    return 1e-3 * logits.pow(2).mean()


def every_slot(spec, layout):
    interaction = MeanPool(layout.num_vectors + 1, layout.dim)
    return Extension(
        feature_vectors=HashedCross(layout.dim),
        interaction=interaction,
        over_arch=LinearHeads(interaction.output_dim, len(layout.events)),
        loss_terms=(l2_on_logits,),
    )


def _inputs(batch=8):
    sparse = torch.stack([torch.randint(0, 30, (batch,)), torch.randint(0, 20, (batch,))], dim=1)
    return sparse, torch.randn(batch, 3), [torch.randint(0, 12, (batch, 4))]


def test_the_default_extension_is_the_template_model_bit_for_bit():
    built = build_model(SPEC, SIZES, seed=3)
    spec = sized_spec(SPEC, SIZES)  # what build_model sizes first
    torch.manual_seed(3)
    plain = RankingModel(spec, SIZES)
    assert built.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(built.state_dict()[k], plain.state_dict()[k]) for k in plain.state_dict())


def test_every_slot_is_placed_and_its_parameters_go_to_the_right_optimizer(monkeypatch):
    monkeypatch.setattr(extensions, "extension", every_slot, raising=False)
    model = build_model(SPEC, SIZES)
    assert isinstance(model.extra_vectors, HashedCross) and isinstance(model.interaction, MeanPool)
    vectors = layout(SPEC, SIZES).num_vectors + 1  # the template's vectors and HashedCross's one
    assert isinstance(model.over_arch, LinearHeads)
    assert model.interaction.proj.in_features == vectors * SPEC.embedding_dim
    assert model(*_inputs()).shape == (8, E)
    embedding_ids = {id(p) for p in model.embedding_parameters()}
    assert id(model.extra_vectors.table.weight) in embedding_ids
    assert id(model.interaction.proj.weight) not in embedding_ids
    assert {id(p) for p in model.dense_parameters()} | embedding_ids == {id(p) for p in model.parameters()}
    optimizers = build_optimizers(model, config_from_dict({}))
    assert isinstance(optimizers.embedding, RowSparseAdam)
    assert all(not any(p is q for q in optimizers.dense_params) for p in model.embedding_parameters())
    logits, labels = torch.zeros(4, E), torch.zeros(4, E)
    assert model.extra_loss(logits + 2, labels).item() == pytest.approx(4e-3)
    from employment.schema import schema_from_dict

    schema = schema_from_dict(
        {
            "labels": list(SPEC.events),
            "sparse": [{"name": "f_first", "cardinality": 28}, {"name": "f_second", "cardinality": 18}],
            "multi_hot": [{"name": "f_tags", "max_length": 4, "cardinality": 10}],
            "dense": [{"name": "f_x"}, {"name": "f_y"}, {"name": "f_z"}],
        }
    )
    counted = capacity(model, SIZES, schema)
    assert counted["embedding_parameters"] == sum(p.numel() for p in model.embedding_parameters())


def test_calibration_and_base_rates_survive_any_over_arch(monkeypatch):
    monkeypatch.setattr(extensions, "extension", every_slot, raising=False)
    model = build_model(SPEC, SIZES)
    model.init_base_rates(torch.full((E,), 0.2))
    assert torch.allclose(model.over_arch.out.bias, torch.full((E,), torch.log(torch.tensor(0.25)).item()))
    model.set_calibration(torch.full((E,), -1.0))
    model.shift_calibration(torch.full((E,), 0.5))
    inputs = _inputs()
    model.train()
    raw = model(*inputs)
    model.eval()
    assert torch.allclose(model(*inputs), raw - 0.5, atol=1e-6)


def _refused(monkeypatch, make) -> str:
    monkeypatch.setattr(extensions, "extension", make, raising=False)
    with pytest.raises(ExtensionError) as caught:
        build_model(SPEC, SIZES)
    assert "\n" not in str(caught.value)
    return str(caught.value)


class NoCount(nn.Module):
    def forward(self, sparse, dense, multi_hot):
        return torch.zeros(sparse.shape[0], 1, SPEC.embedding_dim)


class WrongWidth(HashedCross):
    def forward(self, sparse, dense, multi_hot):
        return torch.zeros(sparse.shape[0], 1, 3)


@pytest.mark.parametrize(
    "make, slot",
    [
        (lambda spec, layout: "stages", "must return stages.Extension"),
        (lambda spec, layout: Extension(interaction=lambda x: x), "'interaction' must be an nn.Module"),
        (lambda spec, layout: Extension(feature_vectors=NoCount()), "'feature_vectors' must have a positive int"),
        (lambda spec, layout: Extension(feature_vectors=WrongWidth(layout.dim)), "'feature_vectors' must return"),
        (lambda spec, layout: Extension(interaction=MeanPool(1, layout.dim)), "'interaction' failed"),
        (lambda spec, layout: Extension(over_arch=nn.Linear(8, E)), "'over_arch' must define init_output_bias"),
        (lambda spec, layout: Extension(over_arch=LinearHeads(3, E)), "'over_arch' failed"),
        (lambda spec, layout: Extension(loss_terms=(lambda lg, lb, m: lg,)), "'loss_terms[0]' must return a 0-d"),
        (lambda spec, layout: Extension(loss_terms=(nn.Linear(1, 1),)), "'loss_terms[0]' has parameters"),
    ],
)
def test_a_slot_that_breaks_the_contract_fails_at_build_time_naming_the_slot(monkeypatch, make, slot):
    assert slot in _refused(monkeypatch, make)


def test_a_legacy_hook_may_change_the_model_in_place_but_not_wrap_it(monkeypatch):
    monkeypatch.delattr(extensions, "extension", raising=False)

    def in_place(model, spec):
        model.logit_shift.fill_(0.25)
        return model

    monkeypatch.setattr(extensions, "extend_model", in_place, raising=False)
    assert torch.all(build_model(SPEC, SIZES).logit_shift == 0.25)
    monkeypatch.setattr(extensions, "extend_model", lambda model, spec: nn.Sequential(model), raising=False)
    with pytest.raises(ExtensionError, match="extend_model returned another model"):
        build_model(SPEC, SIZES)


def test_training_with_every_slot_learns_and_reloads(monkeypatch, tmp_path, tiny_schema, tiny_files):
    from employment.checkpoint import load_trained
    from employment.train import train

    monkeypatch.setattr(extensions, "extension", every_slot, raising=False)
    config = config_from_dict({"epochs": 2, "batch_size": 256, "warmup_steps": 5})
    summary = train(*tiny_files, tmp_path / "run", config, tiny_schema, show_progress=False)
    assert all(m["auc"] > 0.55 for m in summary["valid"].values())
    model, _, _ = load_trained(tmp_path / "run", tiny_schema)
    assert isinstance(model.extra_vectors, HashedCross)
