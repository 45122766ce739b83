"""Body of ``voxar bench tts``: first-audio latency, RTF, per-chunk compute and memory of streaming TTS.

**Single stream** (default): a warm engine (:class:`voxar.runtime.engine.StreamingTTS`) speaks a fixed-length
utterance ``repeats`` times after ``warmup`` runs. *First-audio latency* is the time from the ``stream()`` call until
the first PCM chunk is available -- reading the prompt (mel, reference encoder), the text prefill, the first patch
and its vocoding all included. *RTF* is the whole stream's wall time over the audio duration; *per-chunk compute*
is the engine time per emitted chunk. The length is fixed (``min_patches = max_patches``) so runs are comparable
and random-weight models (used when no ``--model`` is given: speed does not depend on training) stop on time.

**Many streams** (``streams > 1``): a :class:`voxar.runtime.batching.ContinuousBatcher` keeps ``streams``
requests active -- they join one per step at the start and each finished request is replaced at once, so streams
join and leave between steps -- for ``rounds`` request lifetimes. Each step yields one patch (``patch_ms`` of audio)
per active stream, so the streams are real time when a step takes at most ``patch_ms``: the JSON gives step
percentiles, the per-stream RTF (step time / patch time), whether ``streams`` are sustained (p95 step <= patch
time) and a linear estimate of how many streams the device would sustain.

Legend: P frames per patch, L samples.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from typing import Any

import numpy as np
import torch

from voxar.errors import VoxarConfigError

log = logging.getLogger(__name__)

TEXT = "Streaming speech starts before the sentence is finished."


def synthetic_prompt(seconds: float = 3.0, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A voice-like test prompt ``(L,)``: a gliding harmonic tone with syllable-rate amplitude modulation."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    wav = 0.1 * env * voiced + 0.003 * rng.standard_normal(len(t))
    return wav.astype(np.float32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> dict[str, float]:
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def bench_single(
    tts: Any,
    *,
    seconds: float = 4.0,
    repeats: int = 10,
    warmup: int = 2,
    first_chunk: int = 1,
    chunk: int = 4,
    head: str = "mf",
    steps: int | None = None,
    overlap: bool | None = None,
    autocast: str | None = None,
    prompt: np.ndarray | None = None,
) -> dict[str, Any]:
    """Single-stream figures (see the module docstring)."""
    from voxar.bench import percentiles
    from voxar.runtime.engine import StreamConfig, StreamingTTS

    n = max(1, round(seconds / _patch_seconds(tts)))
    cfg = StreamConfig(
        first_chunk=first_chunk, chunk=chunk, head=head, steps=steps, overlap=overlap, min_patches=n,
        max_patches=n, autocast=autocast,
    )  # fmt: skip
    engine = StreamingTTS(tts, cfg)
    prompt = synthetic_prompt(sr=tts.sample_rate) if prompt is None else prompt
    first, rtf, per_chunk, chunk_ms, audio = [], [], [], [], 0.0
    for run in range(warmup + repeats):
        t0 = time.perf_counter()
        got = 0
        lat = None
        for ch in engine.stream(TEXT, prompt_wav=prompt):
            _sync(tts.device)
            if lat is None and len(ch.pcm):
                lat = 1e3 * (time.perf_counter() - t0)
            if run >= warmup and len(ch.pcm):
                per_chunk.append(ch.compute_ms)
                chunk_ms.append(1e3 * ch.duration)
            got += len(ch.pcm)
        wall = time.perf_counter() - t0
        if run >= warmup:
            first.append(lat)
            audio = got / tts.sample_rate
            rtf.append(wall / audio)
    return {
        "mode": "single",
        "overlap": engine.overlap,
        "audio_seconds": audio,
        "first_chunk_patches": first_chunk,
        "chunk_patches": chunk,
        "first_audio_ms": percentiles(first),
        "rtf": float(np.mean(rtf)),
        "rtf_max": float(np.max(rtf)),
        "chunk_compute_ms": percentiles(per_chunk),
        "chunk_audio_ms": float(np.median(chunk_ms)),
        **_peak_memory_mb(tts.device),
    }


def bench_streams(
    tts: Any,
    streams: int,
    *,
    seconds: float = 4.0,
    rounds: int = 2,
    chunk: int = 4,
    head: str = "mf",
    steps: int | None = None,
    autocast: str | None = None,
    prompt: np.ndarray | None = None,
) -> dict[str, Any]:
    """Continuous-batching figures for ``streams`` concurrent streams (see the module docstring)."""
    from voxar.bench import percentiles
    from voxar.runtime.batching import ContinuousBatcher, Request

    if streams < 1:
        raise VoxarConfigError(f"--streams must be >= 1, got {streams}")
    patch_ms = 1e3 * _patch_seconds(tts)
    n = max(1, round(seconds / _patch_seconds(tts)))
    prompt = synthetic_prompt(sr=tts.sample_rate) if prompt is None else prompt
    cond, prefix = tts._conditioning(prompt, None)
    segments = tts.encode_sentences(TEXT)[:1]
    batcher = ContinuousBatcher(tts, head=head, steps=steps, chunk=chunk, max_batch=streams)
    made = 0

    def new_request() -> Request:
        nonlocal made
        made += 1
        gen = torch.Generator(tts.device).manual_seed(made)
        return Request(segments, cond, prefix, gen, None, min_patches=n, max_patches=n)

    from voxar.runtime.engine import autocast_context

    ctx = autocast_context(tts.device, autocast)
    total = rounds * n + streams
    step_ms, active, first = [], [], []
    live: list[Request] = []
    with ctx:
        for _ in range(min(5, n)):  # warm-up: one short request alone
            batcher.submit(Request(segments, cond, prefix, torch.Generator(tts.device).manual_seed(0), None, 1, 1))
            batcher.run()
        for step in range(total):
            if step < streams:  # streams join one per step at the start
                live.append(batcher.submit(new_request()))
            _sync(tts.device)
            t0 = time.perf_counter()
            b = batcher.step()
            _sync(tts.device)
            step_ms.append(1e3 * (time.perf_counter() - t0))
            active.append(b)
            for r in [r for r in live if r.finished]:  # leave, and a new stream joins in its place
                first.append(1e3 * (r.first_audio - r.submitted) if r.first_audio else float("nan"))
                live.remove(r)
                if step < total - n:
                    live.append(batcher.submit(new_request()))
    full = [ms for ms, b in zip(step_ms, active, strict=True) if b == streams] or step_ms
    p = percentiles(full)
    mean = float(np.mean(full))
    return {
        "mode": "continuous_batching",
        "streams": streams,
        "patch_ms": patch_ms,
        "steps": len(step_ms),
        "requests_done": len(first),
        "step_ms_at_full_batch": p,
        "per_stream_rtf": mean / patch_ms,
        "realtime_sustained": bool(p["p95_ms"] <= patch_ms),
        "realtime_streams_estimate": int(streams * patch_ms / mean),
        "first_audio_ms_under_load": percentiles([f for f in first if f == f]),
        **_peak_memory_mb(tts.device),
    }


@torch.inference_mode()
def profile_components(tts: Any, head: str = "mf", steps: int | None = None, n: int = 20) -> dict[str, Any]:
    """Where a patch's time goes: prompt features, prefill, one LM step, one head sample, one vocoder call per
    patch (ms, medians over ``n`` calls, after the same calls once as warm-up)."""
    from voxar.bench import percentiles

    dev = tts.device
    lm, flow = tts.model.lm, tts.model.head(head)
    prompt = synthetic_prompt(sr=tts.sample_rate)
    ids = tts.encode_sentences(TEXT)[0]
    text_ids = torch.tensor([ids], device=dev)
    text_lens = torch.tensor([len(ids)], device=dev)

    def timed(fn: Any) -> list[float]:
        out = []
        for _ in range(n + 1):
            _sync(dev)
            t0 = time.perf_counter()
            fn()
            _sync(dev)
            out.append(1e3 * (time.perf_counter() - t0))
        return out[1:]

    cond: dict[str, Any] = {}
    t_prompt = timed(lambda: cond.update(tts._conditioning(prompt, None)[0]))
    t_prefill = timed(lambda: lm.prefill(text_ids, text_lens, chunk_size=1, **cond))
    h, state = lm.prefill(text_ids, text_lens, chunk_size=1, **cond)
    hist = torch.zeros(1, flow.cfg.history * lm.cfg.patch_dim, device=dev)
    x = flow.sample_patch(h, hist if hist.shape[1] else None, steps)
    t_head = timed(lambda: flow.sample_patch(h, hist if hist.shape[1] else None, steps))
    if tts.decode == "dynamic":
        t_lm = timed(lambda: lm.step(x, state))
    else:  # the fixed-shape step (a CUDA graph replay with decode "cuda-graph"); its capture is a warm-up call
        from voxar.models.static_decode import StaticDecoder

        dec = StaticDecoder(lm, state, cuda_graph=tts.decode == "cuda-graph")
        t_lm = timed(lambda: dec.step(x))
    voc = tts.vocoder
    vstate = voc.init_state(1, dev)
    mel = lm.unpatchify(x[:, None])  # (1, M, P)
    t_voc = timed(lambda: voc.step(mel, vstate))
    return {
        "prompt_features_ms": percentiles(t_prompt)["p50_ms"],
        "prefill_ms": percentiles(t_prefill)["p50_ms"],
        "lm_step_ms": percentiles(t_lm)["p50_ms"],
        "head_sample_ms": percentiles(t_head)["p50_ms"],
        "vocoder_per_patch_ms": percentiles(t_voc)["p50_ms"],
        "patch_ms": 1e3 * _patch_seconds(tts),
    }


def _patch_seconds(tts: Any) -> float:
    return tts.cfg.lm.patch_size * tts.mel_cfg.hop_length / tts.mel_cfg.sample_rate


def run_bench(
    model: Any,
    size: str,
    device: str,
    streams: int,
    threads: int,
    vocoder: str | None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Build (or load) the model and run the single- or multi-stream benchmark; a JSON-ready dict."""
    from voxar.bench import hardware
    from voxar.runtime.builders import load_or_build
    from voxar.vocode import resolve_device

    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    elif dev.type == "cpu":
        torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    tts = load_or_build(model, size, dev, vocoder)
    decode = kwargs.pop("decode", "dynamic")
    tts.set_decode(decode)
    lm_params = sum(p.numel() for p in tts.model.lm.parameters())  # counted before quantization packs them
    head_params = sum(p.numel() for p in tts.model.head(kwargs.get("head", "mf")).parameters())
    quantize = kwargs.pop("quantize", "none")
    tts.set_quantize(quantize)
    if streams > 1 and decode != "dynamic":
        raise VoxarConfigError("--decode static/cuda-graph is for a single stream (--streams 1)")
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    if streams > 1:
        kwargs.pop("first_chunk", None)
        kwargs.pop("overlap", None)
        kwargs.pop("repeats", None)
        kwargs.pop("warmup", None)
        result = bench_streams(tts, streams, **kwargs)
    else:
        kwargs.pop("rounds", None)
        result = bench_single(tts, **kwargs)
        result["profile"] = profile_components(tts, kwargs.get("head", "mf"), kwargs.get("steps"))
    voc_params = sum(p.numel() for p in tts.vocoder.parameters())
    return {
        "benchmark": "tts",
        "model": str(model) if model is not None else f"random {size} (speed does not depend on training)",
        "params_m": {"lm": lm_params / 1e6, "head": head_params / 1e6, "vocoder": voc_params / 1e6},
        "head": kwargs.get("head", "mf"),
        "steps": kwargs.get("steps"),
        "autocast": kwargs.get("autocast"),
        "decode": decode,
        "quantize": quantize,
        **result,
        "torch_threads": torch.get_num_threads(),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg()[0],
        "hardware": hardware(str(dev)),
    }
