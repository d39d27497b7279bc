"""Data-parallel training on several processes started by ``torchrun`` (or ``accelerate launch``).

The launcher sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous address in every
process's environment; :func:`from_environment` joins the process group they describe (gloo on
the CPU, NCCL on CUDA, one GPU per process picked by ``LOCAL_RANK``). Without ``WORLD_SIZE`` (or
with 1) there is no group and training is the single-process loop, untouched.

What the trainer does with a :class:`ProcessGroup`:

- ``train.batch_size`` stays the *global* batch: every process draws the same seeded batches and
  takes its contiguous share of each (:meth:`ProcessGroup.share`); DDP averages the gradients.
- evaluation users are split by evaluation batch and the per-user counts gathered
  (:meth:`ProcessGroup.gather`), so metrics equal the single-process ones;
- only rank 0 holds the run lock and writes checkpoints, logs and metrics; the others wait for it
  at barriers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from darec.devices import pick_device
from darec.errors import ConfigError

__all__ = ["ProcessGroup", "from_environment", "is_main_process", "shutdown"]

T = TypeVar("T")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r}: expected an integer") from None


def is_main_process() -> bool:
    """Whether this process is rank 0 (or the only one), from the launcher's environment; the
    CLI prints results only there."""
    return _env_int("RANK", 0) == 0


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place among ``world`` data-parallel processes (``world >= 2``)."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    """This process's device: ``cuda:LOCAL_RANK`` on GPUs, else the CPU."""

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes the run folder."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index or 0])
        else:
            dist.barrier()

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``value`` over the processes (on every process)."""
        out = value.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def gather(self, value: T) -> list[T]:
        """Every process's ``value`` (picklable), in rank order, on every process."""
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every process (a decision taken from rank 0's clock)."""
        value = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def share(self, batch: np.ndarray) -> np.ndarray:
        """This process's contiguous part of a global batch of indices (the first ``len % world``
        processes get one more; a part may be empty when the batch is smaller than ``world``)."""
        return np.array_split(batch, self.world)[self.rank]


def from_environment(device_name: str) -> ProcessGroup | None:
    """Join the process group that the launcher's environment describes, or None for a single
    process. ``device_name`` is ``train.device``: ``cpu`` gives gloo; ``cuda`` or ``auto`` with
    GPUs gives NCCL with the GPU ``LOCAL_RANK``. A fixed ``cuda:N`` is refused (every process
    would share that GPU)."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return None
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    name = pick_device(device_name)
    if name.startswith("cuda:"):
        raise ConfigError(
            f"train.device={device_name!r} with {world} processes: each process takes the GPU "
            "of its LOCAL_RANK; set train.device to 'cuda' or 'auto'"
        )
    if name == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} "
                "CUDA device(s); start at most that many processes per node (--nproc_per_node)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.get_world_size() != world or dist.get_rank() != rank:
        raise ConfigError(
            f"the process group has rank {dist.get_rank()} of {dist.get_world_size()} but the "
            f"environment says RANK={rank} of WORLD_SIZE={world}"
        )
    return ProcessGroup(rank=rank, world=world, local_rank=local_rank, device=device)


def shutdown() -> None:
    """Leave the process group, if this process joined one (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
