"""This model's own tests (model-owned: created once, never overwritten by a template update)."""

from __future__ import annotations

from adult_income.cli import DEFAULT_FEATURES
from adult_income.preprocess import Preprocessor
from adult_income.schema import load_schema
from adult_income.spec import SPEC
from adult_income.synth import synthesize


def test_feature_schema_labels_are_the_events():
    assert list(load_schema(DEFAULT_FEATURES).labels) == list(SPEC.events)


def test_feature_schema_encodes_synthetic_rows():
    schema = load_schema(DEFAULT_FEATURES)
    table = synthesize(schema, 200, seed=3)
    data = Preprocessor.fit(table, schema).transform(table)
    assert len(data) == 200 and data.labels.shape == (200, len(SPEC.events))
