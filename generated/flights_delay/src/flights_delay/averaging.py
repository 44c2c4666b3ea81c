"""An exponential moving average of every weight, kept lazily per embedding row (template-owned).

Polyak averaging (Polyak & Juditsky 1992) in its exponential form, as model EMA in vision training: the
average of the weights along the last ~1/(1 − decay) steps generalises better than the last weights, and the
served model has the same shape and FLOPs (zero serving cost). The first steps average uniformly (the decay
of update n is min(decay, n / (n + 1))), so the average never leans on the initial weights.

Dense parameters are averaged at every step. An embedding table with sparse gradients only changes in the
rows of its batch, so its other rows keep their value p and their average moves geometrically toward it:
after k steps with decays d_1..d_k, ``avg = p + (d_1 ⋯ d_k) · (avg − p)``. Each such table keeps the
cumulative log-decay at which each row was last brought up to date; a row is caught up just before the
optimizer changes it, and every row when the average is applied (``applied``). A step therefore costs
O(rows in the batch) per table, not O(table), and the result equals the dense average to rounding.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch


class WeightAverage:
    """EMA of ``params``; ``before_step`` / ``after_step`` around every optimizer step, ``applied`` to use it.

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(2))
        >>> avg = WeightAverage([w], decay=0.5)
        >>> for value in (1.0, 2.0, 3.0):
        ...     avg.before_step()
        ...     with torch.no_grad():
        ...         _ = w.fill_(value)
        ...     avg.after_step()
        >>> with avg.applied():
        ...     w.tolist()  # 1 (first update copies), then (1 + 2) / 2 = 1.5, then 0.5 · 1.5 + 0.5 · 3
        [2.25, 2.25]
        >>> w.tolist()
        [3.0, 3.0]
    """

    def __init__(self, params, decay: float):
        """``params``: every parameter to average; ``decay`` in (0, 1): the weight of the old average per step."""
        if not 0.0 < decay < 1.0:
            raise ValueError(f"invalid averaging decay {decay}: it must lie strictly between 0 and 1")
        self.params = list(params)
        self.decay = decay
        self.updates = 0  # optimizer steps averaged so far
        self.log_decay = 0.0  # sum of log(decay) over those steps
        self.average = [p.detach().clone() for p in self.params]
        self.synced: dict[int, torch.Tensor] = {}  # index of a sparse-gradient param → (rows,) float64
        self._rows: dict[int, torch.Tensor] = {}  # rows the current step changes, per sparse param

    def before_step(self) -> None:
        """Bring the rows the coming optimizer step will change up to date (call after backward)."""
        self._rows = {}
        for i, param in enumerate(self.params):
            grad = param.grad
            if grad is None or not grad.is_sparse:
                continue
            rows = torch.unique(grad._indices()[0])  # (U,)
            self._rows[i] = rows
            if i not in self.synced:  # first sparse step of this table: every row is up to date now
                self.synced[i] = torch.full((param.shape[0],), self.log_decay, dtype=torch.float64, device=rows.device)
            else:
                self._catch_up(i, rows)

    @torch.no_grad()
    def after_step(self) -> None:
        """Fold the weights the optimizer step produced into the average."""
        if self.updates == 0:
            for avg, param in zip(self.average, self.params):
                avg.copy_(param)
            self.updates = 1
            return
        decay = min(self.decay, self.updates / (self.updates + 1))
        self.updates += 1
        self.log_decay += math.log(decay)
        dense = [i for i in range(len(self.params)) if i not in self.synced]
        if dense:
            torch._foreach_lerp_([self.average[i] for i in dense], [self.params[i].detach() for i in dense], 1 - decay)
        for i in self.synced:
            rows = self._rows.get(i)
            if rows is None or rows.numel() == 0:
                continue  # no row changed: the lazy factor covers this step
            param, avg = self.params[i].detach(), self.average[i]
            avg.index_copy_(0, rows, avg.index_select(0, rows).lerp_(param.index_select(0, rows), 1 - decay))
            self.synced[i].index_fill_(0, rows, self.log_decay)
        self._rows = {}

    @torch.no_grad()
    def _catch_up(self, i: int, rows: torch.Tensor | None = None) -> None:
        """Apply the steps a sparse param's ``rows`` (all when None) sat out: avg = p + Π decay · (avg − p)."""
        param, avg, synced = self.params[i].detach(), self.average[i], self.synced[i]
        if rows is None:
            rows = torch.arange(param.shape[0], device=param.device)
        factor = torch.exp(self.log_decay - synced.index_select(0, rows)).to(avg.dtype).unsqueeze(1)  # (U, 1)
        current = param.index_select(0, rows)  # (U, D)
        avg.index_copy_(0, rows, current + factor * (avg.index_select(0, rows) - current))
        synced.index_fill_(0, rows, self.log_decay)

    @contextmanager
    def applied(self):
        """The parameters hold the average inside the block and their own weights again after it."""
        for i in self.synced:
            self._catch_up(i)
        with torch.no_grad():
            own = [p.detach().clone() for p in self.params]
            for param, avg in zip(self.params, self.average):
                param.copy_(avg)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, weights in zip(self.params, own):
                    param.copy_(weights)

    def state_dict(self) -> dict:
        return {
            "updates": self.updates,
            "log_decay": self.log_decay,
            "average": list(self.average),
            "synced": dict(self.synced),
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["average"]) != len(self.params):
            raise ValueError(f"averaging state has {len(state['average'])} tensors for {len(self.params)} parameters")
        self.updates, self.log_decay = int(state["updates"]), float(state["log_decay"])
        device = [p.device for p in self.params]
        self.average = [a.to(d) for a, d in zip(state["average"], device)]
        self.synced = {int(i): s.to(device[int(i)]) for i, s in state["synced"].items()}


def step_decay(decay: float, batch_size: int, reference_batch_size: int) -> float:
    """The per-step decay at ``batch_size`` that keeps the averaging horizon in examples of ``decay`` per step at
    ``reference_batch_size``: ``decay ** (batch_size / reference_batch_size)``.

    >>> round(step_decay(0.99, 2048, 512), 6)
    0.960596
    """
    return decay ** (batch_size / reference_batch_size)
