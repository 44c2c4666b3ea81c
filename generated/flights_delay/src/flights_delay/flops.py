"""Dense FLOPs of a forward pass, by torch's own formulas, without starting ``torch._dynamo`` (template-owned).

``torch.utils.flop_counter.FlopCounterMode`` counts through a dispatch mode whose ``__torch_dispatch__`` torch
wraps in ``torch._dynamo.disable``; its first use imports ``torch._dynamo`` (about 1 s) for a count that takes
milliseconds: ``capacity`` took 2.5 s, 1.4 s without it (AMD EPYC, adult_income; ``train`` imports it anyway,
as its optimizers are made). ``DenseFlopCounter`` counts the same ops with the same formulas (``flop_registry``,
decomposing what it lacks, as FlopCounterMode does) and opts out of that wrapping, which only matters for a
mode entered inside ``torch.compile``: nothing counts FLOPs there. A higher-order operator (``torch.cond``, flex
attention: none in the template, possible in an extension) is counted by FlopCounterMode (``forward_flops``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry


class DenseFlopCounter(TorchDispatchMode):
    """Total FLOPs of the ops run inside it, as ``FlopCounterMode(...).get_total_flops()`` would give."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # keep __torch_dispatch__ unwrapped: wrapping it imports torch._dynamo on first use

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet not in flop_registry and func is not torch.ops.prim.device.default:
            with self:  # a composite op: count what it decomposes into
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        formula = flop_registry.get(packet)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


def forward_flops(forward: Callable[[], object]) -> int:
    """FLOPs of ``forward()`` run under ``torch.no_grad``. A forward that fails under ``DenseFlopCounter`` runs
    again under FlopCounterMode, which counts it or raises its own error: a higher-order operator lands here (this
    mode does not take them), and so does ``torch.cond``, which compiles its branches with dynamo, into this
    unwrapped mode too."""
    try:
        with torch.no_grad(), DenseFlopCounter() as counter:
            forward()
        return counter.flops
    except Exception:  # rerun as torch counts it: a real error in ``forward`` raises from there
        with torch.no_grad(), FlopCounterMode(display=False) as full:
            forward()
        return full.get_total_flops()
