"""What every peer runner shares: reading a task directory by a package's features.yaml, and test metrics.

Encoding follows the peers' own examples rather than the template's preprocessing: sparse values are
label-encoded on train (0 = unseen; a missing value is its own id, as the template treats it), multi-hot lists
become padded id lists, dense values are standardized with train's mean and std, missing → the train mean
(``dense``; sklearn's StandardScaler, the usual choice: min-max scaling as in DeepCTR's Criteo example
squashes heavy-tailed columns such as capital-gain and cost DeepFM 8% test NE on adult_income, the schema's
log transform 4%); ``dense_raw`` keeps them as they are, missing as NaN, for tree learners that
handle missing values themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml


@dataclass
class Split:
    sparse: dict  # name → (N,) int64 ids, 0 = unseen/missing
    multi_hot: dict  # name → (N, L) int64 ids, 0 = padding
    dense: dict  # name → (N,) float64, standardized on train
    labels: dict  # event → (N,) float32
    dense_raw: dict = field(default_factory=dict)  # name → (N,) float64 as in the file, NaN = missing


@dataclass
class Task:
    train: Split
    valid: Split
    test: Split | None
    vocab_sizes: dict  # sparse and multi-hot name → table rows (incl. 0)
    max_lengths: dict  # multi-hot name → L


def read_task(data: Path, features: Path, splits: tuple[str, ...] = ("train", "valid", "test")) -> Task:
    """The ``splits`` of a task directory (train and valid at least), encoded by ``features``."""
    schema = yaml.safe_load(Path(features).read_text())
    tables = {s: pq.read_table(Path(data) / f"{s}.parquet") for s in splits}
    splits = {s: Split({}, {}, {}, {}) for s in tables}
    vocab_sizes, max_lengths = {}, {}
    for f in schema.get("sparse", []):
        name = f["name"]
        values = {s: _strings(t.column(name)) for s, t in tables.items()}
        vocab = np.unique(values["train"])
        for s, v in values.items():
            splits[s].sparse[name] = _lookup(vocab, v)
        vocab_sizes[name] = len(vocab) + 1
    for f in schema.get("multi_hot", []):
        name, length = f["name"], int(f.get("max_length", 8))
        lists = {
            s: pc.split_pattern(pc.fill_null(t.column(name), ""), f.get("separator", "|")) for s, t in tables.items()
        }
        tokens = np.asarray(pc.list_flatten(lists["train"]).to_numpy(zero_copy_only=False), dtype=str)
        vocab = np.unique(tokens[tokens != ""])
        for s, column in lists.items():
            padded = np.zeros((len(column), length), dtype=np.int64)
            for row, items in enumerate(column.to_pylist()):
                ids = _lookup(vocab, np.asarray([i for i in items if i][:length], dtype=str))
                padded[row, : len(ids)] = ids
            splits[s].multi_hot[name] = padded
        vocab_sizes[name], max_lengths[name] = len(vocab) + 1, length
    for f in schema.get("dense", []):
        name = f["name"]
        columns = {}
        for s, t in tables.items():
            v = t.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
            splits[s].dense_raw[name] = columns[s] = v
        fill = float(np.nanmean(columns["train"])) if np.isfinite(columns["train"]).any() else 0.0
        columns = {s: np.where(np.isnan(v), fill, v) for s, v in columns.items()}
        mean, std = columns["train"].mean(), columns["train"].std()
        for s, v in columns.items():
            splits[s].dense[name] = (v - mean) / max(std, 1e-12)
    for event in schema["labels"]:
        for s, t in tables.items():
            splits[s].labels[event] = t.column(event).to_numpy().astype(np.float32)
    return Task(splits["train"], splits["valid"], splits.get("test"), vocab_sizes, max_lengths)


MISSING = "\x00missing"  # a missing (null or empty) id: one value of its own, seen in train like any other


def _strings(column) -> np.ndarray:
    values = np.asarray(pc.fill_null(pc.cast(column, "string"), "").to_numpy(zero_copy_only=False), dtype=object)
    values[values == ""] = MISSING
    return values.astype(str)


def _lookup(vocab: np.ndarray, values: np.ndarray) -> np.ndarray:
    """1-based position of each value in the sorted ``vocab``; 0 when absent."""
    if len(vocab) == 0 or len(values) == 0:
        return np.zeros(len(values), dtype=np.int64)
    position = np.searchsorted(vocab, values).clip(0, len(vocab) - 1)
    return np.where(vocab[position] == values, position + 1, 0).astype(np.int64)


def rate_entropy(rate: float) -> float:
    """Entropy (nats) of a constant predictor at base rate ``rate``."""
    rate = float(np.clip(rate, 1e-7, 1 - 1e-7))
    return float(-(rate * np.log(rate) + (1 - rate) * np.log(1 - rate)))


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def normalized_entropy(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean log loss divided by the entropy of the label base rate (He et al. 2014)."""
    return logloss(labels, probs) / rate_entropy(labels.mean())


def metrics(labels: np.ndarray, probs: np.ndarray, train_rate: float) -> dict:
    """logloss, NE (test split's base rate), NE on ``train_rate`` (He et al. 2014), AUC and calibration (mean
    prediction / mean label) — the template's metric names and definitions."""
    from sklearn.metrics import roc_auc_score

    loss = logloss(labels, probs)
    return {
        "rows": int(len(labels)),
        "logloss": loss,
        "ne": loss / rate_entropy(labels.mean()),
        "train_base_rate": float(train_rate),
        "ne_train": loss / rate_entropy(train_rate),
        "auc": float(roc_auc_score(labels, probs)) if 0 < labels.sum() < len(labels) else float("nan"),
        "calibration": float(probs.mean() / max(labels.mean(), 1e-12)),
    }
