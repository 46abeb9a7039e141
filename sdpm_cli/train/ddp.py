"""Multi-process training (DDP) under torchrun: process group, rank, and the few collectives we use.

`torchrun --nproc_per_node=G -m sdpm_cli train ...` (or across nodes with --nnodes/--rdzv-*) sets
RANK, WORLD_SIZE and LOCAL_RANK; we then use NCCL on CUDA and gloo on CPU. Without those variables
everything here is a no-op for a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False  # we created the process group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the torchrun environment; (0, 1, 0) when absent."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    local = int(os.environ.get("LOCAL_RANK", str(rank)) or 0)
    return rank, world, local


def setup(device_type: str) -> DistInfo:
    """Join the process group torchrun describes (NCCL for CUDA, gloo for CPU)."""
    rank, world, local = env_world()
    if world <= 1:
        return DistInfo()
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, False)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timedelta(minutes=30))
    return DistInfo(rank, world, local, True)


def teardown(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a one-element list without DDP)."""
    if not info.active:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not info.active:
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_ranks_ok(info: DistInfo, ok: bool) -> bool:
    """False on every rank when any rank failed, so all of them stop together instead of hanging."""
    if not info.active:
        return ok
    return all(gather_objects(info, bool(ok)))
