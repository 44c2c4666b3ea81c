"""SparseArch: one fused embedding table for all single-valued features, mean-pooled bags for multi-hot lists
(template-owned).

Features that share the embedding dimension live in one ``nn.Embedding`` whose rows are the features' tables
laid end to end; a feature's ids are shifted by its row offset, so one gather serves every feature (measured
1.2× faster than a table per feature at batch 4,096 with 26 Criteo-sized tables on 2 CPU cores, see
``benchmarks/results/speed.md`` of the SMT repository). Checkpoints written with one table per feature
(``tables.{i}.weight``) still load: they are concatenated into the fused table.
"""

from __future__ import annotations

import torch
from torch import nn


class SparseArch(nn.Module):
    """Looks up every sparse and multi-hot feature and stacks the vectors.

    Row 0 of every feature's table is its missing value / padding row; multi-hot bags ignore it
    (``padding_idx=0``). Tables use sparse gradients so that the optimizer touches only the rows of a batch.

    Args:
        cardinalities: rows of each single-valued feature's table (Fs features, fused into one table).
        multi_hot_cardinalities: rows of each multi-hot table (Fm tables).
        dim: embedding dimension D.

    Example:
        >>> arch = SparseArch([10, 20], [5], dim=4)
        >>> arch(torch.zeros(3, 2, dtype=torch.long), [torch.ones(3, 2, dtype=torch.long)]).shape
        torch.Size([3, 3, 4])
        >>> arch.table.weight.shape
        torch.Size([30, 4])
    """

    def __init__(self, cardinalities: list[int], multi_hot_cardinalities: list[int], dim: int):
        super().__init__()
        self.cardinalities = list(cardinalities)
        self.table = nn.Embedding(max(1, sum(cardinalities)), dim, sparse=True)
        starts = [0, *torch.tensor(cardinalities[:-1], dtype=torch.long).cumsum(0).tolist()] if cardinalities else []
        self.register_buffer("offsets", torch.tensor(starts, dtype=torch.long), persistent=False)  # (Fs,)
        self.bags = nn.ModuleList(
            nn.EmbeddingBag(n, dim, mode="mean", padding_idx=0, sparse=True) for n in multi_hot_cardinalities
        )
        for table in [self.table, *self.bags]:
            nn.init.normal_(table.weight, std=0.05)
        self.num_vectors = len(cardinalities) + len(multi_hot_cardinalities)
        self.dim = dim

    def forward(self, sparse: torch.Tensor, multi_hot: list[torch.Tensor]) -> torch.Tensor:
        """sparse (B, Fs) int64, multi_hot [(B, L_i)] int64 → (B, Fs + Fm, D)."""
        vectors = [self.table(sparse + self.offsets)] if self.cardinalities else []  # (B, Fs, D)
        vectors += [bag(ids).unsqueeze(1) for bag, ids in zip(self.bags, multi_hot)]  # Fm × (B, 1, D)
        if not vectors:
            return sparse.new_zeros((sparse.shape[0], 0, self.dim), dtype=torch.float32)
        return vectors[0] if len(vectors) == 1 else torch.cat(vectors, dim=1)  # (B, F, D)

    def feature_table(self, i: int) -> torch.Tensor:
        """The rows of single-valued feature ``i`` (a view into the fused table): (cardinality_i, D)."""
        start = int(self.offsets[i])
        return self.table.weight[start : start + self.cardinalities[i]]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Accept checkpoints with one table per feature (``tables.{i}.weight``) by fusing them."""
        old = [f"{prefix}tables.{i}.weight" for i in range(len(self.cardinalities))]
        if old and all(key in state_dict for key in old):
            state_dict[f"{prefix}table.weight"] = torch.cat([state_dict.pop(key) for key in old], dim=0)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
