"""An extension that fills every stage slot; copy it over a package's ``src/NAME/extensions.py`` to try it.

It is the model-owned file of a package (never overwritten by `smt sync`), written against the contract in the
package's ``stages.py``:

- ``feature_vectors``: a hashed cross of the first two sparse features, as one extra vector, trained with
  sparse gradients (``nn.Embedding(sparse=True)``, so it goes to the embedding optimizer);
- ``interaction``: mean pooling beside a linear map of all vectors (``output_dim`` = 2·D);
- ``over_arch``: one linear head per event, with ``init_output_bias`` so heads start at base-rate log-odds;
- ``loss_terms``: a small L2 penalty on the logits (training only).
"""

from __future__ import annotations

import torch
from torch import nn

from .stages import Extension, Layout


class HashedCross(nn.Module):
    """(B, Fs) ids → (B, 1, D): an embedding of (feature 0, feature 1) hashed into ``rows`` rows."""

    num_vectors = 1

    def __init__(self, dim: int, rows: int = 1009):
        super().__init__()
        self.rows = rows
        self.table = nn.Embedding(rows, dim, sparse=True)

    def forward(self, sparse: torch.Tensor, dense: torch.Tensor, multi_hot: list[torch.Tensor]) -> torch.Tensor:
        return self.table((sparse[:, 0] * 7919 + sparse[:, 1]) % self.rows).unsqueeze(1)


class MeanAndLinear(nn.Module):
    """(B, F, D) → (B, 2D): the mean vector beside a linear map of the flattened vectors."""

    def __init__(self, num_vectors: int, dim: int):
        super().__init__()
        self.proj = nn.Linear(num_vectors * dim, dim)
        self.output_dim = 2 * dim

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return torch.cat([vectors.mean(dim=1), torch.relu(self.proj(vectors.flatten(1)))], dim=1)


class LinearHeads(nn.Module):
    """(B, H) → (B, E) logits."""

    def __init__(self, in_dim: int, num_events: int):
        super().__init__()
        self.out = nn.Linear(in_dim, num_events)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(hidden)

    def init_output_bias(self, bias: torch.Tensor) -> None:
        with torch.no_grad():
            self.out.bias.copy_(bias)


def logit_l2(logits: torch.Tensor, labels: torch.Tensor, model: nn.Module) -> torch.Tensor:
    return 1e-4 * logits.pow(2).mean()


def extension(spec, layout: Layout) -> Extension:
    interaction = MeanAndLinear(layout.num_vectors + HashedCross.num_vectors, layout.dim)
    return Extension(
        feature_vectors=HashedCross(layout.dim),
        interaction=interaction,
        over_arch=LinearHeads(interaction.output_dim, len(layout.events)),
        loss_terms=(logit_l2,),
    )
