"""Evaluate a trained checkpoint on a data file: metrics per event (template-owned)."""

from __future__ import annotations

from pathlib import Path

from .cache import encode_file
from .checkpoint import load_trained
from .metrics import all_metrics
from .predict import predict
from .schema import FeatureSchema
from .spec import SPEC


def evaluate(checkpoint: str | Path, data_path: str | Path, schema: FeatureSchema, batch_size: int = 4096) -> dict:
    """``{"rows": N, "events": {event: {logloss, ne, ne_train, auc, calibration, ...}}}``.

    ``ne`` divides by the entropy of this split's base rate, ``ne_train`` by that of the training base rate
    recorded in the checkpoint (None for a checkpoint from before v0.4.0, which did not record it).
    """
    model, meta, pre = load_trained(checkpoint, schema)
    _, data = encode_file(data_path, schema, pre)
    probs = predict(model, data, batch_size=batch_size)
    return {
        "checkpoint": str(checkpoint),
        "data": str(data_path),
        "rows": len(data),
        "events": all_metrics(SPEC.events, data.labels.numpy(), probs, meta.get("train_base_rates")),
    }
