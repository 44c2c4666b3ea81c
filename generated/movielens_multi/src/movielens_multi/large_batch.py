"""How hyper-parameters follow the batch size (template-owned).

The lrs, the embedding L2 and the warmup were tuned at ``reference_batch_size``; at a batch ``s`` times larger
the training option ``lr_scaling`` picks a rule:

==========  ==============  ================  ===============  ======================================
rule        dense lr        embedding lr      embedding L2     warmup
==========  ==============  ================  ===============  ======================================
none        ×1              ×1                ×1               ``warmup_steps`` steps
linear      ×s              ×s                ×1               ``warmup_steps`` steps
sqrt        ×√s             ×√s               ×1               ``warmup_steps`` steps
cowclip     ×√s             ×1                ×s               the same examples: ``warmup_steps`` / s
auto        ``cowclip`` when s > 1, else ``none`` (the default: nothing moves at or below the tuned batch)
==========  ==============  ================  ===============  ======================================

At ``critical_batch_size`` the lrs peak. Above it they fall again (training option ``lr_above_critical``,
default ``fall``): each lr is its value at the critical batch times ``2 / (√(c/b) + √(b/c))``, 1 at the critical
batch ``c`` and about ``2√(c/b)`` far above it, while the embedding L2 and the warmup still follow the real ``s``.
``flat`` keeps the lrs at their critical-batch value instead (templates up to v0.7.4). Adam's best lr grows
with the batch only up to a critical batch size, after which the gradient noise no longer limits the step
(McCandlish et al. 2018, "An Empirical Model of Large-Batch Training"), and then falls again: the "surge" of
Li et al. 2024 ("Surge Phenomenon in Optimal Learning Rate and Batch Size Scaling"), whose curve
``2 ε_max / (√(B_noise/B) + √(B/B_noise))`` is the factor above. On the Criteo-shaped set of issue #11 (dcn_v2,
4M rows, 2 epochs, 2 seeds, ``benchmarks/results/large_batch_criteo_fall.md``), valid NE against batch 4,096 is
+0.05% at 65,536 with the fall (dense lr 0.0027) against +0.42% flat (0.0057), and +0.90% at 131,072 (0.0019)
against +1.30%; with the uncapped √s lr (0.023) 65,536 was +1.9%.

What is left at 131,072 there is the number of steps, not the recipe. The second epoch overfits at every batch
on that set, so a run learns from its first epoch: 31 steps at 131,072 on 4M rows. With the same recipe and more
rows, so more steps an epoch, 131,072 against 4,096 on the same rows (2 seeds each) was +0.22% with 8M rows (62
steps) and +0.01% and +0.06% with 16M rows (122 steps; SMT's ``benchmarks/results/large_batch_criteo_16m.md``).
A large batch keeps NE where an epoch still has on the order of a hundred steps; with fewer, a smaller batch is
the better choice.

``cowclip`` is the scaling rule of CowClip (Zheng et al., AAAI 2023), meant to go with its adaptive
column-wise clipping of embedding gradients (training option ``embedding_clip``, see ``optim.cow_clip``): an
id's gradient grows with how often it occurs in the batch, not with the batch, so the embedding lr stays;
an id occurs ``s`` times as often per step, so its L2 per step grows ``s`` times.

The embedding optimizer keeps Adam's β and ε (1e-8) at every batch. Templates v0.7.35 and v0.7.36 scaled them
above the tuned batch (ε ×1/s, 1 − β ×s). That helped at 4,096, 16,384 and 131,072, but cost +0.23% valid NE
at 65,536 on the Criteo-shaped set, where this recipe had been within 0.1% of 4,096. v0.7.37 took it back
(SMT's ``benchmarks/results/large_batch_criteo_eps.md``). The effect was β's: the training options
``embedding_beta1`` and ``embedding_beta2`` (v0.7.39) set at the values that rule gave, with ε left at 1e-8, give
valid NE −0.37% and −0.27% at 131,072 (31 steps an epoch) but +0.23% and +0.28% at 65,536 (62 steps), against
the default, 2 seeds each (``large_batch_criteo_beta.md``). Which way it goes follows the steps of an epoch, which
no rule on the batch size alone can know.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import TrainConfig


@dataclass(frozen=True)
class BatchScaling:
    """Multipliers of the tuned values at ``config.batch_size``, and the warmup in steps."""

    dense_lr: float
    embedding_lr: float
    embedding_decay: float
    warmup_steps: int


def batch_scaling(config: TrainConfig) -> BatchScaling:
    """The multipliers of ``config.lr_scaling`` at ``config.batch_size`` (see the table above).

    >>> from .config import config_from_dict
    >>> batch_scaling(config_from_dict({"batch_size": 2048, "lr_scaling": "cowclip", "warmup_steps": 100}))
    BatchScaling(dense_lr=2.0, embedding_lr=1.0, embedding_decay=4.0, warmup_steps=25)
    >>> flat = {"batch_size": 65536, "critical_batch_size": 8192, "lr_above_critical": "flat", "warmup_steps": 100}
    >>> batch_scaling(config_from_dict(flat))
    BatchScaling(dense_lr=4.0, embedding_lr=1.0, embedding_decay=128.0, warmup_steps=1)
    >>> round(batch_scaling(config_from_dict({**flat, "lr_above_critical": "fall"})).dense_lr, 4)  # 4 x 0.629
    2.5142
    """
    s = config.batch_size / config.reference_batch_size
    lr_s, fall = s, 1.0  # the lrs' s (that of the critical batch above it) and the factor they fall by there
    if config.critical_batch_size:
        critical_s = max(1.0, config.critical_batch_size / config.reference_batch_size)  # never below the tuned 1
        if s > critical_s:
            lr_s = critical_s
            if config.lr_above_critical == "fall":
                fall = surge_factor(s / critical_s)
    rule = config.lr_scaling
    if rule == "auto":
        rule = "cowclip" if s > 1 else "none"
    if rule == "linear":
        return BatchScaling(lr_s * fall, lr_s * fall, 1.0, config.warmup_steps)
    if rule == "sqrt":
        return BatchScaling(math.sqrt(lr_s) * fall, math.sqrt(lr_s) * fall, 1.0, config.warmup_steps)
    if rule == "cowclip":
        warmup = math.ceil(config.warmup_steps / s) if config.warmup_steps else 0
        return BatchScaling(math.sqrt(lr_s) * fall, 1.0, s, warmup)
    return BatchScaling(1.0, 1.0, 1.0, config.warmup_steps)


def surge_factor(ratio: float) -> float:
    """The lr at ``ratio`` times the critical batch over the lr at the critical batch: ``2 / (1/√r + √r)``.

    1 at the critical batch, symmetric in log-batch, about ``2 / √ratio`` far above it.

    >>> [round(surge_factor(r), 3) for r in (1, 4, 16, 32)]
    [1.0, 0.8, 0.471, 0.343]
    """
    root = math.sqrt(ratio)
    return 2.0 / (1.0 / root + root)
