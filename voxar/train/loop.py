"""Small pieces every training loop uses: seeding, bf16 autocast, and graceful interruption.

:class:`GracefulInterrupt` turns the first SIGINT/SIGTERM into a flag the loop polls after each optimiser step; the
loop then saves a checkpoint and exits cleanly, so ``--resume`` loses nothing. A second signal interrupts at once.
In DDP runs :meth:`GracefulInterrupt.should_stop` is a collective, so every rank stops after the same step::

    with GracefulInterrupt() as interrupt:
        while step < max_steps:
            ...one step...
            if interrupt.should_stop():
                save(); break
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading
from types import FrameType

import numpy as np
import torch

from voxar.train.distributed import any_rank

logger = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """Seed Python's, numpy's and torch's (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``enabled``; a no-op context on the CPU (CPU training stays fp32)."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class GracefulInterrupt:
    """Context manager catching SIGINT/SIGTERM while it is active (main thread only; elsewhere it does nothing)."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.signals = signals
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        self.signum = signum
        name = signal.Signals(signum).name
        logger.warning("%s received: saving a checkpoint after this step (send it again to stop at once)", name)

    def should_stop(self) -> bool:
        """True once a signal arrived here or (DDP) on any rank; a collective in DDP runs."""
        return any_rank(self.requested)

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous = {}

    def __enter__(self) -> GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()
