"""Which optimizer trains which parameters (template-owned).

Embedding parameters (``RankingModel.embedding_parameters``: sparse gradients) train with RowSparseAdam, or with
Adam when the backend needs dense gradients (nccl); every other parameter trains with AdamW. Embedding weight
decay skips the rows ``RankingModel.embedding_decay_masks`` masks out (the remainder rows of QR features, and the
multi-hot bag tables with ``embedding_decay_multi_hot: false``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import eager_optim
from .config import TrainConfig
from .errors import ConfigError
from .large_batch import batch_scaling
from .model import RankingModel
from .optim import RowSparseAdam


@dataclass
class Optimizers:
    dense: torch.optim.Optimizer
    embedding: torch.optim.Optimizer | None  # None for a model without embedding parameters
    dense_params: list[torch.nn.Parameter]  # what gradient clipping covers


def build_optimizers(model: RankingModel, config: TrainConfig, sparse_gradients: bool = True) -> Optimizers:
    """Optimizers of ``model`` for ``config``; ``sparse_gradients=False`` switches the tables to dense gradients."""
    if not sparse_gradients:
        model.use_dense_embedding_gradients()
    dense, embedding = model.dense_parameters(), model.embedding_parameters()
    dense_opt = eager_optim.AdamW(dense, lr=config.lr, weight_decay=config.weight_decay)
    embedding_opt = None
    if embedding:
        by_frequency = config.embedding_decay_scaling == "frequency"
        # Frequency-scaled decay sums to ~log(count) per row whatever the batch size: no batch-size rule.
        decay = config.embedding_weight_decay * (1.0 if by_frequency else batch_scaling(config).embedding_decay)
        masks = model.embedding_decay_masks(multi_hot=config.embedding_decay_multi_hot)
        betas = (config.embedding_beta1, config.embedding_beta2)
        if sparse_gradients:
            embedding_opt = RowSparseAdam(
                embedding,
                lr=config.embedding_lr,
                betas=betas,
                weight_decay=decay,
                decay_masks=masks,
                clip_ratio=config.embedding_clip,
                clip_min=config.embedding_clip_min,
                decay_by_frequency=by_frequency,
            )
        else:
            sparse_only = {"embedding_clip": ("embedding_clip=0", bool(config.embedding_clip))}
            sparse_only["embedding_decay_scaling=frequency"] = ("embedding_decay_scaling=none", by_frequency and decay)
            for option, (off, on) in sparse_only.items():
                if on:
                    raise ConfigError(
                        f"training option {option} needs sparse embedding gradients, which the nccl backend "
                        f"cannot all-reduce; set {off} or train under gloo"
                    )
            embedding_opt = eager_optim.Adam(embedding, lr=config.embedding_lr, betas=betas)
            if decay:
                for param in embedding:  # coupled L2, as Adam's weight_decay, through the mask where there is one
                    mask = masks.get(param)
                    if mask is not None and not bool(mask.any()):
                        continue  # no row of it decays
                    param.register_hook(_l2_hook(param, decay, None if mask is None else mask.unsqueeze(1)))
    return Optimizers(dense_opt, embedding_opt, dense)


def _l2_hook(param: torch.nn.Parameter, decay: float, mask: torch.Tensor | None):
    """A gradient hook adding ``decay · param`` (times ``mask``, broadcast over columns) to a dense gradient."""

    def hook(grad: torch.Tensor) -> torch.Tensor:
        weights = param.detach() if mask is None else param.detach() * mask
        return grad + decay * weights

    return hook
