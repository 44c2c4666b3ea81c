"""Data-parallel training through ``torchrun`` and ``torch.distributed`` (template-owned).

``torchrun --nproc_per_node=N -m <package> train ...`` starts N processes with RANK/WORLD_SIZE set; each
takes a contiguous shard of every global batch (the DistributedSampler idea applied to tensor batches),
``DistributedDataParallel`` averages the gradients (gloo on CPU, nccl on GPU), validation predictions are
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


def close_world(world: World) -> None:
    if world.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.enabled:
        dist.barrier()


def shard(index: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's contiguous part of a global batch of row ids (B,) → (≈B / world,)."""
    return index.tensor_split(world.size)[world.rank] if world.enabled else index


def gather(values: torch.Tensor, world: World) -> torch.Tensor:
    """Concatenate every rank's rows (n_r, ...) in rank order; shards may differ in length by one or more."""
    if not world.enabled:
        return values
    count = torch.tensor([values.shape[0]], dtype=torch.long, device=values.device)
    counts = [torch.zeros_like(count) for _ in range(world.size)]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = values.new_zeros((longest, *values.shape[1:]))
    padded[: values.shape[0]] = values
    parts = [torch.zeros_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(c.item())] for part, c in zip(parts, counts)])


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank when ``flag`` is true on at least one (keeps time-based stops in step)."""
    if not world.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
