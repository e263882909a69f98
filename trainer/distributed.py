"""Data-parallel training over several processes: `torchrun --nproc_per_node=N -m trainer run ...`.

torchrun starts N copies of the trainer and tells each its rank in the environment (RANK, WORLD_SIZE,
LOCAL_RANK, and the rendezvous address). Each copy opens its own read-only connection and reads only its
shard of the users (user_idx % world_size == rank); DistributedDataParallel averages the gradients, so
every copy holds the same weights after each step. Rank 0 alone logs, checkpoints, scores the test part
and writes the results. Started without torchrun (WORLD_SIZE unset or 1) every function here is a no-op
and the trainer runs as one process.

Backends: NCCL between GPUs (each rank on GPU LOCAL_RANK), gloo on CPUs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        """(rank, world size) to filter users by, or None for every user."""
        return (self.rank, self.world_size) if self.active else None


def setup(device: torch.device) -> tuple[Context, torch.device]:
    """Join the process group torchrun set up, if any; the context and this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Context(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), local_rank), device


def teardown(context: Context) -> None:
    if context.active and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, context: Context, device: torch.device) -> torch.nn.Module:
    """The model as DistributedDataParallel (gradients averaged over ranks in backward), or as it is."""
    if not context.active:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def joined(model: Any, context: Context, batches: Iterator[T]) -> Iterator[T]:
    """The batches, under DDP's join: shards differ in size, so ranks run out of batches at different
    steps, and join lets the ones that finished shadow the others' gradient exchanges instead of hanging."""
    if not context.active:
        yield from batches
        return
    with model.join():
        yield from batches


def all_sum(context: Context, device: torch.device, *values: float) -> list[float]:
    """Each value summed over every rank (a metric's numerator and denominator)."""
    if not context.active:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast(context: Context, value: Any) -> Any:
    """Rank 0's value on every rank (e.g. the run id, drawn at random)."""
    if not context.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(context: Context) -> None:
    if context.active:
        dist.barrier()
