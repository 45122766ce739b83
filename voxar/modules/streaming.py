"""One streaming API for every stateful module in voxar (explicit state, in the style of moshi).

A :class:`StreamingModule` is an ``nn.Module`` whose ``forward`` processes a whole sequence and which can also be
run chunk by chunk with an explicit state object:

.. code-block:: python

    state = module.init_state(batch_size)
    for chunk in chunks:                       # (B, ..., n) with any n >= 0 along the last (time) axis
        y, state = module.step(chunk, state)   # emits only output that is final
        play(y)
    tail = module.flush(state)                 # what was held back, at the end of the stream (or None)

The state is a dataclass of tensors (possibly nested dataclasses / lists of them); nothing is hidden in the module,
so one module can serve many streams, ``reset`` is just a new :meth:`StreamingModule.init_state`, and snapshots are
:func:`clone_state` copies. :func:`streaming` (or :meth:`StreamingModule.streaming`) holds the state for you.

**Contract.** Time is the last axis of inputs and outputs. For every split of an input ``x`` into chunks (any sizes,
including 1 and 0), ``cat(step outputs + [flush()])`` equals ``module(x)`` up to float rounding. Two attributes say
how late the output is:

- ``lookahead``: input frames the module must see beyond an output frame before that frame is final (0 for causal
  modules). After ``step`` has consumed ``n`` input frames, the outputs for input frames ``< n - lookahead`` have
  been emitted.
- ``hold_back``: extra *output* units (e.g. samples of an overlap-add) that are held back on top of that, because
  later input still changes them.

``step`` may update the state in place and returns it; keep a :func:`clone_state` copy to roll back.
``flush`` emits the held-back output as the full pass computes it at the end of a sequence (right zero padding, edge
normalisation); after ``flush`` the stream is finished, and a new one starts with a new ``init_state``.

Legend: B batch, C channels, T time steps (frames or samples).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn


class StreamingModule(nn.Module):
    """Base class of modules that also run chunk by chunk with an explicit state (see the module docstring).

    Subclasses implement :meth:`init_state` and :meth:`step`, and :meth:`flush` when they have ``lookahead`` or
    ``hold_back``. ``lookahead`` (input frames) and ``hold_back`` (output units) are plain attributes.
    """

    lookahead: int = 0
    hold_back: int = 0

    def init_state(self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Any:
        """A fresh state for ``batch_size`` streams (defaults: the module's parameter device and float dtype)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement init_state")

    def step(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """Process one chunk ``x`` (time on the last axis, any length); returns ``(final output, new state)``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement step")

    def flush(self, state: Any) -> torch.Tensor | None:
        """The output still held back at the end of the stream (None when there is none)."""
        return None

    def reset(self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Any:
        """Reset = a new state (the state is explicit, nothing else to clear)."""
        return self.init_state(batch_size, device, dtype)

    def streaming(
        self, batch_size: int = 1, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> contextlib.AbstractContextManager[Stream]:
        """``with module.streaming(B) as s: y = s.step(x)`` -- same as :func:`streaming` (module, B)."""
        return streaming(self, batch_size, device, dtype)

    def _default_device_dtype(
        self, device: torch.device | None, dtype: torch.dtype | None
    ) -> tuple[torch.device, torch.dtype]:
        """The module's parameter/buffer device and float dtype unless given (CPU float32 without any)."""
        ref = next(itertools.chain(self.parameters(), self.buffers()), None)
        if device is None:
            device = ref.device if ref is not None else torch.device("cpu")
        if dtype is None:
            dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
        return torch.device(device), dtype


def clone_state(state: Any) -> Any:
    """A deep copy of a state (dataclasses, lists, tuples, dicts and tensors), e.g. for snapshot and rollback."""
    if isinstance(state, torch.Tensor):
        return state.clone()
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        return dataclasses.replace(
            state, **{f.name: clone_state(getattr(state, f.name)) for f in dataclasses.fields(state) if f.init}
        )
    if isinstance(state, list):
        return [clone_state(s) for s in state]
    if isinstance(state, tuple):
        return tuple(clone_state(s) for s in state)
    if isinstance(state, dict):
        return {k: clone_state(v) for k, v in state.items()}
    return state


class Stream:
    """A module plus the state of one (batched) stream; made by :func:`streaming`.

    ``step(x)`` returns the final output for chunk ``x``; ``flush()`` ends the stream and returns the held-back
    output (None when there is none); ``reset()`` starts a new stream; ``snapshot()`` / ``restore(s)`` roll back.
    """

    def __init__(
        self, module: StreamingModule, batch_size: int, device: torch.device | None, dtype: torch.dtype | None
    ) -> None:
        self.module = module
        self.batch_size = batch_size
        self._device = device
        self._dtype = dtype
        self.state: Any = None
        self.finished = False
        self.reset()

    def reset(self) -> None:
        """Drop the state and start a new stream."""
        self.state = self.module.init_state(self.batch_size, self._device, self._dtype)
        self.finished = False

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Feed one chunk (time on the last axis) and return the output that became final."""
        if self.finished:
            raise RuntimeError("stream already flushed: call reset() to start a new one")
        y, self.state = self.module.step(x, self.state)
        return y

    def flush(self) -> torch.Tensor | None:
        """End the stream: the output still held back (None when there is none)."""
        if self.finished:
            raise RuntimeError("stream already flushed: call reset() to start a new one")
        self.finished = True
        return self.module.flush(self.state)

    def snapshot(self) -> Any:
        """A copy of the current state."""
        return clone_state(self.state)

    def restore(self, state: Any) -> None:
        """Continue from a state returned by :meth:`snapshot` (the snapshot itself stays untouched)."""
        self.state = clone_state(state)
        self.finished = False


@contextlib.contextmanager
def streaming(
    module: StreamingModule,
    batch_size: int = 1,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Iterator[Stream]:
    """Context manager holding the state of one stream: ``with streaming(m, B) as s: y = s.step(x)``."""
    if not isinstance(module, StreamingModule):
        raise TypeError(f"{type(module).__name__} is not a StreamingModule")
    stream = Stream(module, batch_size, device, dtype)
    try:
        yield stream
    finally:
        stream.state = None
        stream.finished = True


def chunk_schedule(total: int, chunk_sizes: int | Sequence[int]) -> list[int]:
    """Split ``total`` steps into chunks of the given sizes, cycling through them (the last chunk may be short)."""
    sizes = [chunk_sizes] if isinstance(chunk_sizes, int) else list(chunk_sizes)
    if not sizes or any(s < 0 for s in sizes) or not any(s > 0 for s in sizes):
        raise ValueError(f"chunk sizes must be >= 0 with at least one > 0, got {chunk_sizes!r}")
    out: list[int] = []
    done = 0
    for size in itertools.cycle(sizes):
        if done >= total:
            break
        size = min(size, total - done)
        out.append(size)
        done += size
    return out


def run_chunked(
    module: StreamingModule,
    x: torch.Tensor,
    chunk_sizes: int | Sequence[int],
    flush: bool = True,
) -> torch.Tensor:
    """Feed ``x`` (B, ..., T) to ``module`` in chunks along the last axis and concatenate the outputs (+ flush).

    ``chunk_sizes`` is one size or a list cycled through (0 is allowed, to test empty chunks). By the streaming
    contract the result equals ``module(x)`` (test helper and offline reference for streaming code).
    """
    state = module.init_state(x.shape[0], x.device, x.dtype if x.is_floating_point() else None)
    outputs: list[torch.Tensor] = []
    start = 0
    for size in chunk_schedule(x.shape[-1], chunk_sizes):
        y, state = module.step(x[..., start : start + size], state)
        outputs.append(y)
        start += size
    if flush:
        tail = module.flush(state)
        if tail is not None:
            outputs.append(tail)
    if not outputs:
        raise ValueError("run_chunked: empty input and nothing flushed")
    return torch.cat(outputs, dim=-1)
