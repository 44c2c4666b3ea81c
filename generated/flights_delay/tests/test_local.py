"""This model's own tests (model-owned: created once, never overwritten by a template update)."""

from __future__ import annotations

import pytest
import torch

from flights_delay.builder import build_model
from flights_delay.capacity import example_inputs, sizes_from_schema
from flights_delay.cli import DEFAULT_FEATURES
from flights_delay.preprocess import Preprocessor
from flights_delay.schema import load_schema
from flights_delay.spec import SPEC
from flights_delay.synth import synthesize


def test_feature_schema_labels_are_the_events():
    assert list(load_schema(DEFAULT_FEATURES).labels) == list(SPEC.events)


def test_feature_schema_encodes_synthetic_rows():
    schema = load_schema(DEFAULT_FEATURES)
    table = synthesize(schema, 200, seed=3)
    data = Preprocessor.fit(table, schema).transform(table)
    assert len(data) == 200 and data.labels.shape == (200, len(SPEC.events))


@pytest.mark.package_extension
def test_the_model_with_this_package_extension_builds_and_runs():
    schema = load_schema(DEFAULT_FEATURES)
    sizes = sizes_from_schema(schema)
    model = build_model(SPEC, sizes).eval()
    with torch.no_grad():
        logits = model(*example_inputs(sizes, schema, batch=8))
    assert logits.shape == (8, len(SPEC.events)) and torch.isfinite(logits).all()
