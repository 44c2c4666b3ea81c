"""Batched inference over encoded data (template-owned)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .preprocess import EncodedData


def to_device(batch: EncodedData, device: torch.device) -> EncodedData:
    non_blocking = device.type == "cuda"
    return EncodedData(
        sparse=batch.sparse.to(device, non_blocking=non_blocking),
        multi_hot=[m.to(device, non_blocking=non_blocking) for m in batch.multi_hot],
        dense=batch.dense.to(device, non_blocking=non_blocking),
        labels=None if batch.labels is None else batch.labels.to(device, non_blocking=non_blocking),
    )


@torch.no_grad()
def predict(model: nn.Module, data: EncodedData, batch_size: int = 4096, device: str = "cpu") -> np.ndarray:
    """Probabilities (N, E) for every row of ``data``.

    The batches' probabilities stay on ``device`` and come to the host in one copy at the end: no host
    round-trip (and no device sync) per batch. Device memory for them is N × E × 4 bytes."""
    was_training = model.training
    model.eval()
    device = torch.device(device)
    out = []
    for start in range(0, len(data), batch_size):
        batch = to_device(data.slice(start, start + batch_size), device)
        out.append(torch.sigmoid(model(batch.sparse, batch.dense, batch.multi_hot).float()))  # (B, E)
    model.train(was_training)
    return torch.cat(out).cpu().numpy()
