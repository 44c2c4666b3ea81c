"""Metrics agree with scikit-learn and with their definitions (template-owned)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from movielens_multi.metrics import auc, calibration, event_metrics, logloss, normalized_entropy


@pytest.fixture
def random_predictions():
    rng = np.random.default_rng(7)
    labels = (rng.random(2000) < 0.3).astype(float)
    probs = np.clip(0.3 + 0.3 * (labels - 0.3) + rng.normal(0, 0.15, 2000), 0.01, 0.99)
    return labels, np.round(probs, 2)  # rounding makes ties, which AUC must average


def test_logloss_and_auc_match_sklearn(random_predictions):
    labels, probs = random_predictions
    assert logloss(labels, probs) == pytest.approx(log_loss(labels, probs), rel=1e-9)
    assert auc(labels, probs) == pytest.approx(roc_auc_score(labels, probs), rel=1e-12)


def test_ne_is_logloss_over_base_rate_entropy(random_predictions):
    labels, probs = random_predictions
    p = labels.mean()
    entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    assert normalized_entropy(labels, probs) == pytest.approx(log_loss(labels, probs) / entropy, rel=1e-9)
    assert normalized_entropy(labels, np.full_like(probs, p)) == pytest.approx(1.0, rel=1e-9)


def test_ne_train_divides_by_the_training_base_rate(random_predictions):
    labels, probs = random_predictions
    train_rate = 0.2  # a drifted split: its own base rate is about 0.3
    entropy = -(train_rate * np.log(train_rate) + (1 - train_rate) * np.log(1 - train_rate))
    metrics = event_metrics(labels, probs, train_rate)
    assert metrics["ne_train"] == pytest.approx(log_loss(labels, probs) / entropy, rel=1e-9)
    assert metrics["ne_train"] > metrics["ne"] and metrics["train_base_rate"] == train_rate
    assert event_metrics(labels, probs)["ne_train"] is None  # no training rate known: no He et al. NE


def test_calibration_is_mean_prediction_over_mean_label(random_predictions):
    labels, probs = random_predictions
    assert calibration(labels, probs) == pytest.approx(probs.mean() / labels.mean())


def test_metrics_a_single_class_cannot_define_are_null_not_nan():
    metrics = event_metrics(np.zeros(10), np.full(10, 0.1))
    assert metrics["auc"] is None and metrics["calibration"] is None and metrics["ne"] is None
    assert json.loads(json.dumps(metrics))["logloss"] == pytest.approx(metrics["logloss"])  # valid JSON


def test_cross_fitted_bias_scores_each_block_with_the_other_blocks_bias():
    from movielens_multi.metrics import cross_fitted_bias_probs

    # event 0: rate 0.2 in the first half, 0.6 in the second; event 1: 0.5 throughout; logits 0 everywhere
    labels = np.zeros((1000, 2))
    labels[:100, 0], labels[500:800, 0] = 1, 1
    labels[::2, 1] = 1
    probs = cross_fitted_bias_probs(np.zeros((1000, 2)), labels)
    np.testing.assert_allclose(probs[:500, 0], 0.6, atol=1e-9)  # the first half scored with the second's bias
    np.testing.assert_allclose(probs[500:, 0], 0.2, atol=1e-9)
    np.testing.assert_allclose(probs[:, 1], 0.5, atol=1e-9)
    three = cross_fitted_bias_probs(np.zeros((900, 1)), labels[:900, :1], folds=3)
    np.testing.assert_allclose(three[:300, 0], 300 / 600, atol=1e-9)  # rows 300..899 hold 300 positives
    np.testing.assert_allclose(three[600:, 0], 200 / 600, atol=1e-9)  # rows 0..599 hold 200
