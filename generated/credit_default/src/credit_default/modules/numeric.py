"""Embeddings of numeric features (template-owned): each dense column becomes a D-vector of its own.

Periodic embeddings (Gorishniy et al. 2022, "On Embeddings for Numerical Features in Tabular Deep Learning",
the PLR variant): for feature f with standardized value x, v_f = ReLU(W_f [sin(2π c_f x), cos(2π c_f x)] + b_f)
with trainable frequencies c_f (K,) initialised from N(0, σ²). An MLP sees a numeric feature only through
linear maps and ReLUs; the periodic basis lets it fit sharp, non-monotone effects of a single number, the
usual reason gradient-boosted trees beat MLPs on tabular data.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PeriodicEmbedding(nn.Module):
    """(B, Fd) standardized dense values → (B, Fd, D): one vector per dense column.

    Args:
        num_dense: number of dense columns Fd (> 0).
        dim: embedding dimension D.
        frequencies: K, sine/cosine pairs per feature.
        sigma: standard deviation of the initial frequencies (the method's one sensitive knob).

    Example:
        >>> PeriodicEmbedding(3, dim=4)(torch.zeros(2, 3)).shape
        torch.Size([2, 3, 4])
    """

    def __init__(self, num_dense: int, dim: int, frequencies: int = 16, sigma: float = 0.1):
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(num_dense, frequencies) * sigma)  # (Fd, K)
        self.weight = nn.Parameter(torch.empty(num_dense, 2 * frequencies, dim))  # (Fd, 2K, D)
        self.bias = nn.Parameter(torch.zeros(num_dense, dim))  # (Fd, D)
        bound = 1 / math.sqrt(2 * frequencies)  # nn.Linear's default initialisation, per feature
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        """(B, Fd) → (B, Fd, D)."""
        angles = 2 * math.pi * self.frequencies * dense.unsqueeze(-1)  # (B, Fd, K)
        basis = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # (B, Fd, 2K)
        return torch.relu(torch.einsum("bfk,fkd->bfd", basis, self.weight) + self.bias)  # (B, Fd, D)
