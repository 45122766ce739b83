"""Plain DDP helpers driven by the torchrun environment (nanoGPT shape, no engine library).

``torchrun --nproc_per_node N -m voxar.bin.<recipe> ...`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``;
:func:`init_distributed` reads them, joins the process group (``nccl`` on CUDA, ``gloo`` on CPU) and returns a
:class:`DistInfo`. Without those variables everything degrades to a single process: :func:`barrier` and
:func:`all_reduce_mean` become no-ops and :func:`wrap_ddp` returns the model unchanged.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from voxar.errors import VoxarError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job: global ``rank``, ``local_rank`` on its node, ``world_size``."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes checkpoints (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> DistInfo:
        """Read ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` (as torchrun sets them); absent variables mean 1 process."""
        try:
            rank = int(os.environ.get("RANK", "0"))
            world = int(os.environ.get("WORLD_SIZE", "1"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as e:
            raise VoxarError(f"bad torchrun environment (RANK/LOCAL_RANK/WORLD_SIZE): {e}") from e
        if world < 1 or not 0 <= rank < world:
            raise VoxarError(f"bad torchrun environment: RANK={rank} WORLD_SIZE={world}")
        return cls(rank=rank, local_rank=local, world_size=world)


def init_distributed(backend: str | None = None, device: str | None = None) -> DistInfo:
    """Join the process group described by the environment; returns this process's :class:`DistInfo`.

    ``backend`` defaults to ``nccl`` when ``device`` is CUDA (``device=None`` means CUDA when available) and
    ``gloo`` otherwise. On CUDA the current device is set to ``cuda:LOCAL_RANK``. A single-process run (no
    ``WORLD_SIZE`` or ``WORLD_SIZE=1``) initialises nothing.
    """
    info = DistInfo.from_env()
    if not info.distributed or (dist.is_available() and dist.is_initialized()):
        return info
    if not dist.is_available():
        raise VoxarError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    use_cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    if backend is None:
        backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, init_method="env://", rank=info.rank, world_size=info.world_size)
    logger.info(
        "joined process group: rank %d/%d (local %d), backend %s", info.rank, info.world_size, info.local_rank, backend
    )
    return info


def is_initialized() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank (0 outside a process group)."""
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 outside a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and in single-process runs)."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if is_initialized():
        dist.barrier()


def cleanup(sync: bool = False) -> None:
    """Leave the process group, if any. ``sync=True`` first waits for every rank (a clean finish: no rank tears
    its connections down while a peer still uses them, which can abort the peer's gloo threads at exit); errors
    leave without waiting, since a failed peer would never arrive. After a clean finish rank 0, whose process
    serves the rendezvous store, leaves last (up to 30 s): peers count themselves out in the store first."""
    if not is_initialized():
        return
    if not sync:
        dist.destroy_process_group()
        return
    import time

    rank, world = dist.get_rank(), dist.get_world_size()
    store = dist.distributed_c10d._get_default_store()  # served by rank 0's process
    dist.barrier()
    dist.destroy_process_group()
    # Rank 0 leaves last: a peer still closing its gloo pairs when the store's server goes away can abort at exit.
    if world > 1:
        if rank:
            store.add("voxar/left", 1)
        else:
            deadline = time.monotonic() + 30.0
            while store.add("voxar/left", 0) < world - 1 and time.monotonic() < deadline:
                time.sleep(0.01)


def device_for(info: DistInfo, device: str | None = None) -> torch.device:
    """The device this rank trains on: ``cuda:LOCAL_RANK`` for CUDA, else the CPU.

    ``device`` is ``"cpu"``, ``"cuda"`` (or ``"cuda:N"`` in single-process runs) or None for CUDA when available.
    Asking for CUDA without a GPU is a :class:`VoxarError`.
    """
    name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise VoxarError(f"--device {name}: CUDA is not available on this machine")
        if info.distributed or name == "cuda":
            return torch.device("cuda", info.local_rank)
        return torch.device(name)
    if name != "cpu":
        raise VoxarError(f"--device {name}: expected cpu or cuda")
    return torch.device("cpu")


def wrap_ddp(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel when ``info.world_size > 1``, else ``model`` itself.

    DDP broadcasts rank 0's parameters at construction, so every rank starts from the same weights.
    """
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside a DDP (or any ``.module``) wrapper."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return model


def all_reduce_mean(value: float | torch.Tensor) -> float:
    """Mean of a scalar over all ranks, as a Python float (for logging; the value itself when not distributed)."""
    t = value.detach().float().reshape(()) if torch.is_tensor(value) else torch.tensor(float(value))
    if not is_initialized():
        return float(t)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = t.to(device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t) / dist.get_world_size()


def all_reduce_means(values: dict[str, float | torch.Tensor]) -> dict[str, float]:
    """:func:`all_reduce_mean` of every value of a dict in one collective (keys must match across ranks)."""
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if is_initialized() and keys:
        if dist.get_backend() == "nccl":
            t = t.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t = t.cpu() / dist.get_world_size()
    return {k: float(v) for k, v in zip(keys, t.tolist(), strict=True)}


def any_rank(flag: bool) -> bool:
    """True when ``flag`` is true on at least one rank (all ranks get the same answer)."""
    if not is_initialized():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        t = t.to(torch.device("cuda", torch.cuda.current_device()))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
