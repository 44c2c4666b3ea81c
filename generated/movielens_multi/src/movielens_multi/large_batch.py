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

Above ``critical_batch_size`` the lrs stop growing: their ``s`` is that of the critical batch, while the
embedding L2 and the warmup still follow the real ``s``. Adam's best lr grows with the batch only up to a
critical batch size, after which the gradient noise no longer limits the step (McCandlish et al. 2018, "An
Empirical Model of Large-Batch Training"); past it a √s dense lr overshoots. On the Criteo-shaped set of
issue #11 (dcn_v2, 4M rows, 2 epochs, 2 seeds, ``benchmarks/results/large_batch_criteo.md``), batch 65,536
with the lr of batch 4,096 ends +0.4% valid NE behind 4,096 (both seeds); with the √s lr (0.023) +1.9% (seed 0;
+1.4% on an H100, ``gpu_speed_v062.md``).

``cowclip`` is the scaling rule of CowClip (Zheng et al., AAAI 2023), meant to go with its adaptive
column-wise clipping of embedding gradients (training option ``embedding_clip``, see ``optim.cow_clip``): an
id's gradient grows with how often it occurs in the batch, not with the batch, so the embedding lr stays;
an id occurs ``s`` times as often per step, so its L2 per step grows ``s`` times.
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
    >>> batch_scaling(config_from_dict({"batch_size": 65536, "critical_batch_size": 8192, "warmup_steps": 100}))
    BatchScaling(dense_lr=4.0, embedding_lr=1.0, embedding_decay=128.0, warmup_steps=1)
    """
    s = config.batch_size / config.reference_batch_size
    lr_s = s  # the lrs' s: that of the critical batch above it, never below the tuned batch's 1
    if config.critical_batch_size:
        lr_s = min(s, max(1.0, config.critical_batch_size / config.reference_batch_size))
    rule = config.lr_scaling
    if rule == "auto":
        rule = "cowclip" if s > 1 else "none"
    if rule == "linear":
        return BatchScaling(lr_s, lr_s, 1.0, config.warmup_steps)
    if rule == "sqrt":
        return BatchScaling(math.sqrt(lr_s), math.sqrt(lr_s), 1.0, config.warmup_steps)
    if rule == "cowclip":
        warmup = math.ceil(config.warmup_steps / s) if config.warmup_steps else 0
        return BatchScaling(math.sqrt(lr_s), 1.0, s, warmup)
    return BatchScaling(1.0, 1.0, 1.0, config.warmup_steps)
