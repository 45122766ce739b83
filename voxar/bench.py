"""``voxar bench ...``: speed benchmarks that print JSON (targets are checked here, never in unit tests).

Each benchmark reports the hardware it ran on, warm-up excluded, with percentiles over repeated runs.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import typer

app = typer.Typer(help="Speed benchmarks (JSON on stdout or -o FILE).", no_args_is_help=True)


def hardware(device: str) -> dict[str, str | int]:
    """Name the machine a figure was measured on."""
    import os

    import torch

    info: dict[str, str | int] = {
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def percentiles(values_ms: list[float]) -> dict[str, float]:
    import numpy as np

    arr = np.asarray(values_ms, dtype=np.float64)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 4),
        "p95_ms": round(float(np.percentile(arr, 95)), 4),
        "mean_ms": round(float(arr.mean()), 4),
    }


def write_result(result: dict, output: Path | None) -> None:
    text = json.dumps(result, indent=2)
    if output is None:
        typer.echo(text)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
        typer.echo(f"wrote {output}", err=True)


@app.command()
def features(
    device: str = typer.Option("cpu", help="cpu or cuda[:N]."),
    preset: list[str] = typer.Option(["16k", "vocos24k"], help="Mel presets to time."),
    seconds: float = typer.Option(10.0, help="Audio length per call."),
    batch: int = typer.Option(1, help="Batch size."),
    repeats: int = typer.Option(20, help="Timed repetitions after warm-up."),
    threads: int = typer.Option(0, help="torch threads (0 = leave as is)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write JSON here instead of stdout."),
) -> None:
    """Log-mel extraction speed: milliseconds per call and real-time factor, per preset."""
    import torch

    from voxar.audio import LogMelSpectrogram, MelConfig
    from voxar.errors import VoxarError

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise VoxarError("CUDA requested but torch.cuda.is_available() is False")
    if threads > 0:
        torch.set_num_threads(threads)
    results = {}
    for name in preset:
        cfg = MelConfig.preset(name)
        mel = LogMelSpectrogram(cfg).to(device)
        wav = torch.randn(batch, int(seconds * cfg.sample_rate), device=device) * 0.1
        times = []
        with torch.inference_mode():
            for i in range(repeats + 3):
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                mel(wav)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                if i >= 3:
                    times.append((time.perf_counter() - t0) * 1000)
        stats = percentiles(times)
        stats["rtf"] = round(stats["p50_ms"] / 1000 / (seconds * batch), 6)
        results[name] = stats
    write_result(
        {"benchmark": "features", "seconds": seconds, "batch": batch, **hardware(device), "presets": results}, output
    )


@app.command()
def vocoder(
    model: Path | None = typer.Option(None, "--model", help="Vocoder model directory (default: random weights)."),
    size: str | None = typer.Option(None, "--size", help="Named size with random weights: tiny, small, vocos24k."),
    causal: bool | None = typer.Option(None, "--causal/--non-causal", help="Build (with --size; default non-causal)."),
    device: str = typer.Option("cpu", help="cpu or cuda[:N]."),
    threads: int = typer.Option(0, help="torch threads (0 = 1 on CPU, torch's default on CUDA)."),
    chunks: str = typer.Option("1,4,16", help="Comma-separated chunk sizes in mel frames."),
    seconds: float = typer.Option(10.0, help="Audio length streamed per chunk size."),
    reference: bool = typer.Option(False, "--reference", help="Time the reference step path, not the fused one."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write JSON here instead of stdout."),
) -> None:
    """Vocoder speed: per-chunk streaming compute (p50/p95 ms), streaming and full-pass RTF, latency.

    Without --model the weights are random (speed does not depend on training; the JSON says "weights": "random").
    """
    from voxar.runtime.bench_vocoder import bench_vocoder, parse_chunks

    result = bench_vocoder(
        model_dir=None if model is None else str(model),
        size=size,
        causal=causal,
        device=device,
        threads=threads,
        chunks=parse_chunks(chunks),
        seconds=seconds,
        fused=not reference,
    )
    write_result(result, output)


@app.command()
def tts(
    model: Path | None = typer.Option(None, "--model", help="TTS model directory (default: random weights, --size)."),
    size: str = typer.Option("small", "--size", help="Named size with random weights: tiny, small."),
    vocoder: str | None = typer.Option(
        None,
        "--vocoder",
        help="Vocoder dir or 'griffin-lim' (default: a random causal tiny vocoder, or with --model the packaged one).",
    ),
    device: str = typer.Option("cpu", help="cpu or cuda[:N]."),
    streams: int = typer.Option(1, "--streams", min=1, help="Concurrent streams (> 1: continuous batching)."),
    head: str = typer.Option("mf", help="Generative head: mf (mean flow) or fm (flow matching)."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Sampling steps (default: the head's)."),
    first_chunk: int = typer.Option(1, "--first-chunk", min=1, help="Patches in the first emitted chunk."),
    chunk: int = typer.Option(4, "--chunk", min=1, help="Patches per later chunk (and per vocoder call)."),
    seconds: float = typer.Option(4.0, help="Audio length per utterance (fixed)."),
    repeats: int = typer.Option(10, help="Timed utterances (single stream)."),
    rounds: int = typer.Option(2, help="Request lifetimes timed (--streams > 1)."),
    overlap: bool | None = typer.Option(
        None,
        "--overlap/--no-overlap",
        show_default=False,
        help="LM in a producer thread (single stream). Default: on CUDA, and on CPU when a core is free beyond "
        "--threads.",
    ),
    autocast: str | None = typer.Option(None, "--autocast", help="bf16 or fp16 for the LM and head (CUDA)."),
    decode: str = typer.Option(
        "dynamic", "--decode", help="LM stepping: dynamic, static (fixed-shape KV cache) or cuda-graph (single stream)."
    ),
    quantize: str = typer.Option("none", "--quantize", help="none, or int8 flow-head weights (CPU)."),
    threads: int = typer.Option(0, help="torch threads (0 = 1 on CPU, torch's default on CUDA)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write JSON here instead of stdout."),
) -> None:
    """Streaming TTS speed: first-audio latency p50/p95 (prompt features included, warm model), RTF, per-chunk
    compute, peak memory; with --streams N, N concurrent streams by continuous batching and whether they are real
    time. Without --model the weights are random (speed does not depend on training)."""
    from voxar.errors import VoxarConfigError
    from voxar.runtime.bench_tts import run_bench

    if head not in ("fm", "mf"):
        raise VoxarConfigError(f"--head: expected 'fm' or 'mf', got {head!r}")
    if autocast not in (None, "bf16", "fp16"):
        raise VoxarConfigError(f"--autocast: expected bf16 or fp16, got {autocast!r}")
    result = run_bench(
        model, size, device, streams, threads, vocoder, seconds=seconds, repeats=repeats, rounds=rounds,
        first_chunk=first_chunk, chunk=chunk, head=head, steps=steps, overlap=overlap, autocast=autocast,
        decode=decode, quantize=quantize,
    )  # fmt: skip
    write_result(result, output)


@app.command()
def vc(
    model: Path | None = typer.Option(None, "--model", help="VC model dir (default: random tiny models)."),
    content_model: Path | None = typer.Option(None, "--content-model", help="Content encoder dir."),
    vocoder: Path | None = typer.Option(None, "--vocoder", help="Vocoder dir."),
    device: str = typer.Option("cpu", help="cpu or cuda[:N]."),
    threads: int = typer.Option(0, help="torch threads (0 = 1 on CPU)."),
    block_ms: float = typer.Option(20.0, "--block-ms", help="Audio block per step (ms)."),
    lookahead_ms: float = typer.Option(0.0, "--lookahead-ms", help="Content-encoder lookahead (ms)."),
    seconds: float = typer.Option(10.0, help="Audio converted."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write JSON here instead of stdout."),
) -> None:
    """Streaming voice conversion speed: measured algorithmic latency, per-block compute p50/p95, RTF."""
    from voxar.runtime.bench_vc import bench_vc

    write_result(bench_vc(model, content_model, vocoder, device, threads, block_ms, lookahead_ms, seconds), output)
