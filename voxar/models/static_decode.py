"""Fixed-shape decoding for :class:`voxar.models.lm.PatchLM`: a preallocated KV cache and CUDA graphs.

:meth:`PatchLM.step` grows its caches and slot metadata by concatenation, so every step has new tensor shapes. That
is cheap on a CPU, but on a GPU the step is a few hundred small kernel launches whose Python and launch overhead
dominates. :class:`StaticDecoder` takes over after :meth:`PatchLM.prefill` and runs the *same* step (plain causal
LM, ``chunk_size`` 1) on buffers whose shapes never change:

- every layer's keys/values live in a ``(B, H, capacity, Dh)`` buffer (:class:`StaticKVCache`); the new token is
  written at the slot held in a device tensor (``index_copy_``), not at a Python offset;
- attention runs over the whole capacity with a ``(B, 1, 1, capacity)`` boolean key mask (the prefix without its
  padding, the queries so far, the new query), updated in place;
- positions (``prefix_len + i``) and the write slot are device tensors advanced in place at the end of the step;
- a text-pointer LM (``lm.pointer``) keeps its pointer, accumulated advance and dwell in device tensors too: the
  step embeds the pointed-at phone and moves the pointer (:meth:`TextPointer.next_pointer`) inside the graph.

So the step is a fixed sequence of kernels on fixed addresses: with ``cuda_graph=True`` (CUDA only) it is captured
once into a :class:`torch.cuda.CUDAGraph` and each step is one replay. Without it (any device) the same code runs
eagerly, which is how the CPU tests check it against :meth:`PatchLM.step` (equal to float tolerance: masked slots
contribute exact zeros; only the summation order differs).

Legend: B batch, S0 slots filled by prefill, S capacity, H heads, Dh head dim, D model width, F patch values.
"""

from __future__ import annotations

import torch

from voxar.errors import VoxarConfigError
from voxar.models.lm import PAD, LMState, PatchLM


class StaticKVCache:
    """One layer's keys/values ``k``, ``v`` ``(B, H, S, Dh)`` written at the shared device index ``slot (1,)``.

    Duck-types :class:`voxar.modules.attention.KVCache` for :meth:`MultiHeadAttention.forward`: :meth:`append`
    stores one new token and returns the *whole* buffers, so attention covers every slot and the caller's mask
    decides which are valid. The caller advances ``slot`` after all layers have written.
    """

    def __init__(self, k: torch.Tensor, v: torch.Tensor, slot: torch.Tensor) -> None:
        self.k, self.v, self.slot = k, v, slot

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if k.shape[2] != 1:
            raise ValueError(f"a static KV cache takes one token per step, got {k.shape[2]}")
        self.k.index_copy_(2, self.slot, k.to(self.k.dtype))  # (B, H, 1, Dh) into slot
        self.v.index_copy_(2, self.slot, v.to(self.v.dtype))
        return self.k, self.v


class StaticDecoder:
    """Fixed-shape :meth:`PatchLM.step` after a prefill (see the module docstring).

    ``lm`` in eval mode and ``state`` from :meth:`PatchLM.prefill` with ``chunk_size`` 1 (the decoder copies what it
    needs; ``state`` is not used afterwards). ``capacity``: key slots (default: prefill + the LM's ``max_patches``
    guard); ``cuda_graph``: capture the step on first use (CUDA devices only). :meth:`step` returns ``h (B, D)``
    for the next patch, as :meth:`PatchLM.step` does.
    """

    def __init__(self, lm: PatchLM, state: LMState, capacity: int | None = None, cuda_graph: bool = False) -> None:
        if state.chunk_size != 1:
            raise VoxarConfigError(f"static decoding needs an LM chunk size of 1, got {state.chunk_size}")
        if lm.training:
            raise VoxarConfigError("static decoding runs in eval mode (call lm.eval())")
        first = state.caches[0]
        b, n_heads, _, head_dim = first.k.shape
        s0 = first.length
        cap = capacity or s0 + lm.cfg.max_patches + 1
        if cap <= s0:
            raise VoxarConfigError(f"static decoder capacity {cap} leaves no room after {s0} prefilled slots")
        dev, dtype = first.k.device, first.k.dtype
        if cuda_graph and dev.type != "cuda":
            raise VoxarConfigError(f"CUDA graphs need a CUDA device, the LM is on {dev}")
        self.lm, self.capacity, self.cuda_graph = lm, cap, cuda_graph
        self.slot = torch.full((1,), s0, dtype=torch.long, device=dev)  # where the next token is written
        self.pos = (state.prefix_lens.to(dev).long() + state.n_query)[:, None]  # (B, 1) position of the next query
        self.valid = torch.zeros(b, 1, 1, cap, dtype=torch.bool, device=dev)  # (B, 1, 1, S) keys that may be seen
        self.valid[:, 0, 0, :s0] = state.key_kind != PAD
        self.caches = []
        for cache in state.caches:
            k = torch.zeros(b, n_heads, cap, head_dim, device=dev, dtype=dtype)
            v = torch.zeros_like(k)
            k[:, :, :s0], v[:, :, :s0] = cache.k[:, :, :s0], cache.v[:, :, :s0]
            self.caches.append(StaticKVCache(k, v, self.slot))
        self.inp = torch.zeros(b, lm.cfg.patch_dim, device=dev, dtype=lm.audio_bos.dtype)  # (B, F) static input
        self.out = torch.zeros(b, lm.cfg.d_model, device=dev, dtype=lm.audio_bos.dtype)  # (B, D) static output
        self.steps_left = cap - s0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.pointer = lm.pointer is not None
        if self.pointer:  # (B,) each: the next query's phone, the advance not yet taken, the last query's phone/dwell
            assert state.ptr is not None and state.ptr_slots is not None and state.ptr_acc is not None
            self.ptr, self.acc = state.ptr.clone(), state.ptr_acc.clone()
            self.last_ptr = state.ptr_slots[:, -1].clone()
            self.dwell = lm.pointer.dwell(state.ptr_slots)[:, -1].clone()
            self.ptr_ids, self.ptr_table, self.ptr_n = state.ptr_ids, state.ptr_table, state.ptr_n

    def _step(self) -> None:
        """One step on the static buffers (eager, or recorded by a CUDA graph capture)."""
        lm = self.lm
        x = lm.query_input(self.inp)  # (B, F) -> (B, 1, D)
        if self.pointer:
            assert lm.pointer is not None
            same = self.ptr == self.last_ptr
            self.dwell.copy_(
                torch.where(same, self.dwell + 1, torch.zeros_like(self.dwell)).clamp_max(lm.pointer.max_dwell)
            )
            self.last_ptr.copy_(self.ptr)
            dwell = self.dwell[:, None] if lm.pointer.max_dwell else None
            x = x + lm.pointer.embed(self.ptr_ids, self.ptr_table, self.ptr[:, None], dwell)  # (B, 1, D)
        self.valid.index_fill_(3, self.slot, True)  # the new query sees itself (and every later query sees it)
        y = lm.transformer(x, self.pos, self.valid, self.caches)  # (B, 1, D)
        self.out.copy_(y[:, -1])
        if self.pointer:
            assert lm.pointer is not None
            ptr, acc = lm.pointer.next_pointer(y[:, -1], self.ptr, self.ptr_n, self.acc)
            self.ptr.copy_(ptr)
            self.acc.copy_(acc)
        self.slot.add_(1)
        self.pos.add_(1)

    def _capture(self) -> None:
        """Warm up on a side stream (then undo the warm-up's writes to the state), then capture :meth:`_step`."""
        state = [self.slot, self.pos, self.valid]
        if self.pointer:
            state += [self.ptr, self.acc, self.last_ptr, self.dwell]
        saved = [t.clone() for t in state]
        side = torch.cuda.Stream(device=self.slot.device)
        side.wait_stream(torch.cuda.current_stream(self.slot.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._step()
                for t, s in zip(state, saved, strict=True):
                    t.copy_(s)
        torch.cuda.current_stream(self.slot.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step()  # recorded, not run: the state is as before

    @torch.no_grad()
    def step(self, prev_patch: torch.Tensor) -> torch.Tensor:
        """Feed the last generated patch ``(B, F)`` (normalised); returns ``h (B, D)`` for the next one (a new
        tensor: the static output buffer is overwritten by the next step)."""
        if self.steps_left <= 0:
            raise RuntimeError(
                f"static decoder is full ({self.capacity} key slots); raise its capacity or generate shorter segments"
            )
        self.inp.copy_(prev_patch)
        if self.cuda_graph:
            if self.graph is None:
                self._capture()
            self.graph.replay()
        else:
            self._step()
        self.steps_left -= 1
        return self.out.clone()
