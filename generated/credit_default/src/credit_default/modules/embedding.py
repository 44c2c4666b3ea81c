"""SparseArch: one fused embedding table for all single-valued features, mean-pooled bags for multi-hot lists
(template-owned).

Features that share the embedding dimension live in one ``nn.Embedding`` whose rows are the features' tables
laid end to end; a feature's ids are shifted by its row offset, so one gather serves every feature (measured
1.2× faster than a table per feature at batch 4,096 with 26 Criteo-sized tables on 2 CPU cores, see
``benchmarks/results/speed.md`` of the SMT repository). Checkpoints written with one table per feature
(``tables.{i}.weight``) still load: they are concatenated into the fused table.

Compositional embeddings (Shi et al. 2020, "quotient-remainder trick"): with ``quotient_remainder=(c, m)``,
a feature whose table has more than ``m`` rows gets two slots in the fused table instead of one, a quotient
table of ceil(n / c) rows and a remainder table of c rows; id i is the product Q[i // c] ⊙ R[i % c]. Every
id keeps a distinct (quotient, remainder) pair, and the feature's rows shrink from n to about n / c + c.
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
        quotient_remainder: (collisions c, min rows m), or None for one row per id everywhere.

    Example:
        >>> arch = SparseArch([10, 20], [5], dim=4)
        >>> arch(torch.zeros(3, 2, dtype=torch.long), [torch.ones(3, 2, dtype=torch.long)]).shape
        torch.Size([3, 3, 4])
        >>> arch.table.weight.shape
        torch.Size([30, 4])
    """

    def __init__(
        self,
        cardinalities: list[int],
        multi_hot_cardinalities: list[int],
        dim: int,
        quotient_remainder: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.cardinalities = list(cardinalities)
        collisions, min_rows = quotient_remainder or (0, 0)
        qr = [i for i, n in enumerate(cardinalities) if collisions and n > max(min_rows, collisions)]
        # One slot per feature (its id, or its quotient), then a remainder slot per QR feature.
        # slot value = (id[:, source] // divisor) % modulus + offset
        source = list(range(len(cardinalities))) + qr
        divisor = [collisions if i in qr else 1 for i in range(len(cardinalities))] + [1] * len(qr)
        rows = [-(-n // collisions) if i in qr else n for i, n in enumerate(cardinalities)] + [collisions] * len(qr)
        starts = torch.tensor([0, *rows[:-1]], dtype=torch.long).cumsum(0) if rows else torch.zeros(0)
        self.table = nn.Embedding(max(1, sum(rows)), dim, sparse=True)
        nn.init.normal_(self.table.weight, std=0.05)
        with torch.no_grad():
            for slot in range(len(cardinalities), len(rows)):  # remainder rows start near 1: Q ⊙ R ≈ Q
                self.table.weight[starts[slot] : starts[slot] + rows[slot]].add_(1.0)
        # partner[i]: the remainder slot multiplied into feature i, or the all-ones column for plain features
        partner = [len(qr)] * len(cardinalities)
        for k, i in enumerate(qr):
            partner[i] = k
        self.register_buffer("source", torch.tensor(source, dtype=torch.long), persistent=False)  # (S,)
        self.register_buffer("divisor", torch.tensor(divisor, dtype=torch.long), persistent=False)  # (S,)
        self.register_buffer("modulus", torch.tensor(rows, dtype=torch.long), persistent=False)  # (S,)
        self.register_buffer("offsets", starts.long(), persistent=False)  # (S,)
        self.register_buffer("partner", torch.tensor(partner, dtype=torch.long), persistent=False)  # (Fs,)
        self.slot_rows = rows
        self.qr_features = qr
        self.bags = nn.ModuleList(
            nn.EmbeddingBag(n, dim, mode="mean", padding_idx=0, sparse=True) for n in multi_hot_cardinalities
        )
        for bag in self.bags:
            nn.init.normal_(bag.weight, std=0.05)
        self.num_vectors = len(cardinalities) + len(multi_hot_cardinalities)
        self.dim = dim

    def forward(self, sparse: torch.Tensor, multi_hot: list[torch.Tensor]) -> torch.Tensor:
        """sparse (B, Fs) int64, multi_hot [(B, L_i)] int64 → (B, Fs + Fm, D)."""
        vectors = [self._single_valued(sparse)] if self.cardinalities else []  # (B, Fs, D)
        vectors += [bag(ids).unsqueeze(1) for bag, ids in zip(self.bags, multi_hot)]  # Fm × (B, 1, D)
        if not vectors:
            return sparse.new_zeros((sparse.shape[0], 0, self.dim), dtype=torch.float32)
        return vectors[0] if len(vectors) == 1 else torch.cat(vectors, dim=1)  # (B, F, D)

    def _single_valued(self, sparse: torch.Tensor) -> torch.Tensor:
        """(B, Fs) ids → (B, Fs, D): one fused gather over every slot, then Q ⊙ R for QR features."""
        fs = len(self.cardinalities)
        if not self.qr_features:
            return self.table(sparse + self.offsets)  # (B, Fs, D)
        slots = torch.div(sparse[:, self.source], self.divisor, rounding_mode="floor") % self.modulus
        looked_up = self.table(slots + self.offsets)  # (B, S, D), S = Fs + number of QR features
        ones = looked_up.new_ones((looked_up.shape[0], 1, self.dim))
        remainders = torch.cat([looked_up[:, fs:], ones], dim=1)  # (B, Q + 1, D)
        return looked_up[:, :fs] * remainders[:, self.partner]  # (B, Fs, D)

    def decay_mask(self) -> torch.Tensor:
        """(rows of the fused table,) 1.0 where weight decay applies, 0.0 on the remainder rows of QR features.

        Remainder rows start near 1 so that Q ⊙ R ≈ Q; L2 toward 0 would shrink every product of the feature,
        so embedding weight decay leaves them alone (it still regularises the quotient rows).
        """
        mask = torch.ones(self.table.num_embeddings, device=self.table.weight.device)
        for slot in range(len(self.cardinalities), len(self.slot_rows)):
            start = int(self.offsets[slot])
            mask[start : start + self.slot_rows[slot]] = 0.0
        return mask

    def feature_table(self, i: int) -> torch.Tensor:
        """Rows of feature ``i``'s (first) slot, a view into the fused table: (cardinality_i or quotient rows, D)."""
        start = int(self.offsets[i])
        return self.table.weight[start : start + self.slot_rows[i]]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Accept checkpoints with one table per feature (``tables.{i}.weight``) by fusing them."""
        old = [f"{prefix}tables.{i}.weight" for i in range(len(self.cardinalities))]
        if old and not self.qr_features and all(key in state_dict for key in old):
            state_dict[f"{prefix}table.weight"] = torch.cat([state_dict.pop(key) for key in old], dim=0)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
