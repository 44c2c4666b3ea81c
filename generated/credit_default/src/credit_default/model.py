"""The ranking model: SparseArch → DenseArch → InteractionArch → OverArch (template-owned).

The model returns logits, one per event; the loss lives outside (see loss.py) so that the model stays
exportable with ``torch.export``. Stages come from the package's answers, or from its extension
(``stages.Extension``); ``builder.build_model`` is the one place that assembles a model for training and serving.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .modules.dense import DenseArch
from .modules.embedding import SparseArch
from .modules.interaction import build_interaction
from .modules.mlp import scaled
from .modules.numeric import PeriodicEmbedding
from .modules.towers import build_towers
from .spec import ModelSpec
from .stages import Extension, Layout

EMBEDDING_MODULES = (nn.Embedding, nn.EmbeddingBag)


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


def layout(spec: ModelSpec, sizes: FeatureSizes) -> Layout:
    """What the template's stages hand to the interaction for ``sizes`` (before extension vectors)."""
    num_vectors = len(sizes.sparse) + len(sizes.multi_hot) + (1 if sizes.num_dense else 0)
    if spec.numeric_embedding == "periodic":
        num_vectors += sizes.num_dense  # one more vector per dense column
    return Layout(
        spec.embedding_dim, num_vectors, tuple(spec.events), len(sizes.sparse), len(sizes.multi_hot), sizes.num_dense
    )


def probe_inputs(sizes: FeatureSizes, batch: int) -> tuple:
    """Valid inputs of every shape class, on the current default device: sparse (B, Fs) zeros, dense (B, Fd)
    zeros, multi_hot [(B, 1)] ones. For shape checks and FLOP counts, where values do not matter."""
    return (
        torch.zeros((batch, len(sizes.sparse)), dtype=torch.long),
        torch.zeros((batch, sizes.num_dense)),
        [torch.ones((batch, 1), dtype=torch.long) for _ in sizes.multi_hot],
    )


class RankingModel(nn.Module):
    """Assembles the stages named by the package's answers, with the extension's stages in their slots.

    It names its parameter groups (``embedding_parameters`` train with the sparse optimizer, the rest with
    AdamW) and owns the calibration buffer ``logit_shift`` (added to the logits in eval mode and in the
    exported artifact), so nothing outside finds them by name.

    Example:
        >>> from .spec import SPEC
        >>> model = RankingModel(SPEC, FeatureSizes((10,), (), 2))
        >>> model(torch.zeros(4, 1, dtype=torch.long), torch.zeros(4, 2), []).shape[0]
        4
    """

    def __init__(self, spec: ModelSpec, sizes: FeatureSizes, extension: Extension | None = None):
        super().__init__()
        extension = extension or Extension()
        dim = spec.embedding_dim
        qr = (spec.qr_collisions, spec.qr_min_rows) if spec.qr_collisions else None
        self.sparse_arch = SparseArch(list(sizes.sparse), list(sizes.multi_hot), dim, quotient_remainder=qr)
        dense_sizes = scaled(spec.dense_arch, spec.width_multiplier)
        self.dense_arch = DenseArch(sizes.num_dense, dense_sizes, dim, spec.mlp_block) if sizes.num_dense else None
        periodic = spec.numeric_embedding == "periodic" and sizes.num_dense
        self.numeric_embedding = PeriodicEmbedding(sizes.num_dense, dim) if periodic else None
        self.extra_vectors = extension.feature_vectors
        extra = extension.feature_vectors.num_vectors if extension.feature_vectors is not None else 0
        num_vectors = layout(spec, sizes).num_vectors + extra
        self.interaction = extension.interaction or build_interaction(
            spec.interaction, num_vectors, dim, spec.dcn_rank, spec.dcn_layers
        )
        self.over_arch = extension.over_arch or build_towers(spec.towers, self.interaction.output_dim, spec)
        self.loss_terms = tuple(extension.loss_terms)
        # Calibration head (eval/export only): log(negative sampling rate) + a per-event bias fit on valid data.
        self.register_buffer("logit_shift", torch.zeros(len(spec.events)))
        self._embedding_names = self._sparse_gradient_parameters()

    def base_vectors(self, sparse: torch.Tensor, dense: torch.Tensor, multi_hot: list[torch.Tensor]) -> torch.Tensor:
        """The template's feature vectors: sparse (B, Fs), dense (B, Fd), multi_hot [(B, L_i)] → (B, F, D)."""
        vectors = self.sparse_arch(sparse, multi_hot)  # (B, Fs + Fm, D)
        if self.dense_arch is not None:
            dense_vector = self.dense_arch(dense)  # (B, D)
            vectors = torch.cat([vectors, dense_vector.unsqueeze(1)], dim=1)  # (B, F, D)
        if self.numeric_embedding is not None:
            vectors = torch.cat([vectors, self.numeric_embedding(dense)], dim=1)  # (B, F + Fd, D)
        return vectors

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor, multi_hot: list[torch.Tensor]) -> torch.Tensor:
        """sparse (B, Fs) int64, dense (B, Fd) float32, multi_hot [(B, L_i)] int64 → logits (B, E)."""
        vectors = self.base_vectors(sparse, dense, multi_hot)  # (B, F, D)
        if self.extra_vectors is not None:
            extra = self.extra_vectors(sparse, dense, multi_hot)  # (B, K, D)
            vectors = torch.cat([vectors, extra.to(vectors.dtype)], dim=1)  # (B, F + K, D)
        logits = self.over_arch(self.interaction(vectors))  # (B, E)
        return logits if self.training else logits + self.logit_shift

    # --- what the training loop and the tools need, by name -------------------------------------------------

    def embedding_parameters(self) -> list[nn.Parameter]:
        """Parameters with sparse gradients: the SparseArch tables and sparse embeddings of extension stages."""
        named = dict(self.named_parameters())
        return [named[n] for n in self._embedding_names]

    def embedding_decay_masks(self, multi_hot: bool = True) -> dict[nn.Parameter, torch.Tensor]:
        """Embedding parameter → (rows,) mask of the rows weight decay may touch; a parameter not named decays
        whole. The fused table of a model with QR features has one (its remainder rows are kept out); with
        ``multi_hot=False`` every multi-hot bag table gets an all-zero mask (no row of it decays)."""
        arch = self.sparse_arch
        masks = {arch.table.weight: arch.decay_mask()} if arch.qr_features else {}
        if not multi_hot:
            masks.update({bag.weight: torch.zeros(bag.num_embeddings, device=bag.weight.device) for bag in arch.bags})
        return masks

    def dense_parameters(self) -> list[nn.Parameter]:
        """Every other parameter (AdamW, gradient clipping)."""
        embedding = set(self._embedding_names)
        return [p for n, p in self.named_parameters() if n not in embedding]

    def use_dense_embedding_gradients(self) -> None:
        """Make every embedding table produce dense gradients (nccl cannot all-reduce sparse ones)."""
        for module in self.modules():
            if isinstance(module, EMBEDDING_MODULES):
                module.sparse = False

    def extra_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Sum of the extension's loss terms for logits, labels (B, E): a 0-d tensor (0 without terms)."""
        total = logits.new_zeros(())
        for term in self.loss_terms:
            total = total + term(logits, labels, self)
        return total

    def init_base_rates(self, rates: torch.Tensor) -> None:
        """Start the heads at the log-odds of each event's base rate (E,): no wasted early steps."""
        rates = rates.clamp(1e-4, 1 - 1e-4)
        self.over_arch.init_output_bias(torch.log(rates / (1 - rates)))

    def set_calibration(self, shift: torch.Tensor) -> None:
        """Set the eval-time logit shift (E,), e.g. log(kept negatives) after downsampling (He et al. 2014)."""
        self.logit_shift.copy_(shift.to(self.logit_shift))

    def shift_calibration(self, delta: torch.Tensor) -> None:
        """Add ``delta`` (E,) to the eval-time logit shift, e.g. a bias fit on validation data."""
        self.logit_shift.add_(delta.to(self.logit_shift))

    def _sparse_gradient_parameters(self) -> tuple[str, ...]:
        """Names of the SparseArch parameters, then of ``sparse=True`` embeddings in the other stages."""
        names = [f"sparse_arch.{n}" for n, _ in self.sparse_arch.named_parameters()]
        for module_name, module in self.named_modules():
            if module_name.split(".")[0] == "sparse_arch" or not isinstance(module, EMBEDDING_MODULES):
                continue
            if module.sparse:
                names += [f"{module_name}.{n}" for n, _ in module.named_parameters(recurse=False)]
        return tuple(names)
