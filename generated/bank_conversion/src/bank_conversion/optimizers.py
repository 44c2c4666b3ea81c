"""Which optimizer trains which parameters (template-owned).

Embedding parameters (``RankingModel.embedding_parameters``: sparse gradients) train with RowSparseAdam, or with
Adam when the backend needs dense gradients (nccl); every other parameter trains with AdamW.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import TrainConfig
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
    dense_opt = torch.optim.AdamW(dense, lr=config.lr, weight_decay=config.weight_decay)
    embedding_opt = None
    if embedding:
        kind = RowSparseAdam if sparse_gradients else torch.optim.Adam
        decay = {"weight_decay": config.embedding_weight_decay} if config.embedding_weight_decay else {}
        embedding_opt = kind(embedding, lr=config.embedding_lr, **decay)
    return Optimizers(dense_opt, embedding_opt, dense)
