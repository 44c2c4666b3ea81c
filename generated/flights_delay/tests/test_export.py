"""Export parity, artifact metadata and capacity (template-owned)."""

from __future__ import annotations

import json

import pytest
import torch

from flights_delay.capacity import capacity, example_inputs, sizes_from_schema
from flights_delay.checkpoint import load_trained
from flights_delay.export import META_FILE, export, export_model
from flights_delay.builder import build_model
from flights_delay.model import FeatureSizes
from flights_delay.schema import schema_from_dict
from flights_delay.spec import SPEC


def test_export_matches_eager_at_any_batch_size(tmp_path, trained, tiny_schema):
    run, _ = trained
    result = export(run, tmp_path / "model.pt2", tiny_schema, latency_batches=(1, 64), repeats=3)
    assert result["parity_max_abs_diff"] <= 1e-5
    extra = {META_FILE: ""}
    served = torch.export.load(tmp_path / "model.pt2", extra_files=extra).module()
    model, meta, _ = load_trained(run, tiny_schema)
    assert json.loads(extra[META_FILE])["schema_fingerprint"] == tiny_schema.fingerprint()
    for batch in (1, 3, 100):
        inputs = example_inputs(FeatureSizes.from_dict(meta["sizes"]), tiny_schema, batch, seed=batch)
        with torch.no_grad():
            assert torch.allclose(served(*inputs), model(*inputs), atol=1e-5)


@pytest.mark.parametrize(
    "features",
    [
        {"dense": ["feat_d1", "feat_d2"]},
        {"sparse": ["feat_s1", "feat_s2"]},
        {"multi_hot": [{"name": "feat_tags", "max_length": 3}]},
        {"sparse": ["feat_s1"], "multi_hot": ["feat_tags"], "dense": ["feat_d1"]},
        {"dense": [{"name": "feat_d1", "buckets": 8, "missing_indicator": True}]},
    ],
    ids=["dense-only", "sparse-only", "multi-hot-only", "all-kinds", "bucketized-dense"],
)
def test_every_schema_shape_exports_with_parity(tmp_path, features):
    schema = schema_from_dict({"labels": list(SPEC.events), **features})
    sizes = sizes_from_schema(schema)
    meta = {"sizes": sizes.to_dict()}
    result = export_model(build_model(SPEC, sizes), meta, schema, tmp_path / "m.pt2", (1,), repeats=1)
    assert result["parity_max_abs_diff"] <= 1e-5


def test_capacity_counts_parameters_and_flops(trained, tiny_schema):
    run, _ = trained
    model, meta, _ = load_trained(run, tiny_schema)
    sizes = FeatureSizes.from_dict(meta["sizes"])
    report = capacity(model, sizes, tiny_schema)
    assert report["parameters"] == sum(p.numel() for p in model.parameters())
    assert report["embedding_bytes"] == 4 * report["embedding_parameters"]
    linear_macs = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    vectors = model.sparse_arch.num_vectors + 1
    bmm_bound = 2 * vectors * vectors * model.sparse_arch.dim + 2 * 64 * 64  # dot interaction, MMoE mixing
    assert 2 * linear_macs <= report["dense_flops_per_example"] <= 2 * linear_macs + bmm_bound
