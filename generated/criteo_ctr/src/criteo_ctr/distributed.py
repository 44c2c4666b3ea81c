"""Data-parallel training through ``torchrun`` and ``torch.distributed`` (template-owned).

``torchrun --nproc_per_node=N -m <package> train ...`` starts N processes with RANK/WORLD_SIZE set; each
takes a contiguous shard of every global batch (the DistributedSampler idea applied to tensor batches),
``DistributedDataParallel`` averages the dense gradients (gloo on CPU, nccl on GPU) and
``average_sparse_gradients`` the row-sparse ones of the embedding tables, validation predictions are
gathered from all ranks so every rank computes the same metrics, and only rank 0 logs and writes files.
Without torchrun (WORLD_SIZE unset or 1) everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = World()


def init_world(device_type: str) -> World:
    """Join the process group that torchrun describes in the environment (gloo on CPU, nccl on CUDA)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return World(rank, size, local_rank, backend)


def close_world(world: World, completed: bool) -> None:
    """Leave the process group. After a completed run every rank first waits at a barrier, so no rank leaves
    while a peer still has a collective in flight, and the job ends once rank 0 has written everything. After a
    failure there is no barrier: the peers may never reach it.

    The gloo worker threads outlive this call (``DistributedDataParallel``'s reducer keeps the process group
    alive to the end of the process); ``python -m <package>`` therefore ends a rank without finalizing Python
    (see ``cli.exit_process``).
    """
    if world.enabled and dist.is_initialized():
        if completed:
            dist.barrier()
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.enabled:
        dist.barrier()


def data_parallel(model: torch.nn.Module, world: World, sparse_params: list[torch.nn.Parameter]) -> torch.nn.Module:
    """``model`` under ``DistributedDataParallel`` for its dense parameters; ``sparse_params`` (row-sparse
    gradients) are left to ``average_sparse_gradients``.

    DDP's own sparse path runs gloo's sparse all-reduce (a coalesce) on a worker thread while backward still
    runs, and it corrupted the heap in about one two-process CPU run in 60 (malloc's "unaligned tcache chunk"
    inside ``AsyncSparseAllreduceWork``, from a core dump). Those parameters start equal on every rank, as DDP
    makes its own: rank 0 broadcasts them.
    """
    for param in sparse_params:
        dist.broadcast(param.data, src=0)
    kept_out = {id(param) for param in sparse_params}
    DDP = torch.nn.parallel.DistributedDataParallel
    DDP._set_params_and_buffers_to_ignore_for_model(
        model, [n for n, p in model.named_parameters() if id(p) in kept_out]
    )
    device = next(model.parameters()).device
    return DDP(model, device_ids=[world.local_rank] if device.type == "cuda" else None)


def average_sparse_gradients(params: list[torch.nn.Parameter], world: World) -> None:
    """Make each row-sparse (COO) gradient the mean over ranks, as DDP makes the dense ones: every rank's rows,
    values divided by the world size, left uncoalesced (the embedding optimizer sums duplicate rows).

    Dense collectives on the calling thread, after backward: per rank the indices (n_r, S) and values (n_r, D).
    A rank whose shard did not touch a table sends no rows; a table no rank touched keeps no gradient.
    """
    if not world.enabled:
        return
    for param in params:
        grad = param.grad
        if grad is None:
            indices = torch.zeros((0, 1), dtype=torch.long, device=param.device)
            values = param.new_zeros((0, *param.shape[1:]))
        else:
            indices, values = grad._indices().t().contiguous(), grad._values().contiguous()
        indices, values = gather_rows([indices, values], world)
        if len(indices) == 0:
            param.grad = None
            continue
        rows = indices.t()  # every rank's ids are rows of this table: no invariant check needed
        param.grad = torch.sparse_coo_tensor(rows, values / world.size, param.shape, check_invariants=False)


def shard(index: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's contiguous part of a global batch of row ids (B,) → (≈B / world,)."""
    return index.tensor_split(world.size)[world.rank] if world.enabled else index


def gather(values: torch.Tensor, world: World) -> torch.Tensor:
    """Concatenate every rank's rows (n_r, ...) in rank order; shards may differ in length by one or more."""
    return gather_rows([values], world)[0]


def gather_rows(tensors: list[torch.Tensor], world: World) -> list[torch.Tensor]:
    """``gather`` of tensors with the same rows on each rank (n_r, ...): one exchange of the row counts for all."""
    if not world.enabled:
        return tensors
    first = tensors[0]
    count = torch.tensor([first.shape[0]], dtype=torch.long, device=first.device)
    counts = [torch.zeros_like(count) for _ in range(world.size)]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    if longest == 0:
        return tensors
    gathered = []
    for values in tensors:
        padded = values.new_zeros((longest, *values.shape[1:]))
        padded[: values.shape[0]] = values
        parts = [torch.zeros_like(padded) for _ in range(world.size)]
        dist.all_gather(parts, padded)
        gathered.append(torch.cat([part[: int(c.item())] for part, c in zip(parts, counts)]))
    return gathered


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank when ``flag`` is true on at least one (keeps time-based stops in step)."""
    if not world.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
