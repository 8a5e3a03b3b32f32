"""One process per device under torchrun: process group set-up and the few collectives the loop uses.

Without torchrun (no WORLD_SIZE in the environment, or WORLD_SIZE=1) everything here is a no-op,
so the single-process path and the distributed path are the same loop.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    restart_count: int = 0  # torchrun's restarts of this job so far (TORCHELASTIC_RESTART_COUNT)

    @property
    def restarted(self) -> bool:
        """True in a process that torchrun started again after a failure."""
        return self.restart_count > 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and shows the progress bar."""
        return self.rank == 0


SINGLE = Context()


def from_environment() -> Context:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if world_size <= 1:
        return Context(restart_count=restarts)
    return Context(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")), restarts)


def init(context: Context, device_name: str) -> torch.device:
    """Join the process group (NCCL on GPUs, gloo on CPUs) and return this rank's device."""
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if context.enabled and not dist.is_initialized():
        backend, timeout = ("nccl" if use_cuda else "gloo"), timedelta(minutes=10)
        if context.restarted and "MASTER_ADDR" in os.environ:
            # After a torchrun restart the rendezvous store still holds the first attempt's
            # addresses under the same keys, and a fast rank would dial a dead peer: each attempt
            # gets keys of its own.
            agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
            store = dist.TCPStore(
                os.environ["MASTER_ADDR"],
                int(os.environ["MASTER_PORT"]),
                context.world_size,
                is_master=context.rank == 0 and not agent_store,
                timeout=timeout,
            )
            store = dist.PrefixStore(f"productgan/attempt-{context.restart_count}", store)
            dist.init_process_group(
                backend, store=store, rank=context.rank, world_size=context.world_size, timeout=timeout
            )
        else:
            dist.init_process_group(backend, timeout=timeout)
    return device


def shutdown() -> None:
    """Leave the process group while the interpreter is fully alive. A finished Trainer sits in
    reference cycles, and its DistributedDataParallel wrappers keep the gloo group alive until a
    garbage collection; left to the interpreter's teardown, the group's threads could abort the
    process (SIGABRT, 'terminate called without an active exception') after a successful run."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def all_reduce_mean(tensor: torch.Tensor, context: Context) -> torch.Tensor:
    if context.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= context.world_size
    return tensor


def max_over_ranks(values: list[float], device: torch.device, context: Context) -> list[float]:
    """Each value's largest over the ranks, on every rank: stop decisions must be unanimous."""
    if not context.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


def broadcast_float(value: float, device: torch.device, context: Context) -> float:
    """Rank 0's value on every rank (wall-clock budgets are decided by one clock)."""
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def gather_to_main(tensors: list[torch.Tensor], context: Context) -> list[torch.Tensor] | None:
    """Concatenate each tensor over ranks (sizes may differ) on rank 0; None on other ranks."""
    if not context.enabled:
        return tensors
    gathered: list = [None] * context.world_size
    dist.all_gather_object(gathered, [t.cpu() for t in tensors])
    if not context.is_main:
        return None
    return [torch.cat([part[i] for part in gathered]) for i in range(len(tensors))]


def barrier(context: Context) -> None:
    if context.enabled:
        dist.barrier()
