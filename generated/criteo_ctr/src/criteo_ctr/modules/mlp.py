"""Multi-layer perceptron block (template-owned)."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Stack of ``Linear → ReLU`` layers.

    Args:
        in_dim: input width.
        sizes: output width of each layer; empty means identity.

    Example:
        >>> MLP(8, [16, 4])(torch.zeros(2, 8)).shape
        torch.Size([2, 4])
    """

    def __init__(self, in_dim: int, sizes: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        for width in sizes:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            in_dim = width
        self.layers = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) → (B, out_dim)."""
        return self.layers(x)
