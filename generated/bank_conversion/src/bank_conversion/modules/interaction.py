"""InteractionArch: the technique slot that mixes the F feature vectors (template-owned).

Every interaction takes the stacked vectors ``(B, F, D)`` and returns ``(B, output_dim)``.
"""

from __future__ import annotations

import torch
from torch import nn


class ConcatInteraction(nn.Module):
    """Plain DNN input: flatten the vectors.

    Example:
        >>> ConcatInteraction(3, 4)(torch.zeros(2, 3, 4)).shape
        torch.Size([2, 12])
    """

    def __init__(self, num_vectors: int, dim: int):
        super().__init__()
        self.output_dim = num_vectors * dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, D) → (B, F·D)."""
        return x.flatten(1)


class DotInteraction(nn.Module):
    """DLRM pairwise dot products (Naumov et al. 2019, arXiv 1906.00091).

    Output: the last vector (the dense vector when there are dense features, else the last embedding)
    concatenated with the F(F−1)/2 dot products ⟨x_i, x_j⟩, i < j. Zero parameters.

    Example:
        >>> DotInteraction(3, 4)(torch.ones(2, 3, 4)).tolist()[0][-3:]
        [4.0, 4.0, 4.0]
    """

    def __init__(self, num_vectors: int, dim: int):
        super().__init__()
        rows, cols = torch.triu_indices(num_vectors, num_vectors, offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.output_dim = dim + rows.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, D) → (B, D + F(F−1)/2)."""
        gram = torch.bmm(x, x.transpose(1, 2))  # (B, F, F)
        pairs = gram[:, self.rows, self.cols]  # (B, F(F−1)/2)
        return torch.cat([x[:, -1, :], pairs], dim=1)


class LowRankCrossInteraction(nn.Module):
    """DCNv2 cross network with low-rank weights (Wang et al. 2021, arXiv 2008.13535).

    On the flattened input x0 ∈ R^{F·D}: x_{l+1} = x0 ⊙ (U_l (V_lᵀ x_l) + b_l) + x_l, for l < layers.
    ``rank`` r is the capacity knob: each layer costs ≈ 4·F·D·r FLOPs. Same numerics as torchrec's
    ``LowRankCrossNet``.

    Args:
        num_vectors: F.  dim: D.  rank: r.  layers: number of cross layers.

    Example:
        >>> LowRankCrossInteraction(3, 4, rank=2, layers=2)(torch.zeros(5, 3, 4)).shape
        torch.Size([5, 12])
    """

    def __init__(self, num_vectors: int, dim: int, rank: int, layers: int):
        super().__init__()
        width = num_vectors * dim
        self.down = nn.ModuleList(nn.Linear(width, rank, bias=False) for _ in range(layers))
        self.up = nn.ModuleList(nn.Linear(rank, width, bias=True) for _ in range(layers))
        self.output_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, D) → (B, F·D)."""
        x0 = x.flatten(1)  # (B, F·D)
        xl = x0
        for down, up in zip(self.down, self.up):
            xl = x0 * up(down(xl)) + xl  # (B, F·D)
        return xl


def build_interaction(kind: str, num_vectors: int, dim: int, rank: int = 0, layers: int = 0) -> nn.Module:
    """The interaction named by the package's ``interaction`` answer."""
    if kind == "concat":
        return ConcatInteraction(num_vectors, dim)
    if kind == "dot":
        return DotInteraction(num_vectors, dim)
    if kind == "dcn_v2":
        return LowRankCrossInteraction(num_vectors, dim, rank, layers)
    raise ValueError(f"unknown interaction '{kind}'")
