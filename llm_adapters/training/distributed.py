"""Data-parallel training across processes, through torchrun and torch.distributed (nccl on GPUs, gloo on CPUs).

``torchrun --nproc_per_node=N run.py ...`` starts N copies of the job. Each optimizer step's micro-batches are dealt
out across the processes and their gradients averaged, so N processes take the same steps as one process with the
same global batch. Only rank 0 writes: results, predictions, adapter weights, checkpoints and W&B.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """This process's place among the job's processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, requested: torch.device) -> torch.device:
        """On CUDA, the GPU of this process's local rank."""
        return torch.device("cuda", self.local_rank) if requested.type == "cuda" else requested

    def mean(self, value: float) -> float:
        """The mean of a number over all processes."""
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=_collective_device())
        dist.all_reduce(tensor)
        return tensor.item() / self.world

    def total(self, value: int) -> int:
        """The sum of a count over all processes."""
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=_collective_device())
        dist.all_reduce(tensor)
        return int(tensor.item())

    def any(self, flag: bool) -> bool:
        """Whether any process raised the flag (so all of them act on it together)."""
        return self.total(int(flag)) > 0

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (it builds a shared cache), the others after it (they read that cache)."""
        if self.world > 1 and not self.main:
            dist.barrier()
        yield
        if self.world > 1 and self.main:
            dist.barrier()


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def setup() -> Distributed:
    """Join the process group torchrun describes in the environment (once); a single process needs none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return Distributed(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank)
