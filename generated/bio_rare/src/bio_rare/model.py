"""The ranking model: SparseArch → DenseArch → InteractionArch → OverArch (template-owned).

The model returns logits, one per event; the loss lives outside (see loss.py) so that the model stays
exportable with ``torch.export``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from . import extensions
from .modules.dense import DenseArch
from .modules.embedding import SparseArch
from .modules.interaction import build_interaction
from .modules.mlp import scaled
from .modules.towers import build_towers
from .spec import ModelSpec


@dataclass(frozen=True)
class FeatureSizes:
    """Sizes fit on train data: rows of each sparse / multi-hot table, and the number of dense features."""

    sparse: tuple[int, ...]
    multi_hot: tuple[int, ...]
    num_dense: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSizes:
        return cls(tuple(d["sparse"]), tuple(d["multi_hot"]), int(d["num_dense"]))


class RankingModel(nn.Module):
    """Assembles the stages named by the package's answers.

    Example:
        >>> from .spec import SPEC
        >>> model = RankingModel(SPEC, FeatureSizes((10,), (), 2))
        >>> model(torch.zeros(4, 1, dtype=torch.long), torch.zeros(4, 2), []).shape[0]
        4
    """

    def __init__(self, spec: ModelSpec, sizes: FeatureSizes):
        super().__init__()
        dim = spec.embedding_dim
        qr = (spec.qr_collisions, spec.qr_min_rows) if spec.qr_collisions else None
        self.sparse_arch = SparseArch(list(sizes.sparse), list(sizes.multi_hot), dim, quotient_remainder=qr)
        dense_sizes = scaled(spec.dense_arch, spec.width_multiplier)
        self.dense_arch = DenseArch(sizes.num_dense, dense_sizes, dim, spec.mlp_block) if sizes.num_dense else None
        num_vectors = self.sparse_arch.num_vectors + (1 if sizes.num_dense else 0)
        self.interaction = build_interaction(spec.interaction, num_vectors, dim, spec.dcn_rank, spec.dcn_layers)
        self.over_arch = build_towers(spec.towers, self.interaction.output_dim, spec)
        # Calibration head (eval/export only): log(negative sampling rate) + a per-event bias fit on valid data.
        self.register_buffer("logit_shift", torch.zeros(len(spec.events)))

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor, multi_hot: list[torch.Tensor]) -> torch.Tensor:
        """sparse (B, Fs) int64, dense (B, Fd) float32, multi_hot [(B, L_i)] int64 → logits (B, E)."""
        vectors = self.sparse_arch(sparse, multi_hot)  # (B, Fs + Fm, D)
        if self.dense_arch is not None:
            dense_vector = self.dense_arch(dense)  # (B, D)
            vectors = torch.cat([vectors, dense_vector.unsqueeze(1)], dim=1)  # (B, F, D)
        logits = self.over_arch(self.interaction(vectors))  # (B, E)
        return logits if self.training else logits + self.logit_shift

    def init_base_rates(self, rates: torch.Tensor) -> None:
        """Start the heads at the log-odds of each event's base rate (E,): no wasted early steps."""
        rates = rates.clamp(1e-4, 1 - 1e-4)
        self.over_arch.init_output_bias(torch.log(rates / (1 - rates)))


def build_model(spec: ModelSpec, sizes: FeatureSizes, seed: int = 0) -> nn.Module:
    """A freshly initialised model (sized to the FLOPs budget, if any), passed through the extension hook."""
    if spec.flops_budget:
        from .budget import fit_to_budget

        spec = fit_to_budget(spec, sizes)
    torch.manual_seed(seed)
    return extensions.extend_model(RankingModel(spec, sizes), spec)
