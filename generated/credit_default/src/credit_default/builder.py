"""Build a package's model: budget → extension stages → RankingModel → contract checks (template-owned).

Train, evaluate, export and capacity all build through ``build_model``, so the model that is served is the
model that was trained, extension included.
"""

from __future__ import annotations

import dataclasses

import torch

from . import extensions
from .budget import fit_to_budget
from .model import FeatureSizes, RankingModel, layout, probe_inputs
from .spec import ModelSpec
from .stages import Extension, ExtensionError, check_shapes, check_slots

PROBE_BATCH = 2


def build_model(
    spec: ModelSpec, sizes: FeatureSizes, seed: int = 0, width_multiplier: float | None = None
) -> RankingModel:
    """A freshly initialised model (sized to the FLOPs budget, if any) with the package's extension stages.

    ``width_multiplier``: the one a checkpoint recorded when its model was sized (see ``sized_spec``). The
    extension is built after seeding and before the template's stages, so an empty extension leaves the
    template's initialisation exactly as it was.
    """
    spec = sized_spec(spec, sizes, width_multiplier)
    torch.manual_seed(seed)
    extension = load_extension(spec, sizes)
    model = RankingModel(spec, sizes, extension)
    check_shapes(model, extension, probe_inputs(sizes, PROBE_BATCH), len(spec.events))
    _legacy_hook(model, spec)
    return model


def sized_spec(spec: ModelSpec, sizes: FeatureSizes, width_multiplier: float | None = None) -> ModelSpec:
    """``spec`` at the size its model is built: with a ``flops_budget``, the width multiplier fitted to it, or
    ``width_multiplier`` when given: the multiplier a checkpoint recorded at training. Fitting counts the FLOPs
    of tens of probe models (seconds in every evaluate, export and capacity of a checkpoint); loading the
    weights checks the recorded size, since a state dict of other shapes does not load."""
    if not spec.flops_budget:
        return spec
    if width_multiplier is not None:
        return dataclasses.replace(spec, width_multiplier=float(width_multiplier), flops_budget=0)
    return fit_to_budget(spec, sizes)


def load_extension(spec: ModelSpec, sizes: FeatureSizes) -> Extension:
    """The stages of ``extensions.extension(spec, layout)``, checked slot by slot; empty without the function."""
    make = getattr(extensions, "extension", None)
    if make is None:
        return Extension()
    return check_slots(make(spec, layout(spec, sizes)))


def _legacy_hook(model: RankingModel, spec: ModelSpec) -> None:
    """Packages made before stage slots may keep ``extend_model(model, spec)`` if it changes the model in place."""
    hook = getattr(extensions, "extend_model", None)
    if hook is None or hasattr(extensions, "extension"):
        return
    if hook(model, spec) is not model:
        raise ExtensionError(
            "extensions.extend_model returned another model; wrapping is not supported (it loses the optimizer "
            "split and the calibration): define extension(spec, layout) with stage slots instead (see stages.py)"
        )
