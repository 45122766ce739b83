"""The streaming TTS engine: LM -> flow head -> vocoder, yielding PCM chunks as soon as they exist.

.. code-block:: python

    tts = TTS.from_pretrained("exp/tts/model", vocoder="exp/vocoder/model")
    engine = StreamingTTS(tts, StreamConfig(first_chunk=1, chunk=4, head="mf"))
    for chunk in engine.stream("Hello there. How are you?", prompt_wav="ref.wav"):
        play(chunk.pcm)            # float32 (n,), chunk.sample_rate; chunk.latency_ms since the call

**Pipeline.** The prompt is read and encoded once (mel, reference encoder; prompt features are part of the measured
latency), the text is split into segments (:mod:`voxar.runtime.textstream`: sentences of a whole string exactly as
offline synthesis splits them, or segments released incrementally from an iterator of text pieces), and each
segment is prefilled once, then the LM steps with its KV cache and the head samples one patch (P mel frames) per
step (:meth:`voxar.tts.TTS.generate_segment`). Patches are grouped into *emission chunks*: ``first_chunk`` patches for
the first chunk of the stream (small: first audio sooner), ``chunk`` patches after that (fewer calls, less
overhead). Each emission chunk goes through the vocoder's streaming ``step`` (one vocoder state per segment, flushed
at the segment's end), and the final samples are yielded.

**Same audio as offline.** With the same seed, head, steps and LM chunk size, the concatenated stream equals
:meth:`voxar.tts.TTS.synthesize` (float tolerance with an exact-streaming vocoder): segments get the same
raised-cosine fade-in/out (the last ``FADE_SECONDS`` of a segment are held back until its end is known), the same
pause between them and the same clipping.

**Overlap.** With ``overlap=True`` a producer thread runs the LM and head and hands mel patches through a
bounded queue to the consumer side, which vocodes; LM stepping and vocoding then overlap (torch releases the GIL
in its kernels). The audio does not change: the producer owns the random generator and the order of patches.
The default (``overlap=None``, :func:`auto_overlap`) overlaps on CUDA, and on CPU only when a core is left over
beyond torch's intra-op threads: on the 2-core CPU, 2 intra-op threads without the producer thread beat 1 thread
with it (first audio 19 vs 34 ms, RTF 0.14 vs 0.22, docs/benchmarks.md), and 2 threads with it fight for the cores.

**Backpressure and cancellation.** The engine is pull-based: nothing is vocoded until the caller asks for the next
chunk, and the producer blocks once ``max_queue`` patches wait, so a slow consumer never makes memory grow.
Closing the generator (``gen.close()``, ``break`` out of a ``for`` loop, or :meth:`StreamHandle.cancel`) stops the
producer at its next patch and joins the thread; its caches are freed with it.

Legend: M mel bins, P frames per patch, n frames, L samples.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from voxar.errors import VoxarConfigError, VoxarTextError
from voxar.runtime.textstream import segments as text_segments

log = logging.getLogger(__name__)

_DONE = object()  # end of the producer's output
_SEGMENT_END = object()  # marks the end of one segment in the patch queue


@dataclass
class StreamConfig:
    """Streaming settings. ``first_chunk``/``chunk``: patches per emission chunk (first / later); ``head``,
    ``steps``, ``cfg``, ``seed``, ``lm_chunk`` (the LM's attention chunk; None: the model's) as in
    :meth:`voxar.tts.TTS.synthesize`; ``overlap``: LM in a producer thread (None: :func:`auto_overlap`);
    ``max_queue``: patches that may wait between LM and vocoder; text segmentation thresholds as in
    :class:`voxar.runtime.textstream.TextSegmenter`; ``min_patches``/``max_patches``: fixed length guards
    (benchmarks; None: the text-based guards); ``autocast``: ``"bf16"``/``"fp16"`` runs the LM and head under
    :func:`torch.autocast` (CUDA; the vocoder stays fp32)."""

    first_chunk: int = 1
    chunk: int = 4
    head: Literal["fm", "mf"] = "mf"
    steps: int | None = None
    cfg: float | None = None
    seed: int = 0
    lm_chunk: int | None = None
    overlap: bool | None = None
    max_queue: int = 8
    min_chars: int = 40
    first_min_chars: int = 20
    max_chars: int = 200
    min_patches: int | None = None
    max_patches: int | None = None
    autocast: Literal["bf16", "fp16"] | None = None

    def __post_init__(self) -> None:
        if self.first_chunk < 1 or self.chunk < 1:
            raise VoxarConfigError(f"emission chunks must be >= 1 patch, got {self.first_chunk} and {self.chunk}")
        if self.max_queue < 1:
            raise VoxarConfigError(f"max_queue must be >= 1, got {self.max_queue}")
        if self.head not in ("fm", "mf"):
            raise VoxarConfigError(f"head must be 'fm' or 'mf', got {self.head!r}")
        if self.autocast not in (None, "bf16", "fp16"):
            raise VoxarConfigError(f"autocast must be None, 'bf16' or 'fp16', got {self.autocast!r}")


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def auto_overlap(device: torch.device) -> bool:
    """Whether the producer thread pays off: always on CUDA (the GPU computes while Python vocodes); on CPU only
    when a core is free beyond torch's intra-op threads, else the two stages fight over the same cores."""
    return device.type == "cuda" or torch.get_num_threads() < available_cpus()


@dataclass
class AudioChunk:
    """One emitted piece: ``pcm`` float32 ``(n,)`` in [-1, 1] at ``sample_rate``; ``index`` in the stream;
    ``segment`` it belongs to; ``latency_ms``: time from the :meth:`StreamingTTS.stream` call until it was ready;
    ``compute_ms``: engine time spent on it since the previous chunk was handed out (waiting on the caller excluded);
    ``patches``: LM patches it covers; ``final``: the last chunk of the stream."""

    pcm: np.ndarray
    sample_rate: int
    index: int
    segment: int
    latency_ms: float
    compute_ms: float
    patches: int
    final: bool = False

    @property
    def duration(self) -> float:
        return len(self.pcm) / self.sample_rate


def autocast_context(device: torch.device, dtype: str | None) -> Any:
    """``torch.autocast`` for ``"bf16"``/``"fp16"`` on ``device``; a no-op context for None."""
    import contextlib

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[dtype])


class _Producer:
    """Runs the LM + head over the segments and puts ``(segment, mel (M, n))`` items, :data:`_SEGMENT_END`,
    then :data:`_DONE` (or the exception) into a bounded queue; inline when not threaded."""

    def __init__(self, fn: Iterator[Any], threaded: bool, max_queue: int) -> None:
        self.fn = fn
        self.cancelled = threading.Event()
        self.q: queue.Queue = queue.Queue(maxsize=max_queue)
        self.thread: threading.Thread | None = None
        self.steps = 0  # items produced (test hook: backpressure and cancellation)
        if threaded:
            self.thread = threading.Thread(target=self._run, name="voxar-lm", daemon=True)
            self.thread.start()

    def _put(self, item: Any) -> bool:
        while not self.cancelled.is_set():
            try:
                self.q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            with torch.inference_mode():
                for item in self.fn:
                    self.steps += 1
                    if not self._put(item):
                        return
            self._put(_DONE)
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._put(e)
        finally:
            if hasattr(self.fn, "close"):
                self.fn.close()

    def get(self) -> Any:
        if self.thread is None:
            try:
                self.steps += 1
                return next(self.fn)
            except StopIteration:
                return _DONE
        while True:
            try:
                return self.q.get(timeout=0.1)
            except queue.Empty:
                if not self.thread.is_alive() and self.q.empty():
                    return _DONE
                continue

    def close(self) -> None:
        self.cancelled.set()
        if self.thread is not None:
            while True:  # unblock a producer waiting on a full queue
                try:
                    self.q.get_nowait()
                except queue.Empty:
                    break
            self.thread.join()
        elif hasattr(self.fn, "close"):
            self.fn.close()


class StreamingTTS:
    """Streaming synthesis on a :class:`voxar.tts.TTS` (see the module docstring). One engine serves one stream at a
    time per thread; streams share the model weights."""

    def __init__(self, tts: Any, config: StreamConfig | None = None) -> None:
        self.tts = tts
        self.cfg = config or StreamConfig()
        self.tts.model.head(self.cfg.head)  # a missing head is an error now, not mid-stream
        self.last_producer: _Producer | None = None  # test hook

    @property
    def sample_rate(self) -> int:
        return self.tts.sample_rate

    @property
    def overlap(self) -> bool:
        """Whether streams run the LM in a producer thread (``cfg.overlap``, or :func:`auto_overlap` when None)."""
        return self.cfg.overlap if self.cfg.overlap is not None else auto_overlap(self.tts.device)

    def warmup(self, prompt_wav: Any = None, prompt_text: str | None = None) -> float:
        """Run one short utterance through the whole pipeline and discard it (first-call costs: lazy kernel set-up,
        the phonemiser process, feature filterbanks, the vocoder's fused weights); returns its wall time in ms.
        Call it while waiting for text, so the first real chunk is as fast as the benchmark's warm figure."""
        t0 = time.perf_counter()
        cfg = self.cfg
        self.cfg = dataclasses.replace(cfg, min_patches=2, max_patches=2, overlap=False)
        try:
            for _ in self.stream("Hello.", prompt_wav, prompt_text):
                pass
        finally:
            self.cfg = cfg
        return 1e3 * (time.perf_counter() - t0)

    @property
    def patch_seconds(self) -> float:
        mel = self.tts.mel_cfg
        return self.tts.cfg.lm.patch_size * mel.hop_length / mel.sample_rate

    def _segments(self, text: str | Iterable[str]) -> Iterator[list[int]]:
        """Token ids per segment: the sentences of a string (as offline), or incremental segments of pieces."""
        if isinstance(text, str):
            yield from self.tts.encode_sentences(text)
            return
        c = self.cfg
        spoken = 0
        for seg in text_segments(text, min_chars=c.min_chars, first_min_chars=c.first_min_chars, max_chars=c.max_chars):
            for ids in self._try_encode(seg):
                spoken += 1
                yield ids
        if spoken == 0:
            raise VoxarTextError("the text stream ended without anything to speak")

    def _try_encode(self, segment: str) -> list[list[int]]:
        try:
            return self.tts.encode_sentences(segment)
        except VoxarTextError:
            log.debug("skipping a segment with nothing to speak: %r", segment)
            return []

    def _patches(self, text: str | Iterable[str], prompt_wav: Any, prompt_text: str | None) -> Iterator[Any]:
        """Producer body: ``(segment, mel (M, n))`` per LM emission, :data:`_SEGMENT_END` after each segment."""
        c, tts = self.cfg, self.tts
        flow_head = tts.model.head(c.head)
        cond, prefix = tts._conditioning(prompt_wav, prompt_text)
        gen = torch.Generator(tts.device).manual_seed(int(c.seed))
        for i, ids in enumerate(self._segments(text)):
            # autocast is thread-local state: in inline mode it stays on across the yields, so the vocoder stage
            # turns it off for itself (see _vocoded)
            with autocast_context(tts.device, c.autocast):
                for mel in tts.generate_segment(
                    ids, cond, prefix, flow_head, gen, steps=c.steps, cfg=c.cfg, chunk_size=c.lm_chunk, index=i,
                    min_patches=c.min_patches, max_patches=c.max_patches,
                ):  # fmt: skip
                    yield i, mel.float()
            yield _SEGMENT_END

    def _vocoded(self, producer: _Producer) -> Iterator[tuple[int, np.ndarray, int, bool]]:
        """Vocoder stage: ``(segment, samples float32 (l,), patches, segment_ended)`` per emission chunk.

        Each segment gets its own vocoder stream; at its end the stream is flushed and the segment's samples padded
        or cropped to ``frames * hop`` as offline vocoding does."""
        tts, c = self.tts, self.cfg
        hop, patch = tts.mel_cfg.hop_length, tts.cfg.lm.patch_size
        vocoder = tts.vocoder
        segment, state, frames, emitted = -1, None, 0, 0
        pending: list[torch.Tensor] = []
        want = c.first_chunk
        while True:
            item = producer.get()
            if isinstance(item, BaseException):
                raise item
            if item is _DONE:
                return
            ended = item is _SEGMENT_END
            if not ended:
                seg, mel = item
                if seg != segment:
                    segment, frames, emitted = seg, 0, 0
                    state = vocoder.init_state(1, tts.device)
                pending.append(mel)
                if sum(m.shape[-1] for m in pending) < want * patch:
                    continue
            n_patches = sum(m.shape[-1] for m in pending) // patch
            out = torch.zeros(1, 0)
            with torch.inference_mode(), torch.autocast(tts.device.type, enabled=False):
                if pending:
                    block = torch.cat(pending, dim=-1)[None].to(tts.device)  # (M, n) -> (1, M, n)
                    frames += block.shape[-1]
                    out, state = vocoder.step(block, state)
                    pending = []
                if ended:
                    rest = vocoder.flush(state)
                    if rest is not None:
                        out = torch.cat([out.to(rest.device), rest], dim=-1)
            wav = out[0].float().cpu().numpy()
            if ended:  # offline pads/crops each segment to frames * hop samples
                target = frames * hop - emitted
                wav = np.pad(wav[:target], (0, max(0, target - len(wav))))
            emitted += len(wav)
            want = c.chunk
            yield segment, wav, n_patches, ended

    def stream(
        self, text: str | Iterable[str], prompt_wav: Any = None, prompt_text: str | None = None
    ) -> Iterator[AudioChunk]:
        """Yield :class:`AudioChunk` s as they are ready; the last one has ``final=True`` (and may be empty).

        ``text``: a string, or an iterator of text pieces (speaking starts as soon as a segment is complete);
        ``prompt_wav``/``prompt_text`` as in :meth:`voxar.tts.TTS.synthesize`. Bad input (empty text, unreadable,
        short or silent prompt) raises before the first chunk."""
        from voxar.tts import FADE_SECONDS, PAUSE_SECONDS

        t0 = time.perf_counter()
        if isinstance(text, str) and not text.strip():
            raise VoxarTextError("text is empty or whitespace only; nothing to speak")
        sr = self.sample_rate
        n_fade = int(round(FADE_SECONDS * sr))
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n_fade) + 0.5) / max(n_fade, 1))).astype(np.float32)
        pause = np.zeros(int(round(PAUSE_SECONDS * sr)), dtype=np.float32)
        producer = _Producer(self._patches(text, prompt_wav, prompt_text), self.overlap, self.cfg.max_queue)
        self.last_producer = producer
        index, t_mark = 0, time.perf_counter()
        current, emitted = -1, 0  # segment being assembled, its samples so far
        tail = np.zeros(0, dtype=np.float32)  # the last n_fade samples, held until the segment's end is known

        def chunk(pcm: np.ndarray, segment: int, patches: int, final: bool = False) -> AudioChunk:
            nonlocal index, t_mark
            now = time.perf_counter()
            out = AudioChunk(np.clip(pcm, -1.0, 1.0).astype(np.float32), sr, index, segment, 1e3 * (now - t0),
                             1e3 * (now - t_mark), patches, final)  # fmt: skip
            index += 1
            return out

        try:
            for segment, wav, patches, ended in self._vocoded(producer):
                head = np.zeros(0, dtype=np.float32)
                if segment != current:
                    if current >= 0:
                        head = pause
                    current, emitted = segment, 0
                if emitted < n_fade and len(wav):  # fade-in over the segment's first samples
                    k = min(n_fade - emitted, len(wav))
                    wav = wav.copy()
                    wav[:k] *= ramp[emitted : emitted + k]
                emitted += len(wav)
                tail = np.concatenate([tail, wav])
                if ended:
                    k = min(n_fade, emitted // 2, len(tail))
                    if k:  # fade-out, as offline: min(n_fade, len // 2)
                        tail[len(tail) - k :] *= ramp[:k][::-1]
                    ready, tail = tail, np.zeros(0, dtype=np.float32)
                else:
                    keep = min(n_fade, len(tail))
                    ready, tail = tail[: len(tail) - keep], tail[len(tail) - keep :]
                pcm = np.concatenate([head, ready])
                if len(pcm):
                    yield chunk(pcm, segment, patches)
                    t_mark = time.perf_counter()
            yield chunk(np.zeros(0, dtype=np.float32), max(current, 0), 0, final=True)
        finally:
            producer.close()

    def synthesize(
        self, text: str | Iterable[str], prompt_wav: Any = None, prompt_text: str | None = None
    ) -> np.ndarray:
        """The whole stream concatenated, float32 ``(L,)`` (for tests and file output)."""
        parts = [ch.pcm for ch in self.stream(text, prompt_wav, prompt_text)]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)
