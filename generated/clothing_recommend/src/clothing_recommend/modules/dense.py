"""DenseArch: an MLP that maps the dense features to one D-vector (template-owned)."""

from __future__ import annotations

import torch
from torch import nn

from .mlp import MLP


class DenseArch(nn.Module):
    """Projects the dense features so they join the interaction as one more vector.

    Args:
        num_dense: number of dense features (Fd > 0).
        sizes: hidden sizes of the MLP before the final projection to D.
        dim: embedding dimension D.
        block: MLP block, ``plain`` or ``residual``.

    Example:
        >>> DenseArch(3, [8], dim=4)(torch.zeros(2, 3)).shape
        torch.Size([2, 4])
    """

    def __init__(self, num_dense: int, sizes: list[int], dim: int, block: str = "plain"):
        super().__init__()
        self.mlp = MLP(num_dense, sizes, block)
        self.proj = nn.Linear(self.mlp.out_dim, dim)

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        """(B, Fd) → (B, D)."""
        return self.proj(self.mlp(dense))
