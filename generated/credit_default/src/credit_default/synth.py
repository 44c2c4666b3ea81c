"""Seeded synthetic data that matches the feature schema and carries a learnable signal (template-owned).

The hidden "world" (per-value effects, dense coefficients, one pairwise interaction, per-event biases)
depends only on the schema and ``world_seed``; ``seed`` only draws rows. So train and valid files made with
different seeds share one learnable function.
"""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa

from .metrics import bias_for_rate
from .schema import FeatureSchema

MISSING_RATE = 0.03
SPARSE_EFFECT = 1.0  # std of the per-value effect on the logit
DENSE_EFFECT = 0.8  # std of the per-feature dense coefficient


def synthesize(schema: FeatureSchema, rows: int, seed: int = 0, world_seed: int = 2026) -> pa.Table:
    """A table of ``rows`` rows with every schema column: labels 0/1, raw (un-encoded) feature values."""
    table, _ = synthesize_with_truth(schema, rows, seed, world_seed)
    return table


def synthesize_with_truth(
    schema: FeatureSchema, rows: int, seed: int = 0, world_seed: int = 2026
) -> tuple[pa.Table, np.ndarray]:
    """The table and the true label probabilities (N, E) it was drawn from (an oracle for tests)."""
    rng = np.random.default_rng(seed)
    columns: dict[str, pa.Array] = {}
    signals: list[np.ndarray] = []
    for f in schema.sparse:
        card = min(f.buckets, f.cardinality) if f.encoding == "hash" else f.cardinality
        ids = _zipf_ids(rng, card, rows)
        signals.append(_world(world_seed, f.name).normal(0, SPARSE_EFFECT, card)[ids])
        values = np.char.add(f"{f.name}_", ids.astype(str)).astype(object)
        values[rng.random(rows) < MISSING_RATE] = None
        columns[f.name] = pa.array(values, type=pa.string())
    for f in schema.multi_hot:
        effects = _world(world_seed, f.name).normal(0, SPARSE_EFFECT, f.cardinality)
        lengths = rng.integers(1, f.max_length + 1, rows)
        ids = [_zipf_ids(rng, f.cardinality, n) for n in lengths]
        signals.append(np.array([effects[i].mean() for i in ids]))
        columns[f.name] = pa.array([f.separator.join(f"{f.name}_{i}" for i in row) for row in ids])
    for f in schema.dense:
        latent = rng.normal(0, 1, rows)
        signals.append(_world(world_seed, f.name).normal(0, DENSE_EFFECT) * latent)
        raw = np.exp(1.2 * latent) * 10 if "log" in f.transform else 50 + 10 * latent
        values = raw.astype(object)
        values[rng.random(rows) < MISSING_RATE] = None
        columns[f.name] = pa.array(values, type=pa.float64())
    stacked = np.stack(signals, axis=1)  # (N, F)
    stacked = stacked / np.sqrt(stacked.shape[1] / 4)  # keep the logit spread similar for any F
    interaction = stacked[:, 0] * stacked[:, 1] if stacked.shape[1] > 1 else 0.0
    labels, probs = {}, []
    for e, event in enumerate(schema.labels):
        weights = _world(world_seed, f"event:{event}").uniform(0.4, 1.2, stacked.shape[1]) if e else 1.0
        logit = (stacked * weights).sum(axis=1) + 0.8 * interaction
        logit += bias_for_rate(logit, 0.25 * 0.5**e)
        probs.append(1 / (1 + np.exp(-logit)))
        labels[event] = pa.array((rng.random(rows) < probs[-1]).astype(np.int64))
    return pa.table({**labels, **columns}).select(schema.columns), np.stack(probs, axis=1)


def _world(world_seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([world_seed, zlib.crc32(name.encode())])


def _zipf_ids(rng: np.random.Generator, cardinality: int, n: int) -> np.ndarray:
    """Ids in [0, cardinality) with a long-tailed (Zipf-like, s=1.1) frequency."""
    weights = 1.0 / np.arange(1, cardinality + 1) ** 1.1
    return rng.choice(cardinality, size=n, p=weights / weights.sum())
