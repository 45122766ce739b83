"""Learning-rate schedule: linear warm-up, then cosine or linear decay (nanoGPT's ``get_lr``).

:func:`lr_factor` gives the multiplier of the base learning rate at a step; :func:`lr_lambda` wraps it for
``torch.optim.lr_scheduler.LambdaLR`` and :func:`get_lr` returns the learning rate itself::

    sched = LambdaLR(opt, lr_lambda(warmup=100, max_steps=2000))

During warm-up the factor is ``(step + 1) / warmup`` (reaching 1 at step ``warmup - 1``); it then decays from 1
at step ``warmup`` to ``min_ratio`` at step ``max_steps`` and stays there ("constant" keeps 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

Decay = Literal["cosine", "linear", "constant"]
DECAYS = ("cosine", "linear", "constant")


def lr_factor(step: int, *, warmup: int, max_steps: int, decay: Decay = "cosine", min_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based)."""
    if decay not in DECAYS:
        raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}")
    if warmup < 0 or max_steps < 1:
        raise ValueError(f"need warmup >= 0 and max_steps >= 1, got {warmup}, {max_steps}")
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio}")
    if step < warmup:
        return (step + 1) / warmup
    if decay == "constant":
        return 1.0
    span = max(1, max_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    if decay == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        shape = 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * shape


def get_lr(
    step: int,
    base_lr: float,
    *,
    warmup: int,
    max_steps: int,
    decay: Decay = "cosine",
    min_ratio: float = 0.0,
) -> float:
    """Learning rate at ``step``: ``base_lr * lr_factor(step, ...)``."""
    return base_lr * lr_factor(step, warmup=warmup, max_steps=max_steps, decay=decay, min_ratio=min_ratio)


def lr_lambda(
    *, warmup: int, max_steps: int, decay: Decay = "cosine", min_ratio: float = 0.0
) -> Callable[[int], float]:
    """``step -> factor`` for ``LambdaLR`` (a plain closure, so the scheduler's state dict stays tensor-free)."""
    lr_factor(0, warmup=warmup, max_steps=max_steps, decay=decay, min_ratio=min_ratio)  # validate eagerly

    def fn(step: int) -> float:
        return lr_factor(step, warmup=warmup, max_steps=max_steps, decay=decay, min_ratio=min_ratio)

    return fn
