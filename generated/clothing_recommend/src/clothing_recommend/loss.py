"""Training loss, outside the model (template-owned)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def multi_event_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the batch, summed over events: logits, labels (B, E) → scalar."""
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(dim=0).sum()
