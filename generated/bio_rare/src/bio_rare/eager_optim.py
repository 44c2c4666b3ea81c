"""Optimizers that do not import ``torch._dynamo`` in an eager process (template-owned).

``torch.optim.Optimizer`` wraps ``add_param_group``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` in
``torch._disable_dynamo``, and Adam's ``step`` in ``_use_grad_for_differentiable``: both import ``torch._dynamo``
on their first call, so that a ``torch.compile`` tracing into them stops there. That import takes about a second
(sympy, the symbolic-shapes machinery), once per process: a quarter of a small package's ``train`` (adult
income: 4.4 s), paid by every training that ``smt qualify`` runs. Training here never compiles an optimizer
(``compile=true`` compiles the dense stages only), so the wrappers guard nothing.

``EagerOptimizer`` puts the undecorated methods (each wrapper's ``__wrapped__``) on its subclasses; torch's
own classes are left as they are. The arithmetic is torch's own, so ``AdamW`` here steps bit for bit as
``torch.optim.AdamW`` and their state dicts are interchangeable. A torch whose methods carry no ``__wrapped__``
keeps the wrapped ones: the process then imports dynamo again, and nothing else changes.
"""

from __future__ import annotations

import torch
from torch.optim.optimizer import Optimizer


def _undecorated(method):
    """The function a torch decorator wrapped (``functools.wraps`` keeps it as ``__wrapped__``), else ``method``."""
    return getattr(method, "__wrapped__", method)


class EagerOptimizer:
    """Mix in before a ``torch.optim.Optimizer`` subclass: its bookkeeping methods, without dynamo's guards."""

    add_param_group = _undecorated(Optimizer.add_param_group)
    zero_grad = _undecorated(Optimizer.zero_grad)
    state_dict = _undecorated(Optimizer.state_dict)
    load_state_dict = _undecorated(Optimizer.load_state_dict)


def _eager_step(wrapped_step):
    """``step`` of a torch optimizer without ``_use_grad_for_differentiable``'s dynamo import: the same function
    under the same grad mode (``differentiable`` optimizers keep autograd on, the others step under no_grad)."""
    step = _undecorated(wrapped_step)

    def eager_step(self, closure=None):
        with torch.set_grad_enabled(bool(self.defaults.get("differentiable", False))):
            return step(self, closure)

    eager_step.__doc__ = wrapped_step.__doc__
    return eager_step


class AdamW(EagerOptimizer, torch.optim.AdamW):
    """``torch.optim.AdamW``, stepping bit for bit the same, that leaves ``torch._dynamo`` unimported.

    Example:
        >>> ours, theirs = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
        >>> opts = [AdamW([ours], lr=0.1), torch.optim.AdamW([theirs], lr=0.1)]
        >>> for w, opt in zip((ours, theirs), opts):
        ...     (w * w).sum().backward()
        ...     opt.step()
        >>> ours.tolist(), torch.equal(ours, theirs)
        ([0.8990000486373901, 0.8990000486373901, 0.8990000486373901], True)
    """

    step = _eager_step(torch.optim.AdamW.step)


class Adam(EagerOptimizer, torch.optim.Adam):
    """``torch.optim.Adam`` (dense embedding gradients under nccl), likewise without the dynamo import."""

    step = _eager_step(torch.optim.Adam.step)
