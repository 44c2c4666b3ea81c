"""SparseArch: one embedding table per sparse feature, mean-pooled bags for multi-hot lists (template-owned)."""

from __future__ import annotations

import torch
from torch import nn


class SparseArch(nn.Module):
    """Looks up every sparse and multi-hot feature and stacks the vectors.

    Row 0 of every table is the missing value / padding row; multi-hot bags ignore it (``padding_idx=0``).
    Tables use sparse gradients so that the optimizer touches only the rows of a batch.

    Args:
        cardinalities: rows of each single-valued table (Fs tables).
        multi_hot_cardinalities: rows of each multi-hot table (Fm tables).
        dim: embedding dimension D.

    Example:
        >>> arch = SparseArch([10, 20], [5], dim=4)
        >>> arch(torch.zeros(3, 2, dtype=torch.long), [torch.ones(3, 2, dtype=torch.long)]).shape
        torch.Size([3, 3, 4])
    """

    def __init__(self, cardinalities: list[int], multi_hot_cardinalities: list[int], dim: int):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(n, dim, sparse=True) for n in cardinalities)
        self.bags = nn.ModuleList(
            nn.EmbeddingBag(n, dim, mode="mean", padding_idx=0, sparse=True) for n in multi_hot_cardinalities
        )
        for table in [*self.tables, *self.bags]:
            nn.init.normal_(table.weight, std=0.05)
        self.num_vectors = len(cardinalities) + len(multi_hot_cardinalities)
        self.dim = dim

    def forward(self, sparse: torch.Tensor, multi_hot: list[torch.Tensor]) -> torch.Tensor:
        """sparse (B, Fs) int64, multi_hot [(B, L_i)] int64 → (B, Fs + Fm, D)."""
        vectors = [table(sparse[:, i]) for i, table in enumerate(self.tables)]  # Fs × (B, D)
        vectors += [bag(ids) for bag, ids in zip(self.bags, multi_hot)]  # Fm × (B, D)
        if not vectors:
            return sparse.new_zeros((sparse.shape[0], 0, self.dim), dtype=torch.float32)
        return torch.stack(vectors, dim=1)  # (B, F, D)
