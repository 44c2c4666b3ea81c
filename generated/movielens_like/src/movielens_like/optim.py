"""RowSparseAdam: SparseAdam's update rule, computed with dense row gathers (template-owned).

``torch.optim.SparseAdam`` coalesces each sparse gradient and updates its state through sparse tensors; on
CPU that costs more than the model's forward and backward together at large batches. This optimizer reads
the same uncoalesced gradient (ids, values), sums duplicate ids with one ``unique`` + ``index_add``, and
updates only the touched rows of the parameter and of both moments ("lazy" Adam, exactly SparseAdam's
semantics: rows that are absent from a batch keep their moments). Its state dict has SparseAdam's layout
(``step``, ``exp_avg``, ``exp_avg_sq``), so checkpoints written with either load into the other.

With ``clip_ratio`` > 0 each touched row's summed gradient is first clipped as CowClip does (``cow_clip``).
With ``decay_by_frequency`` the L2 on a row is scaled by its share of its own occurrences so far
(``frequency_decay_scale``): frequent rows are regularised less per step than rare ones, as in DIN's mini-batch
aware regularisation (Zhou et al., KDD 2018), with each row's count taken online.
"""

from __future__ import annotations

import math

import torch

from .eager_optim import EagerOptimizer


class RowSparseAdam(EagerOptimizer, torch.optim.Optimizer):
    """Lazy Adam for parameters with sparse (COO) gradients, such as ``nn.Embedding(sparse=True)``.

    Example:
        >>> table = torch.nn.Embedding(10, 4, sparse=True)
        >>> opt = RowSparseAdam(table.parameters(), lr=0.1)
        >>> before = table.weight.detach().clone()
        >>> table(torch.tensor([1, 1, 3])).sum().backward()
        >>> opt.step()
        >>> changed = (table.weight != before).any(dim=1).nonzero().flatten().tolist()
        >>> changed
        [1, 3]
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decay_masks: dict[torch.Tensor, torch.Tensor] | None = None,
        clip_ratio: float = 0.0,
        clip_min: float = 1e-5,
        decay_by_frequency: bool = False,
    ):
        """``decay_masks``: parameter → (rows,) 0/1 float mask of the rows weight decay may touch (others: all).

        ``clip_ratio`` / ``clip_min``: CowClip's r and ζ (0 = no clipping). The per-example thresholds need the
        batch's rows: set a group's ``batch_rows`` before each step (default 1: thresholds on the gradient).
        ``decay_by_frequency``: scale each row's L2 by ``frequency_decay_scale`` (adds an ``occurrences`` state).
        """
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid RowSparseAdam settings lr={lr}, betas={betas}, eps={eps}, wd={weight_decay}")
        if clip_ratio < 0 or clip_min < 0:
            raise ValueError(f"invalid RowSparseAdam clipping clip_ratio={clip_ratio}, clip_min={clip_min}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        defaults.update(clip_ratio=clip_ratio, clip_min=clip_min, batch_rows=1)
        super().__init__(params, defaults)
        self.decay_masks = dict(decay_masks or {})
        self.decay_by_frequency = decay_by_frequency

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if not param.grad.is_sparse:
                    raise RuntimeError("RowSparseAdam needs sparse gradients; use torch.optim.Adam for dense ones")
                self._update(param, group, beta1, beta2)
        return loss

    def _update(self, param: torch.Tensor, group: dict, beta1: float, beta2: float) -> None:
        lr, eps, decay = group["lr"], group["eps"], group.get("weight_decay", 0.0)
        state = self.state[param]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        state["step"] += 1
        step = float(state["step"])
        grad = param.grad
        ids, values = grad._indices()[0], grad._values()  # (N,), (N, D) with duplicate ids
        rows, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)  # (U,), (N,), (U,)
        g = values.new_zeros((rows.numel(), *values.shape[1:])).index_add_(0, inverse, values)  # (U, D)
        ratio = group.get("clip_ratio", 0.0)
        weights = param.index_select(0, rows) if (decay or ratio) else None  # (U, D)
        if ratio:
            per_example = counts.to(g.dtype) / group.get("batch_rows", 1)  # (U,)
            g = cow_clip(g, weights, per_example, ratio, group.get("clip_min", 0.0))
        if decay:  # L2 on the rows of this batch (lazy, like the moments): g += decay · w (· mask) (· scale)
            mask = self.decay_masks.get(param)
            if mask is not None:
                weights = weights * mask.index_select(0, rows).unsqueeze(1)
            if self.decay_by_frequency:
                if "occurrences" not in state:  # also when resuming from a checkpoint written without it
                    state["occurrences"] = torch.zeros(param.shape[0], dtype=g.dtype, device=g.device)
                batch_counts = counts.to(g.dtype)  # (U,)
                seen = state["occurrences"].index_select(0, rows).add_(batch_counts)  # (U,)
                state["occurrences"].index_copy_(0, rows, seen)
                weights = weights * frequency_decay_scale(batch_counts, seen).unsqueeze(1)
            g.add_(weights, alpha=decay)
        m = state["exp_avg"].index_select(0, rows).lerp_(g, 1 - beta1)  # (U, D)
        v = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(g, g, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
        step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
        update = m.div_(v.sqrt_().add_(eps)).mul_(-step_size)
        param.index_copy_(0, rows, param.index_select(0, rows).add_(update))


def frequency_decay_scale(counts: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """Per-row multiplier of the embedding L2: this batch's occurrences over all occurrences so far, (U,) → (U,).

    A row met once in all of training is decayed as without scaling (1.0); a row in every batch of an epoch
    gets a share that falls as 1/t, so over a run its decay sums to about log(its count) instead of its number
    of batches. DIN (Zhou et al., KDD 2018) divides each row's L2 by its count n_j in the training set; a
    running count needs no pass over the data and also holds for online training.

    >>> frequency_decay_scale(torch.tensor([1.0, 2.0, 1.0]), torch.tensor([1.0, 8.0, 100.0]))
    tensor([1.0000, 0.2500, 0.0100])
    """
    return counts / seen.clamp(min=1.0)


def cow_clip(grad: torch.Tensor, weights: torch.Tensor, occurrences: torch.Tensor, ratio: float, floor: float):
    """Adaptive column-wise clipping of embedding gradients (CowClip, Zheng et al., AAAI 2023).

    grad: (U, D) summed gradient of each id in the batch; weights: (U, D) the ids' current rows;
    occurrences: (U,) each id's occurrences (divided by the batch rows when the loss is a batch mean).
    Each row's gradient is scaled down to norm ``occurrences · max(ratio · |w|, floor)`` when above it: an id
    seen in many examples may move more, and no id's step outgrows its own weight. Returns (U, D).

    >>> g = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    >>> cow_clip(g, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([1.0, 1.0]), 1.0, 0.0)
    tensor([[0.6000, 0.8000],
            [0.3000, 0.4000]])
    """
    limit = occurrences * torch.clamp(ratio * weights.norm(dim=1), min=floor)  # (U,)
    scale = torch.clamp(limit / grad.norm(dim=1).clamp(min=1e-30), max=1.0)  # (U,)
    return grad * scale.unsqueeze(1)
