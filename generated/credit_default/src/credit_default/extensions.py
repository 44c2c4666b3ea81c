"""Extension stages of this model (model-owned: created once, never overwritten by a template update).

Put model-specific code here instead of editing template-owned files, so template upgrades keep reaching this
package. Fill any slot of ``Extension`` (feature_vectors, interaction, over_arch, loss_terms); the contract of
each slot is in ``stages.py``, and a slot that breaks it fails when the model is built, naming the slot. If two
models need the same change, propose it for the template instead.
"""

from __future__ import annotations

from .stages import Extension, Layout


def extension(spec, layout: Layout) -> Extension:
    """The stages this model adds or replaces; ``spec`` is its ModelSpec, ``layout`` what the template produces.

    Example (one extra feature vector: a learned projection of the dense features):
        class DenseProjection(torch.nn.Module):
            num_vectors = 1

            def __init__(self):
                super().__init__()
                self.proj = torch.nn.Linear(layout.num_dense, layout.dim)

            def forward(self, sparse, dense, multi_hot):  # → (B, 1, D)
                return self.proj(dense).unsqueeze(1)

        return Extension(feature_vectors=DenseProjection())
    """
    return Extension()
