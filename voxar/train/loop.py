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

import argparse
import contextlib
import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Protocol

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


class Steppable(Protocol):
    """What :func:`run_steps` needs from a trainer (``voxar.bin.train_vocoder``, ``voxar.bin.train_tts``)."""

    step: int
    saved_step: int
    log: Any  # voxar.train.logger.TrainLogger

    def train_step(self, batch: Any) -> dict[str, float]: ...

    def validate_and_export(self) -> None: ...

    def save(self) -> None: ...


def run_steps(
    trainer: Steppable,
    batches: Iterator[Any],
    *,
    max_steps: int,
    log_every: int,
    valid_every: int | None,
    save_every: int | None,
    is_main: bool,
    done_message: str,
) -> int:
    """The step loop shared by every training script: train, log window means, validate, checkpoint, and stop
    cleanly on SIGINT/SIGTERM (checkpoint first). Returns the exit status: 0, or 128 + signal when interrupted.

    Call inside ``with trainer.log:``; ``trainer.train_step`` returns scalar metrics including ``loss``.
    """
    from voxar.train import distributed as D

    status = 0
    window: dict[str, list[float]] = {}
    t0 = time.monotonic()
    with GracefulInterrupt() as interrupt:
        while trainer.step < max_steps:
            metrics = trainer.train_step(next(batches))
            trainer.step += 1
            for k, v in metrics.items():
                window.setdefault(k, []).append(v)
            trainer.log.progress(1, loss=metrics["loss"])
            if trainer.step % log_every == 0 or trainer.step == max_steps:
                means = D.all_reduce_means({k: sum(v) / len(v) for k, v in window.items()})
                means["sec_per_step"] = (time.monotonic() - t0) / len(window["loss"])
                trainer.log.log(trainer.step, means)
                window, t0 = {}, time.monotonic()
            if valid_every and trainer.step % valid_every == 0 and trainer.step < max_steps:
                trainer.validate_and_export()
            if save_every and trainer.step % save_every == 0:
                trainer.save()
            if interrupt.should_stop():
                status = 128 + int(interrupt.signum or signal.SIGTERM)
                trainer.log.write(f"interrupted at step {trainer.step}; continue with --resume")
                break
        if trainer.saved_step != trainer.step:
            trainer.save()
        if status == 0:
            trainer.validate_and_export()
            if is_main:
                trainer.log.write(f"done: {trainer.step} steps; {done_message}")
    return status


def train_main(
    prog: str,
    args: Any,
    config_cls: type,
    trainer_cls: Callable[[Any, Any], Any],
    flag_keys: tuple[str, ...],
) -> int:
    """The body of every ``voxar.bin.train_*`` entry point: logging, ``--threads``, the YAML config plus
    ``--override`` items plus the dedicated flags named in ``flag_keys`` (which win), then ``trainer_cls(cfg,
    args).run()``. Bad input is one line ``<prog>: error: ...`` and exit status 1; the process group is always
    torn down."""
    from voxar.config import load_config
    from voxar.errors import VoxarError
    from voxar.log import setup_logging
    from voxar.train import distributed as D

    setup_logging()
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    overrides = list(args.override or [])
    overrides += [f"{key}={getattr(args, key)}" for key in flag_keys if getattr(args, key) is not None]
    ok = False
    try:
        cfg = load_config(config_cls, args.config, overrides)
        status = trainer_cls(cfg, args).run()
        ok = status == 0
        return status
    except VoxarError as e:
        sys.stderr.write(f"{prog}: error: {e}\n")
        return 1
    finally:
        D.cleanup(sync=ok)


def epoch_batches(sampler: Any, step: int) -> Iterator[tuple[int, list[int]]]:
    """Endless ``(step, batch indices)`` from ``step`` on, epoch after epoch of a ``set_epoch`` sampler.

    Epoch and position follow from the step by walking the epochs from 0: length-bucketed epochs hold slightly
    different numbers of batches, so ``divmod(step, len(sampler))`` would put a resumed run in the wrong place and can
    stall on an empty slice. With a deterministic sampler this makes resuming exact.
    """
    epoch, offset = 0, step
    while True:
        sampler.set_epoch(epoch)
        batches = list(sampler)
        for indices in batches[offset:]:
            yield step, indices
            step += 1
        epoch, offset = epoch + 1, max(0, offset - len(batches))


def add_dump_train_args(p: argparse.ArgumentParser, config_cls: str) -> None:
    """The flags shared by the dump-based training entry points (``train_tts``, ``train_content``, ``train_vc``)."""
    p.add_argument("--config", required=True, help=f"YAML mapping onto {config_cls}")
    p.add_argument("--dump", required=True, help="training feature dump (voxar data dump ... --preset 16k)")
    p.add_argument("--valid-dump", default=None, help="validation feature dump (default: a few training utts)")
    p.add_argument("--exp", required=True, help="experiment directory (checkpoints, logs, model/)")
    p.add_argument("--resume", action="store_true", help="continue from exp/last.pt when it exists")
    p.add_argument(
        "--init-from", default=None, metavar="DIR|CKPT",
        help="warm start a new run from a model directory or a checkpoint's weights (fresh optimiser and step)",
    )  # fmt: skip
    p.add_argument("--max-steps", type=int, default=None, help="override max_steps")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--seed", type=int, default=None, help="override seed")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE", help="dotted config overrides")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per process (torch.set_num_threads)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
