"""``voxar vc``: voice conversion of a file (``--source``) or live from the microphone (``--live``).

Registered by :mod:`voxar.cli`. Only typer is imported at module level.

Both modes run the same streaming pipeline (:mod:`voxar.vc`). Settings:

- ``--block-ms`` (default 20): audio block per device call and per pipeline step (file mode: the streaming block);
- ``--lookahead-ms`` (default 0): future context the content encoder may use; it picks the largest encoder chunk
  whose lookahead fits (0 ms: one encoder frame = 20 ms chunks, no lookahead).
- The algorithmic latency is *measured* on the pipeline (:meth:`voxar.vc.VCPipeline.latency`) and printed: block +
  mel window (20 ms) + content lookahead + the VC chunk fill + vocoder hold-back (15 ms with the causal vocoder).

File mode writes the output atomically after the whole file is converted, and checks its length equals the input's:
never a truncated file. A source at another rate or with several channels is mixed down and resampled (logged).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)


def _set_lookahead(content: object, lookahead_ms: float) -> int:
    """Largest content-encoder chunk (encoder frames) whose lookahead fits ``lookahead_ms``; returns it."""
    best = 1
    for c in range(1, 17):
        if 10.0 * content.lookahead_for(c) <= lookahead_ms + 1e-9:  # type: ignore[attr-defined]
            best = c
    content.set_chunk(chunk_size=best)  # type: ignore[attr-defined]
    return best


def vc_command(
    target: Annotated[Path, typer.Option("--target", "-t", help="Reference recording of the target voice (>= 1 s).")],
    source: Annotated[Path | None, typer.Option("--source", "-s", help="Input recording (file mode).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Converted output file (file mode).")] = None,
    live: Annotated[bool, typer.Option("--live", help="Convert the microphone to the speakers in real time.")] = False,
    model: Annotated[Path | None, typer.Option("--model", help="VC model directory (default: packaged).")] = None,
    content_model: Annotated[
        Path | None, typer.Option("--content-model", help="Content encoder directory (default: packaged).")
    ] = None,
    vocoder: Annotated[Path | None, typer.Option("--vocoder", help="Vocoder directory (default: packaged).")] = None,
    input_device: Annotated[str | None, typer.Option("--input-device", help="Capture device (index or name).")] = None,
    output_device: Annotated[
        str | None, typer.Option("--output-device", help="Playback device (index or name).")
    ] = None,
    block_ms: Annotated[float, typer.Option("--block-ms", min=1.0, help="Audio block per step (ms).")] = 20.0,
    lookahead_ms: Annotated[
        float, typer.Option("--lookahead-ms", min=0.0, help="Future context for the content encoder (ms).")
    ] = 0.0,
    samplerate: Annotated[
        int | None, typer.Option("--samplerate", help="Device sample rate (default: the model's, 16000).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", min=0.0, help="Live: stop after this many seconds.")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Sampling steps (default: the model's).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same audio).")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda[:N].")] = "cpu",
    threads: Annotated[int, typer.Option(min=0, help="torch threads (0: 1 for --live, else torch's default).")] = 0,
) -> None:
    """Convert speech to the voice of a short target recording: a file (--source, -o) or live (--live)."""
    from voxar.errors import VoxarConfigError

    if live == (source is not None):
        raise VoxarConfigError("give either --source IN.wav -o OUT.wav (file mode) or --live")
    if source is not None and output is None:
        raise VoxarConfigError("file mode needs -o OUT.wav")
    if live:  # devices are checked before any model is loaded
        from voxar.devices import find_device

        in_dev, out_dev = find_device(input_device, "input"), find_device(output_device, "output")

    import torch

    from voxar.vc import VoiceConverter
    from voxar.vocode import resolve_device

    if threads or live:
        torch.set_num_threads(threads or 1)
    conv = VoiceConverter.from_pretrained(model, content_model, vocoder, device=resolve_device(device))
    chunk = _set_lookahead(conv.content, lookahead_ms)
    tgt = conv.prepare_target(target)
    pipe = conv.pipeline(tgt, seed=seed, steps=steps)
    sr = conv.sample_rate
    block = max(1, int(round(sr * block_ms / 1000)))
    lat = pipe.latency(block)
    log.info("content chunk %d encoder frames; algorithmic latency %.1f ms worst, %.1f ms mean", chunk,
             lat["worst_ms"], lat["mean_ms"])  # fmt: skip
    if live:
        _live(pipe, sr, in_dev, out_dev, block_ms, samplerate, duration, lat)
        return
    assert source is not None and output is not None
    _file(conv, pipe, tgt, source, output, block, seed, steps)


def _file(conv: object, pipe: object, tgt: object, source: Path, output: Path, block: int, seed: int,
          steps: int | None) -> None:  # fmt: skip
    import soundfile as sf

    from voxar.audio import load_audio, save_audio
    from voxar.audio.io import _WRITE_FORMATS
    from voxar.errors import VoxarAudioError

    if output.suffix.lower() not in _WRITE_FORMATS:
        raise VoxarAudioError(f"{output}: unsupported extension; use one of {', '.join(_WRITE_FORMATS)}")
    sr = conv.sample_rate  # type: ignore[attr-defined]
    try:
        info = sf.info(str(source))
        if info.samplerate != sr or info.channels != 1:
            log.warning("%s: %d Hz, %d channel(s): mixed down to mono and resampled to %d Hz%s", source,
                        info.samplerate, info.channels, sr,
                        " (no content above 4 kHz)" if info.samplerate <= 8000 else "")  # fmt: skip
    except RuntimeError:
        pass  # load_audio gives the error message
    wav, _ = load_audio(source, sr, require_speech=True)
    t0 = time.perf_counter()
    # the streaming pipeline over the whole file in one step: the same samples as any block size, less overhead
    out = conv.convert(wav, tgt, seed=seed, steps=steps)  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - t0
    if len(out) != len(wav):
        raise VoxarAudioError(f"internal error: converted {len(out)} samples for {len(wav)} in; nothing written")
    save_audio(output, out, sr)
    seconds = len(wav) / sr
    log.info("converted %.2f s in %.2f s (RTF %.3f)", seconds, elapsed, elapsed / seconds)
    typer.echo(f"wrote {output} ({sr} Hz, {seconds:.2f} s)", err=True)


def _live(pipe: object, sr: int, in_dev: int | None, out_dev: int | None, block_ms: float, samplerate: int | None,
          duration: float | None, lat: dict) -> None:  # fmt: skip
    from voxar.runtime.live import run_live

    typer.echo(
        f"live voice conversion: block {block_ms:g} ms, algorithmic latency {lat['worst_ms']:.1f} ms "
        f"(worst; mean {lat['mean_ms']:.1f} ms) + device buffers. Ctrl-C to stop.",
        err=True,
    )
    last = [time.perf_counter()]

    def progress(stats: object) -> None:
        now = time.perf_counter()
        if now - last[0] >= 2.0:
            last[0] = now
            s = stats.summary()  # type: ignore[attr-defined]
            p95, n_over, n_under = s["compute_ms"]["p95_ms"], s["overflows"], s["underflows"]
            log.info("%.1f s: compute p95 %.1f ms per %.0f ms block, %d overflow(s), %d underflow(s)",
                     s["seconds_in"], p95, s["block_ms"], n_over, n_under)  # fmt: skip

    stats = run_live(pipe, sr, input_device=in_dev, output_device=out_dev, block_ms=block_ms, samplerate=samplerate,
                     duration=duration, on_block=progress)  # fmt: skip
    summary = {"algorithmic_latency_ms": lat, **stats.summary()}
    typer.echo(json.dumps(summary), err=True)
    if stats.overflows or stats.underflows:
        log.warning("%d input overflow(s), %d output underflow(s)", stats.overflows, stats.underflows)
