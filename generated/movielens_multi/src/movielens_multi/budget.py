"""Neutral serving capacity: size a model to a dense-FLOPs-per-example budget (template-owned).

With a ``flops_budget`` answer, the width multiplier of every MLP is solved by bisection so that the model's
dense FLOPs per example (torch's flop formulas on a forward pass, ``flops.py``) land within ±2% of the budget.
Comparisons between variants are then at equal serving cost. Embedding lookups cost 0 FLOPs here: report bytes apart.
The budget sizes the template's stages; stages of the package's extension are counted by ``capacity`` but
not resized.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch

from .errors import ConfigError
from .flops import forward_flops
from .model import FeatureSizes, RankingModel, probe_inputs
from .modules.mlp import scaled
from .spec import ModelSpec

TOLERANCE = 0.02
PROBE_BATCH = 8
# The narrowest hidden layer the width multiplier may leave. A budget that a technique's own FLOPs nearly use
# up (periodic numeric embeddings on bio_rare's 74 dense columns) once sized its MLPs to 4 and 2 units: two of
# three seeds then trained to NE 0.74 (incumbent 0.17), calibration 0.15. Such a candidate is refused, not run.
MIN_WIDTH = 8

MAX_MULTIPLIER = 64.0  # the widest a budget may make the template's MLPs

META_ABOVE = 4.0  # probes wider than this count on the meta device: shapes only, nothing allocated


def dense_flops(spec: ModelSpec, sizes) -> float:
    """Dense FLOPs per example of the model ``spec`` builds for ``sizes`` (tables shrunk: they cost 0 FLOPs).

    FLOPs depend on shapes alone, so wide probes are built on the ``meta`` device (a 64× model would
    otherwise allocate and initialise gigabytes just to be counted); the count is the same on either device.
    """
    if spec.width_multiplier > META_ABOVE:
        try:
            return _count(spec, sizes, torch.device("meta"))
        except (NotImplementedError, RuntimeError):  # an op without a meta kernel: count on the CPU
            pass
    return _count(spec, sizes, torch.device("cpu"))


def _count(spec: ModelSpec, sizes, device: torch.device) -> float:
    probe = FeatureSizes(tuple(2 for _ in sizes.sparse), tuple(2 for _ in sizes.multi_hot), sizes.num_dense)
    with device:
        model = RankingModel(dataclasses.replace(spec, flops_budget=0), probe).eval()
        inputs = probe_inputs(probe, PROBE_BATCH)
        return forward_flops(lambda: model(*inputs)) / PROBE_BATCH


@functools.lru_cache(maxsize=32)
def fit_to_budget(spec: ModelSpec, sizes) -> ModelSpec:
    """``spec`` with the width multiplier that puts dense FLOPs/example within ±2% of ``spec.flops_budget``."""
    budget = spec.flops_budget

    @functools.cache
    def flops(multiplier: float) -> float:
        return dense_flops(dataclasses.replace(spec, width_multiplier=multiplier), sizes)

    low, high = 1e-3, 1.0
    if flops(low) > budget * (1 + TOLERANCE):
        raise ConfigError(
            f"flops_budget {budget:,} is too small for any model of this package (the narrowest needs "
            f"{flops(low):,.0f} FLOPs/example); raise it, or lower dcn_rank / embedding_dim"
        )
    # Widen the bracket only as far as the budget needs: a probe above META_ABOVE is built on the meta device,
    # whose initialisers run through torch._refs and import torch._dynamo (1-2 s); most budgets never need one.
    while high < MAX_MULTIPLIER and flops(high) < budget:
        low, high = high, min(high * 4, MAX_MULTIPLIER)
    if flops(high) < budget * (1 - TOLERANCE):
        raise ConfigError(
            f"flops_budget {budget:,} needs more than {MAX_MULTIPLIER:g}× the widths; add layers to over_arch instead"
        )
    best = (math.inf, 1.0)
    while high - low > 1e-7:  # finer than the 6 decimals the multiplier is rounded to: 24 to 30 probes, not 40
        middle = math.sqrt(low * high)
        value = flops(middle)
        best = min(best, (abs(value - budget) / budget, middle))
        if value > budget:
            high = middle
        else:
            low = middle
    if best[0] > TOLERANCE:
        raise ConfigError(f"no width lands within ±2% of flops_budget {budget:,} (closest {best[0]:.1%}); adjust it")
    fitted = dataclasses.replace(spec, width_multiplier=round(best[1], 6), flops_budget=0)
    narrowest = narrowest_layer(fitted, sizes)
    if narrowest is not None and narrowest < MIN_WIDTH:
        raise ConfigError(
            f"flops_budget {budget:,} leaves an MLP layer {narrowest} wide (width multiplier "
            f"{fitted.width_multiplier:.3f}; a layer needs at least {MIN_WIDTH} units to learn reliably): raise the "
            "budget, or switch off what uses it up (numeric_embedding, a wider interaction)"
        )
    return fitted


def narrowest_layer(spec: ModelSpec, sizes) -> int | None:
    """The narrowest hidden layer the width multiplier made of a layer declared at least MIN_WIDTH wide (a
    layer declared narrower is the package's own choice), or None when there is none."""
    declared = [*(spec.dense_arch if sizes.num_dense else ()), *spec.over_arch, *spec.tower_arch]
    widths = [w for n, w in zip(declared, scaled(declared, spec.width_multiplier)) if n >= MIN_WIDTH]
    return min(widths) if widths else None
