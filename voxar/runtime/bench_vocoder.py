"""Body of ``voxar bench vocoder``: streaming and full-pass speed of a vocoder, as a JSON-ready dict.

For each chunk size (in mel frames) a fresh stream vocodes ``seconds`` of random log-mel chunk by chunk through
``init_state`` / ``step`` / ``flush``; every call is timed (CUDA synchronised) after a separate warm-up stream, and the
result gives per-chunk compute percentiles, the chunk duration, the streaming real-time factor (total compute,
flush included, over the audio duration) and the algorithmic latency (frame lookahead + ISTFT hold-back). The full
pass is ``model(mel)`` on the whole input. Speed does not depend on training, so random weights are fine.
The result also records the torch thread count, the load average before and after (timings on a shared machine are
inflated) and, on CPU, the process CPU time next to the wall clock.

Legend: B batch (1 here), M mel bins, T mel frames, L samples.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from voxar.errors import VoxarConfigError
from voxar.vocode import device_clock, resolve_device

log = logging.getLogger(__name__)

WARMUP_CHUNKS = 10
FULL_PASS_REPEATS = 5


def parse_chunks(text: str) -> list[int]:
    """``"1,4,16"`` -> ``[1, 4, 16]``; anything but positive integers is a :class:`VoxarConfigError`."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as e:
        raise VoxarConfigError(f"--chunks: expected comma-separated positive integers, got {text!r}") from e
    if not sizes or any(s <= 0 for s in sizes):
        raise VoxarConfigError(f"--chunks: expected comma-separated positive integers, got {text!r}")
    return sizes


def _percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    from voxar.bench import percentiles

    return percentiles(list(values_ms))


def time_stream(model: Any, mel: torch.Tensor, chunk: int, device: torch.device) -> dict[str, Any]:
    """Stream ``mel (1, M, T)`` in chunks of ``chunk`` frames; per-call times and the totals.

    A warm-up stream of :data:`WARMUP_CHUNKS` chunks (and its flush) runs first and is not counted. Returns the
    chunk statistics (``p50_ms``, ``p95_ms``, ``mean_ms`` of wall-clock time over the ``step`` calls), ``rtf``
    (steps + flush over the audio duration) and the number of output samples, which must equal
    ``model.num_samples(T)``. On CPU it also gives the process CPU time (``cpu_p50_ms``, ``cpu_rtf``): on a shared
    machine the wall clock also counts the time other processes held the core, the CPU time does not.
    """
    clock = device_clock(device)
    frames = mel.shape[-1]
    hop, sr = model.cfg.hop_length, model.sample_rate
    wall_ms: list[float] = []
    cpu_ms: list[float] = []
    with torch.inference_mode():
        state = model.init_state(1, device)
        for i in range(WARMUP_CHUNKS):
            model.step(mel[..., i * chunk : (i + 1) * chunk], state)
        model.flush(state)
        state = model.init_state(1, device)
        samples = 0
        for start in range(0, frames + chunk, chunk):  # the last call is the flush
            t0, c0 = clock(), time.process_time()
            if start < frames:
                wav, state = model.step(mel[..., start : start + chunk], state)
            else:
                wav = model.flush(state)
            wall_ms.append((clock() - t0) * 1000)
            cpu_ms.append((time.process_time() - c0) * 1000)
            samples += 0 if wav is None else wav.shape[-1]
    audio_s = model.num_samples(frames) / sr
    row = {
        "chunk_frames": chunk,
        "chunk_ms": round(1000.0 * chunk * hop / sr, 3),
        "chunks": len(wall_ms) - 1,
        **_percentiles(wall_ms[:-1]),
        "flush_ms": round(wall_ms[-1], 4),
        "rtf": round(sum(wall_ms) / 1000 / audio_s, 6),
    }
    if device.type == "cpu":
        row["cpu_p50_ms"] = _percentiles(cpu_ms[:-1])["p50_ms"]
        row["cpu_rtf"] = round(sum(cpu_ms) / 1000 / audio_s, 6)
    row["samples"] = samples
    return row


def time_full_pass(model: Any, mel: torch.Tensor, device: torch.device) -> dict[str, float]:
    """``model(mel)`` once for warm-up, then :data:`FULL_PASS_REPEATS` timed calls: percentiles and RTF (p50);
    on CPU also the RTF of the median process CPU time (``cpu_rtf``)."""
    clock = device_clock(device)
    wall_ms, cpu_ms = [], []
    with torch.inference_mode():
        for i in range(FULL_PASS_REPEATS + 1):
            t0, c0 = clock(), time.process_time()
            model(mel)
            if i > 0:
                wall_ms.append((clock() - t0) * 1000)
                cpu_ms.append((time.process_time() - c0) * 1000)
    stats = _percentiles(wall_ms)
    audio_s = model.num_samples(mel.shape[-1]) / model.sample_rate
    out = {**stats, "rtf": round(stats["p50_ms"] / 1000 / audio_s, 6)}
    if device.type == "cpu":
        out["cpu_rtf"] = round(_percentiles(cpu_ms)["p50_ms"] / 1000 / audio_s, 6)
    return out


def build_model(
    model_dir: str | None, size: str | None, causal: bool | None, device: torch.device
) -> tuple[Any, dict[str, Any]]:
    """The vocoder to time and its description: a model directory, or a named size with random weights."""
    from voxar.models.vocoder import Vocoder, VocoderConfig

    if model_dir is not None and size is not None:
        raise VoxarConfigError("give either --model DIR or --size NAME, not both")
    if model_dir is not None:
        model = Vocoder.from_pretrained(model_dir, device=device)
        if causal is not None and causal != model.cfg.causal:
            build = "causal" if model.cfg.causal else "non-causal"
            raise VoxarConfigError(f"{model_dir}: holds a {build} vocoder; drop --causal/--non-causal")
        source = {"model": str(model_dir), "weights": "loaded"}
    else:
        size = size or "small"
        torch.manual_seed(0)
        model = Vocoder(VocoderConfig.named(size, causal=bool(causal))).to(device).eval()
        source = {"model": f"size:{size}", "weights": "random"}
    c = model.cfg
    info = {
        **source,
        "preset": c.preset,
        "causal": c.causal,
        "stream_mode": c.stream_mode,
        "dim": c.dim,
        "intermediate_dim": c.intermediate_dim,
        "num_layers": c.num_layers,
        "parameters": model.num_parameters(),
        "sample_rate": model.sample_rate,
        "hop_length": c.hop_length,
    }
    return model, info


def bench_vocoder(
    model_dir: str | None = None,
    size: str | None = None,
    causal: bool | None = None,
    device: str = "cpu",
    threads: int = 0,
    chunks: Sequence[int] = (1, 4, 16),
    seconds: float = 10.0,
    fused: bool = True,
) -> dict[str, Any]:
    """Run the benchmark and return the result (see the module docstring for what is measured).

    ``threads`` 0 means 1 intra-op thread on CPU (chunks of a few frames lose more to thread synchronisation than
    they gain, and on a shared machine so does the full pass) and torch's default on CUDA. ``fused=False`` times
    the reference (autograd-capable) step path instead of the fused inference path.
    """
    from voxar.bench import hardware

    dev = resolve_device(device)
    if seconds <= 0:
        raise VoxarConfigError(f"--seconds must be positive, got {seconds}")
    model, info = build_model(model_dir, size, causal, dev)
    model.fused_step = fused
    frames = max(1, round(seconds * model.sample_rate / model.cfg.hop_length))
    gen = torch.Generator().manual_seed(0)
    mel = (torch.randn(1, model.cfg.n_mels, frames, generator=gen) * 2.0 - 5.0).to(dev)  # log-mel-like levels
    default_threads = torch.get_num_threads()
    n_threads = threads if threads > 0 else (1 if dev.type == "cpu" else default_threads)
    load = [round(x, 2) for x in os.getloadavg()]

    torch.set_num_threads(n_threads)
    machine = hardware(str(dev))
    streaming = []
    for chunk in chunks:
        row = time_stream(model, mel, chunk, dev)
        if row["samples"] != model.num_samples(frames):
            raise RuntimeError(f"stream of {chunk}-frame chunks gave {row['samples']} samples, expected "
                               f"{model.num_samples(frames)}")  # fmt: skip
        row["algorithmic_latency_ms"] = round(model.latency_ms, 3)
        streaming.append(row)
        log.info("chunk %d: p50 %.3f ms, p95 %.3f ms, rtf %.4f", chunk, row["p50_ms"], row["p95_ms"], row["rtf"])
    full = time_full_pass(model, mel, dev)
    torch.set_num_threads(default_threads)
    hop_ms = 1000.0 * model.cfg.hop_length / model.sample_rate
    return {
        "benchmark": "vocoder",
        "seconds": round(frames * hop_ms / 1000, 3),
        "frames": frames,
        **machine,
        "load_average": {"before": load, "after": [round(x, 2) for x in os.getloadavg()]},
        **info,
        "step_path": "fused" if fused else "reference",
        "latency": {
            "lookahead_frames": model.lookahead,
            "lookahead_ms": round(model.lookahead * hop_ms, 3),
            "hold_back_samples": model.hold_back,
            "hold_back_ms": round(1000.0 * model.hold_back / model.sample_rate, 3),
            "algorithmic_ms": round(model.latency_ms, 3),
        },
        "streaming": streaming,
        "full_pass": full,
    }
