"""Continuous batching: many TTS streams served by one batched LM decode step (streams join and leave between steps).

:class:`ContinuousBatcher` keeps one batched decoding state for all active streams. Each :meth:`step`:

1. **admits** waiting requests (up to ``max_batch`` active): each new segment is prefilled on its own (B = 1) and its
   KV cache is merged into the batch -- caches of different lengths are aligned by padding the shorter ones with
   ``PAD`` slots, which the attention mask ignores (slot metadata ``key_kind``/``key_idx`` is per stream);
2. runs **one LM step for all streams at once**: each stream's query has its own index and RoPE position, so the
   streams need not be in step; the flow head samples every stream's next patch in one batched call, with each
   stream's starting noise drawn from its own generator (so a stream's audio does not depend on its neighbours);
3. hands each stream's new patch to its own streaming vocoder (emitted every ``chunk`` patches) and **retires**
   finished segments: their rows leave the batch, all-``PAD`` cache columns are compacted away, and a request with
   more segments is re-admitted with the next one.

Requires an LM with ``chunk_size == 1`` (the default): in chunk mode a chunk's queries are rolled back and
re-encoded, which does not batch across streams at different offsets. A text-pointer LM (``lm.pointer``) keeps
each stream's pointer with its slot (its text, phone table, pointer, accumulated advance and slot history), embeds
it into that stream's query, moves it after the batched step, and ends a segment ``pointer_tail`` patches after the
pointer passed the last phone, as :func:`voxar.models.generate.stream` does.

Legend: B active streams, S cache slots, D LM width, F patch dim, H heads, Dh head dim.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from voxar.errors import VoxarConfigError
from voxar.models.heads import history_push, length_limits, stop_now
from voxar.models.lm import PAD, QUERY, LMState, Tokens
from voxar.modules.attention import KVCache


@dataclass
class Request:
    """One stream: ``segments`` (token ids per sentence), LM conditioning ``cond`` and ``prefix`` (prompt-text ids)
    as made by :meth:`voxar.tts.TTS._conditioning`, its own random ``generator``, optional fixed length guards, and
    ``on_audio(request, pcm float32 (l,), final)`` called with its audio as it is vocoded."""

    segments: list[list[int]]
    cond: dict[str, torch.Tensor | None]
    prefix: list[int]
    generator: torch.Generator
    on_audio: Callable[[Request, np.ndarray, bool], None] | None = None
    min_patches: int | None = None
    max_patches: int | None = None
    tag: Any = None
    segment: int = 0
    patches: int = 0  # generated so far (all segments)
    submitted: float = field(default_factory=time.perf_counter)
    first_audio: float | None = None  # perf_counter time of its first samples
    finished: bool = False


@dataclass
class _Pointer:
    """One stream's text pointer, with the attribute names :meth:`PatchLM._embed_ptr` reads from an
    :class:`LMState`: ``ptr``/``ptr_acc``/``ptr_n`` ``(1,)``, ``ptr_slots (1, n_query)``, ``ptr_ids``,
    ``ptr_table``; ``tail``: patches generated with the pointer past the text."""

    ptr: torch.Tensor
    ptr_acc: torch.Tensor
    ptr_n: torch.Tensor
    ptr_slots: torch.Tensor
    ptr_ids: torch.Tensor
    ptr_table: torch.Tensor
    tail: int = 0


@dataclass
class _Slot:
    """A request's row in the batch: next query index ``i``, patches ``n`` of this segment, length guards,
    history ``hist (1, K*F)``, last patch ``x (1, F)``, the vocoder stream and the mel frames waiting for it."""

    req: Request
    i: int
    n: int
    min_len: torch.Tensor
    max_len: torch.Tensor
    hist: torch.Tensor
    voc_state: Any
    pending: list[torch.Tensor]
    frames: int = 0
    emitted: int = 0
    x: torch.Tensor | None = None
    pointer: _Pointer | None = None
    noise: torch.Tensor | None = None  # (1, F): the starting noise of a head with noise: utterance


def _merge(a: LMState | None, b: LMState) -> LMState:
    """Stack two decoding states along the batch, padding the shorter caches with ``PAD`` slots at the end."""
    if a is None:
        return b
    sa, sb = a.caches[0].length, b.caches[0].length
    s = max(sa, sb)

    def pad_kv(t: torch.Tensor, used: int) -> torch.Tensor:  # (B, H, cap, Dh) -> (B, H, s, Dh)
        t = t[:, :, :used]
        return torch.cat([t, t.new_zeros(t.shape[0], t.shape[1], s - used, t.shape[3])], dim=2)

    caches = []
    for ca, cb in zip(a.caches, b.caches, strict=True):
        k = torch.cat([pad_kv(ca.k, sa), pad_kv(cb.k, sb)], dim=0)
        v = torch.cat([pad_kv(ca.v, sa), pad_kv(cb.v, sb)], dim=0)
        cache = KVCache.empty(k.shape[0], k.shape[1], k.shape[3], s + 64, k.device, k.dtype, None)
        cache.k[:, :, :s], cache.v[:, :, :s], cache.length = k, v, s
        caches.append(cache)

    def pad_meta(t: torch.Tensor, value: int) -> torch.Tensor:  # (B, S_x) -> (B, s)
        return torch.cat([t, t.new_full((t.shape[0], s - t.shape[1]), value)], dim=1)

    kind = torch.cat([pad_meta(a.key_kind, PAD), pad_meta(b.key_kind, PAD)], dim=0)
    idx = torch.cat([pad_meta(a.key_idx, 0), pad_meta(b.key_idx, 0)], dim=0)
    plens = torch.cat([a.prefix_lens, b.prefix_lens], dim=0)
    return LMState(caches, kind, idx, plens, 0, 1, 0, b.buf)


def _select(state: LMState, rows: torch.Tensor) -> LMState | None:
    """Keep batch ``rows`` and drop cache columns that are ``PAD`` for every remaining row (None if no row)."""
    if rows.numel() == 0:
        return None
    kind = state.key_kind[rows]
    cols = (kind != PAD).any(dim=0)
    cols[-1] = True  # keep at least one column
    keep = torch.nonzero(cols).squeeze(1)
    caches = []
    for c in state.caches:
        k = c.k[rows][:, :, : c.length][:, :, keep]  # (B', H, S', Dh)
        v = c.v[rows][:, :, : c.length][:, :, keep]
        cache = KVCache.empty(k.shape[0], k.shape[1], k.shape[3], k.shape[2] + 64, k.device, k.dtype, None)
        cache.k[:, :, : k.shape[2]], cache.v[:, :, : k.shape[2]], cache.length = k, v, k.shape[2]
        caches.append(cache)
    return LMState(caches, kind[:, keep], state.key_idx[rows][:, keep], state.prefix_lens[rows], 0, 1, 0, state.buf)


class ContinuousBatcher:
    """Serve many :class:`Request` s with batched decode steps (see the module docstring).

    ``tts``: a :class:`voxar.tts.TTS`; ``head``/``steps``/``cfg``: sampling; ``chunk``: patches per vocoder call;
    ``max_batch``: most streams decoded together (others wait in the queue); ``pointer_tail``: text-pointer LMs
    end a segment this many patches after the pointer passed the last phone.
    """

    def __init__(
        self,
        tts: Any,
        head: str = "mf",
        steps: int | None = None,
        cfg: float | None = None,
        chunk: int = 4,
        max_batch: int = 64,
        pointer_tail: int = 5,
    ) -> None:
        if tts.model.lm.cfg.chunk_size != 1:
            raise VoxarConfigError(
                f"continuous batching needs an LM with chunk_size 1, this one has {tts.model.lm.cfg.chunk_size}"
            )
        self.tts, self.lm, self.head = tts, tts.model.lm, tts.model.head(head)
        self.steps, self.cfg, self.chunk, self.max_batch = steps, cfg, chunk, max_batch
        self.pointer_tail = pointer_tail
        self.waiting: deque[Request] = deque()
        self.slots: list[_Slot] = []
        self.state: LMState | None = None
        self.h: torch.Tensor | None = None  # (B, D) hidden states predicting each slot's next patch
        self.step_count = 0

    def submit(self, req: Request) -> Request:
        """Queue a request; it joins the batch at the next :meth:`step` with room."""
        if not req.segments:
            raise VoxarConfigError("a request needs at least one segment of text")
        self.waiting.append(req)
        return req

    @property
    def active(self) -> int:
        return len(self.slots)

    def idle(self) -> bool:
        return not self.slots and not self.waiting

    # ------------------------------------------------------------------------------------------------ admission
    def _admit(self, req: Request) -> None:
        lm, dev = self.lm, self.tts.device
        ids = req.prefix + req.segments[req.segment]
        text_ids = torch.tensor([ids], dtype=torch.long, device=dev)  # (1, Lt)
        text_lens = torch.tensor([len(ids)], device=dev)
        cond = dict(req.cond)
        if req.prefix and lm.pointer is not None:  # continuation: the pointer starts at the target's first phone
            cond["text_start"] = torch.tensor([len(req.prefix)], device=dev)
        h, st = lm.prefill(text_ids, text_lens, chunk_size=1, **cond)
        n_prompt = st.n_query - 1
        k, f = self.head.cfg.history, lm.cfg.patch_dim
        prompt = torch.zeros(1, 0, f, device=dev)
        if req.cond.get("prompt_mels") is not None:
            prompt = lm.patchify(req.cond["prompt_mels"], req.cond.get("prompt_lens"), align="end")[0]
        hist = torch.cat([torch.zeros(1, k, f, device=dev), prompt[:, :n_prompt]], 1)
        hist = hist[:, hist.shape[1] - k :].reshape(1, k * f)  # (1, K*F), oldest first
        from voxar.tts import MIN_PATCHES_PER_TOKEN

        floor = req.min_patches or max(1, int(MIN_PATCHES_PER_TOKEN * len(req.segments[req.segment])))
        cap = min(req.max_patches or lm.cfg.max_patches, lm.cfg.max_patches - n_prompt)
        min_len, max_len = length_limits(text_lens, min_patches=floor, max_patches=max(cap, 1), prompt_patches=n_prompt)
        voc = self.tts.vocoder.init_state(1, dev)
        pointer = None
        if st.ptr_slots is not None:
            pointer = _Pointer(st.ptr, st.ptr_acc, st.ptr_n, st.ptr_slots, st.ptr_ids, st.ptr_table)
        noise = self.head.generation_noise(req.generator, 1, dev)
        self.slots.append(_Slot(req, st.n_query, 0, min_len, max_len, hist, voc, [], pointer=pointer, noise=noise))
        self.state = _merge(self.state, st)
        self.h = h if self.h is None else torch.cat([self.h, h], dim=0)

    # ------------------------------------------------------------------------------------------------ one step
    @torch.inference_mode()
    def step(self) -> int:
        """Admit waiting requests, then one batched decode step; returns the number of streams that stepped."""
        while self.waiting and len(self.slots) < self.max_batch:
            self._admit(self.waiting.popleft())
        if not self.slots:
            return 0
        assert self.state is not None and self.h is not None
        b, dev = len(self.slots), self.tts.device
        hist = torch.cat([s.hist for s in self.slots], dim=0)  # (B, K*F)
        noise = torch.cat(
            [
                s.noise
                if s.noise is not None
                else torch.randn(1, self.lm.cfg.patch_dim, generator=s.req.generator, device=dev)  # fmt: skip
                for s in self.slots
            ]
        )  # (B, F): each stream's own noise
        x = self.head.sample_patch(self.h, hist if hist.shape[1] else None, self.steps, self.cfg, noise=noise)
        n = torch.tensor([s.n + 1 for s in self.slots], device=dev)
        min_len = torch.cat([s.min_len for s in self.slots])
        max_len = torch.cat([s.max_len for s in self.slots])
        done = stop_now(self.lm.stop_head(self.h), n, min_len, max_len)
        for j, slot in enumerate(self.slots):  # text pointer: the phone the query that made h read
            p = slot.pointer
            if p is not None:
                p.tail = p.tail + 1 if bool(p.ptr_slots[0, -1] >= p.ptr_n[0]) else 0
                if p.tail >= self.pointer_tail and slot.n + 1 >= int(slot.min_len[0]):
                    done[j] = True
        mel = self.lm.unpatchify(x[:, None])  # (B, 1, F) -> (B, M, P)
        for j, slot in enumerate(self.slots):
            slot.n += 1
            slot.req.patches += 1
            slot.hist = history_push(slot.hist, x[j : j + 1])
            slot.pending.append(mel[j : j + 1].float())
            if bool(done[j]) or len(slot.pending) >= self.chunk:
                self._vocode(slot, final=bool(done[j]))
        keep = [j for j in range(b) if not bool(done[j])]
        if keep:  # one LM step for the streams that go on: each query at its own index and position
            rows = torch.tensor(keep, device=dev)
            st = _select(self.state, rows) if len(keep) < b else self.state
            i = torch.tensor([self.slots[j].i for j in keep], device=dev)[:, None]  # (B', 1)
            q_in = self.lm.query_input(x[rows])  # (B', 1, D)
            live = [self.slots[j] for j in keep]
            if self.lm.pointer is not None:  # each query reads its stream's phone
                emb = []
                for s in live:
                    p = s.pointer
                    assert p is not None
                    p.ptr_slots = torch.cat([p.ptr_slots, p.ptr[:, None]], dim=1)
                    emb.append(self.lm._embed_ptr(p, s.i, s.i + 1))  # type: ignore[arg-type]
                q_in = q_in + torch.cat(emb)
            tokens = Tokens(q_in, torch.full_like(i, QUERY), i, st.prefix_lens[:, None] + i)
            self.h = self.lm._run(tokens, 1, st)[:, -1]
            self.state = st
            if self.lm.pointer is not None:  # every stream's pointer moves in one call
                ps = [s.pointer for s in live]
                ptr, acc = self.lm.pointer.next_pointer(
                    self.h,
                    *(torch.cat([getattr(p, a) for p in ps]) for a in ("ptr", "ptr_n", "ptr_acc")),  # type: ignore[union-attr]
                )
                for r, p in enumerate(ps):
                    p.ptr, p.ptr_acc = ptr[r : r + 1], acc[r : r + 1]  # type: ignore[union-attr]
        else:
            self.state, self.h = None, None
        finished = [self.slots[j] for j in range(b) if bool(done[j])]
        self.slots = [self.slots[j] for j in keep]
        for s in self.slots:
            s.i += 1
        for s in finished:  # next segment of the same request, or the request is done
            s.req.segment += 1
            if s.req.segment < len(s.req.segments):
                self.waiting.appendleft(s.req)
            else:
                s.req.finished = True
        self.step_count += 1
        return b

    def _vocode(self, slot: _Slot, final: bool) -> None:
        """Vocode the slot's pending patches (and flush at the segment's end); pass the samples to ``on_audio``."""
        voc, hop = self.tts.vocoder, self.tts.mel_cfg.hop_length
        block = torch.cat(slot.pending, dim=-1)  # (1, M, n)
        slot.pending = []
        slot.frames += block.shape[-1]
        wav, slot.voc_state = voc.step(block, slot.voc_state)
        if final:
            rest = voc.flush(slot.voc_state)
            if rest is not None:
                wav = torch.cat([wav, rest], dim=-1)
            target = slot.frames * hop - slot.emitted
            wav = wav[:, :target]
            wav = torch.nn.functional.pad(wav, (0, max(0, target - wav.shape[-1])))
        pcm = wav[0].float().cpu().numpy()
        slot.emitted += len(pcm)
        req = slot.req
        if req.first_audio is None and len(pcm):
            req.first_audio = time.perf_counter()
        if req.on_audio is not None:
            last = final and req.segment + 1 >= len(req.segments)
            req.on_audio(req, pcm, last)

    def run(self, max_steps: int | None = None) -> int:
        """Step until every request is done (or ``max_steps``); returns the steps taken."""
        taken = 0
        while not self.idle() and (max_steps is None or taken < max_steps):
            self.step()
            taken += 1
        return taken
