"""Evaluation metrics per event: logloss, NE, AUC, calibration (template-owned).

Two NEs, both lower-is-better (logloss divided by the entropy of a constant predictor at some base rate):
``ne`` divides by the entropy of the evaluated split's own base rate (< 1 beats predicting that rate);
``ne_train`` divides by the entropy of the training base rate, as He et al. 2014 define NE (the checkpoint
records that rate). On a split whose base rate drifted from train's the two differ; on a stationary one they
agree closely.
Calibration = mean prediction / mean label (target 1.0). A metric that a split cannot define (AUC, NE and
calibration when the split holds one class only) is None, written as JSON null, never NaN.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities ``probs`` (N,) against 0/1 ``labels`` (N,)."""
    p = np.clip(probs.astype(np.float64), EPS, 1 - EPS)
    y = labels.astype(np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def rate_entropy(rate: float) -> float:
    """Entropy (nats) of a constant predictor at base rate ``rate``."""
    rate = float(np.clip(rate, EPS, 1 - EPS))
    return float(-(rate * np.log(rate) + (1 - rate) * np.log(1 - rate)))


def base_entropy(labels: np.ndarray) -> float:
    """Entropy of a constant predictor at the base rate of ``labels``."""
    return rate_entropy(float(np.mean(labels)))


def normalized_entropy(labels: np.ndarray, probs: np.ndarray) -> float:
    return logloss(labels, probs) / base_entropy(labels)


def auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann–Whitney) formula with average ranks for ties; NaN for one class."""
    y = labels.astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(probs, kind="mergesort")
    sorted_scores = probs[order]
    ranks = np.empty(len(probs), dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(probs)]])
    average = (starts + ends + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(average, ends - starts)
    return float((ranks[y].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def calibration(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean prediction / mean label; NaN when there is no positive label."""
    mean_label = float(np.mean(labels))
    return float(np.mean(probs)) / mean_label if mean_label > 0 else float("nan")


def event_metrics(labels: np.ndarray, probs: np.ndarray, train_rate: float | None = None) -> dict[str, float | None]:
    """All metrics of one event: labels, probs (N,); None where the split holds one class only.

    ``train_rate`` is the event's training base rate; without it (or at 0 or 1) ``ne_train`` is None.
    """
    rate = float(np.mean(labels))
    both = 0.0 < rate < 1.0
    loss = logloss(labels, probs)
    return {
        "rows": int(len(labels)),
        "base_rate": rate,
        "logloss": loss,
        "ne": loss / base_entropy(labels) if both else None,
        "train_base_rate": train_rate,
        "ne_train": loss / rate_entropy(train_rate) if train_rate is not None and 0.0 < train_rate < 1.0 else None,
        "auc": auc(labels, probs) if both else None,
        "calibration": calibration(labels, probs) if rate > 0 else None,
    }


def all_metrics(
    events: tuple[str, ...], labels: np.ndarray, probs: np.ndarray, train_rates: dict[str, float] | None = None
) -> dict[str, dict]:
    """Metrics per event: labels, probs (N, E) → {event: {...}}; ``train_rates``: event → training base rate."""
    rates = train_rates or {}
    return {e: event_metrics(labels[:, i], probs[:, i], rates.get(e)) for i, e in enumerate(events)}


def bias_for_rate(logits: np.ndarray, rate: float) -> float:
    """The b with mean(sigmoid(logits + b)) = rate, by bisection (the mean is monotone in b)."""
    low, high = -30.0, 30.0
    for _ in range(60):
        middle = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(logits + middle)))) > rate:
            high = middle
        else:
            low = middle
    return (low + high) / 2


def event_biases(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-event biases (E,) that make the mean of sigmoid(``logits`` (N, E) + bias) each event's label rate."""
    return np.array([bias_for_rate(logits[:, e], float(labels[:, e].mean())) for e in range(logits.shape[1])])


def cross_fitted_bias_probs(logits: np.ndarray, labels: np.ndarray, folds: int = 2) -> np.ndarray:
    """Probabilities (N, E) of ``logits`` (N, E) plus the per-event biases of ``event_biases``, each of ``folds``
    contiguous blocks of rows scored with the biases fit on the other rows.

    Metrics of these are out of sample: no row is scored by a bias fit on its own label. A bias fit on all rows
    and scored on them flatters itself (the in-sample optimum of the one parameter), most where the split drifts
    in time. Blocks follow the row order, so on a temporal split each block is scored with another period's
    bias, as the next period will be.
    """
    probs = np.empty_like(logits, dtype=np.float64)
    for block in np.array_split(np.arange(len(logits)), folds):
        rest = np.ones(len(logits), dtype=bool)
        rest[block] = False
        probs[block] = 1 / (1 + np.exp(-(logits[block] + event_biases(logits[rest], labels[rest]))))
    return probs
