"""Extension hook of this model (model-owned: created once, never overwritten by a template update).

Put model-specific code here instead of editing template-owned files, so template upgrades keep reaching
this package. If two models need the same change, propose it for the template instead.
"""

from __future__ import annotations

from torch import nn


def extend_model(model: nn.Module, spec) -> nn.Module:
    """Called on every freshly built model (train, evaluate, export); return the model to use.

    ``spec`` is the package's ModelSpec. The returned model must keep the forward signature
    ``(sparse, dense, multi_hot) -> logits (B, E)``.
    """
    return model
