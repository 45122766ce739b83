"""``voxar tts``: zero-shot text-to-speech from the command line.

Registered by :mod:`voxar.cli` as ``app.command("tts")(tts_command)``. Only typer is imported at module level; torch
and the models are imported inside the function.

Text comes from ``--text`` or, without it, from stdin. The voice comes from ``--prompt ref.wav`` (transcript-free:
the reference encoder reads it) plus, optionally, ``--prompt-text`` (its transcript: prompt continuation). Output:
an audio file (format by extension) or WAV bytes on stdout with ``-o -``; logs go to stderr.

**Streaming** (``--stream``, implied by ``--play``): audio is written as it is generated -- a file that grows, a
streaming WAV (``--format wav``) or raw s16le PCM (``--format raw``) on stdout with ``-o -``, and/or the sound device
with ``--play [--output-device X]``. Text from stdin is read incrementally: speaking starts once the first segment is
complete (a sentence end, a clause break after 20-40 characters, or 200 characters; see
:mod:`voxar.runtime.textstream`), so another program can pipe tokens in. ``-v`` logs each chunk's latency.

Model: ``--model DIR`` or the packaged ``voxar/assets/models/tts`` when the installation has one (else a one-line
error). Vocoder: ``--vocoder DIR`` / ``--vocoder griffin-lim``, or the packaged vocoder when installed, else
Griffin-Lim with a warning. Every user error is a :class:`~voxar.errors.VoxarError` (one line, exit status 1).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)


def tts_command(
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Output audio file (.wav, .flac, ...) or '-' for stdout (see --format)."),
    ] = None,
    text: Annotated[str | None, typer.Option("--text", "-t", help="Text to speak (default: read stdin).")] = None,
    prompt: Annotated[
        Path | None,
        typer.Option(
            "--prompt", "-p", help="Reference recording of the target voice (0.5-30 s; default: the bundled voice)."
        ),
    ] = None,
    no_prompt: Annotated[
        bool, typer.Option("--no-prompt", help="No reference at all: the model's average voice.")
    ] = False,
    prompt_text: Annotated[
        str | None, typer.Option("--prompt-text", help="Transcript of --prompt (prompt continuation mode).")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="TTS model directory (default: the packaged model, if installed)."),
    ] = None,
    vocoder: Annotated[
        str | None,
        typer.Option(
            "--vocoder",
            help="Vocoder model directory or 'griffin-lim' (default: the packaged vocoder, else Griffin-Lim).",
        ),
    ] = None,
    head: Annotated[
        str | None,
        typer.Option(
            "--head",
            help="Generative head: fm (flow matching) or mf (mean flow; one step). Default: the model's default_head "
            "(config.yaml; the embedded model's is mf), with --stream/--play mf (real time on 2 CPU cores; FM 8 "
            "steps is not).",
        ),
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Sampling steps (default: the head's).")] = None,
    cfg: Annotated[float | None, typer.Option("--cfg", help="Guidance scale (default: the head's).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same audio).")] = 0,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature",
            min=0.0,
            max=2.0,
            help="Scale of the sampling noise, 0-2 (default: the model's; lower "
            "is steadier, 0 with FM and 1 step is the mean prediction).",
        ),
    ] = None,
    noise: Annotated[
        str | None,
        typer.Option(
            "--noise",
            help="Sampling noise: patch (a fresh draw per patch) or utterance (one draw per utterance: steady "
            "detail). Default: the model's.",
        ),
    ] = None,
    quantize: Annotated[
        str,
        typer.Option(
            "--quantize",
            help="none, or int8: int8 flow-head weights for faster CPU decoding (about 2x on the FM head).",
        ),
    ] = "none",
    device: Annotated[str, typer.Option("--device", help="cpu or cuda[:N].")] = "cpu",
    threads: Annotated[int, typer.Option(min=0, help="torch threads (0: torch's default).")] = 0,
    stream: Annotated[
        bool, typer.Option("--stream", help="Write audio as it is generated (file grows / stdout / --play).")
    ] = False,
    play: Annotated[bool, typer.Option("--play", help="Play through the sound device while generating.")] = False,
    output_device: Annotated[
        str | None, typer.Option("--output-device", help="Playback device (index or name substring).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="Stdout format with -o -: wav (streaming header) or raw.")] = (
        "wav"
    ),
    first_chunk: Annotated[int, typer.Option("--first-chunk", min=1, help="Patches in the first chunk.")] = 1,
    chunk: Annotated[int, typer.Option("--chunk", min=1, help="Patches per later chunk (40 ms each).")] = 4,
) -> None:
    """Speak TEXT in the voice of a short reference recording (zero-shot).

    With --stream (or --play) audio comes out while it is generated; text piped on stdin is spoken segment by
    segment as it arrives (a sentence end, or a clause break after 20-40 characters, starts a segment).
    """
    from voxar.errors import VoxarAudioError, VoxarConfigError, VoxarError, VoxarTextError

    if head is None and (stream or play):
        head = "mf"
    if head not in (None, "fm", "mf"):
        raise VoxarConfigError(f"--head: expected 'fm' or 'mf', got {head!r}")
    from voxar.models.quantize import check_mode

    check_mode(quantize)
    if output is None and not play:
        raise VoxarError("give -o FILE, -o - (stdout) or --play")
    if fmt not in ("wav", "raw"):
        raise VoxarConfigError(f"--format: expected 'wav' or 'raw', got {fmt!r}")
    if output == "-" and sys.stdout.isatty():
        raise VoxarError("-o -: refusing to write audio bytes to a terminal (redirect stdout or give a file name)")
    from voxar.audio.io import _WRITE_FORMATS

    if output not in (None, "-") and Path(output).suffix.lower() not in _WRITE_FORMATS:
        raise VoxarAudioError(f"{output}: unsupported extension; use one of {', '.join(_WRITE_FORMATS)} or '-'")
    from voxar.tts import DEFAULT_MODEL_DIR

    if model is None:
        if not DEFAULT_MODEL_DIR.is_dir():
            raise VoxarConfigError(
                f"no TTS model given and none packaged at {DEFAULT_MODEL_DIR}; pass --model DIR (a trained model dir)"
            )
        model = DEFAULT_MODEL_DIR
    streaming = stream or play
    if text is None:
        if sys.stdin.isatty():
            raise VoxarTextError("no --text given and nothing on stdin")
        if streaming:  # read incrementally: speak segment by segment as the text arrives
            return _stream(None, output, prompt, prompt_text, model, vocoder, head, steps, cfg, seed, device,
                           threads, play, output_device, fmt, first_chunk, chunk, temperature, noise,
                           quantize)  # fmt: skip
        text = sys.stdin.read()
    if not text.strip():
        raise VoxarTextError("text is empty or whitespace only; nothing to speak")
    if prompt_text is not None and prompt is None:
        raise VoxarTextError("--prompt-text needs --prompt (the recording it transcribes)")
    if play:  # a missing device or PortAudio is reported before anything else happens
        from voxar.devices import find_device

        find_device(output_device, "output")
    if no_prompt and prompt is not None:
        raise VoxarConfigError("--no-prompt and --prompt exclude each other")
    from voxar.tts import DEFAULT_VOICE

    if prompt is None and not no_prompt and DEFAULT_VOICE.is_file():
        prompt = DEFAULT_VOICE
        log.info("no --prompt: speaking in the bundled default voice (%s)", DEFAULT_VOICE.name)

    if streaming:
        return _stream(text, output, prompt, prompt_text, model, vocoder, head, steps, cfg, seed, device, threads,
                       play, output_device, fmt, first_chunk, chunk, temperature, noise, quantize)  # fmt: skip

    import torch

    from voxar.tts import TTS
    from voxar.vocode import resolve_device, write_output

    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    tts = TTS.from_pretrained(model, vocoder=vocoder, device=dev)
    tts.set_temperature(temperature)
    tts.set_noise(noise)
    tts.set_quantize(quantize)
    mode = "no prompt" if prompt is None else ("prompt continuation" if prompt_text else "reference encoder")
    head = head or tts.default_head
    log.info("synthesising %d characters with %s (%s head, %s)", len(text), model, head, mode)
    t0 = time.perf_counter()
    wav, sr = tts.synthesize(text, prompt, prompt_text, head=head, steps=steps, cfg=cfg, seed=seed)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t0
    seconds = max(len(wav), 1) / sr
    log.info("generated %.2f s of audio in %.2f s (RTF %.3f)", seconds, elapsed, elapsed / seconds)
    write_output(output, wav, sr)
    typer.echo(f"wrote {'<stdout>' if output == '-' else output} ({sr} Hz, {seconds:.2f} s)", err=True)


def _stdin_pieces() -> Iterator[str]:
    """Text pieces from stdin as they arrive (line by line; a pipe from another program)."""
    while line := sys.stdin.readline():
        yield line


def _stream(
    text: str | None,
    output: str | None,
    prompt: Path | None,
    prompt_text: str | None,
    model: Path,
    vocoder: str | None,
    head: str,
    steps: int | None,
    cfg: float | None,
    seed: int,
    device: str,
    threads: int,
    play: bool,
    output_device: str | None,
    fmt: str,
    first_chunk: int,
    chunk: int,
    temperature: float | None = None,
    noise: str | None = None,
    quantize: str = "none",
) -> None:
    """The streaming path of ``voxar tts``: engine -> sinks, one line per chunk at ``-v``."""
    import torch

    from voxar.errors import VoxarError
    from voxar.runtime.engine import StreamConfig, StreamingTTS
    from voxar.runtime.sinks import DeviceSink, FileSink, StdoutSink
    from voxar.tts import TTS
    from voxar.vocode import resolve_device

    if play:  # a missing device or PortAudio fails now, before the model is loaded
        from voxar.devices import find_device

        find_device(output_device, "output")
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    tts = TTS.from_pretrained(model, vocoder=vocoder, device=dev)
    tts.set_temperature(temperature)
    tts.set_noise(noise)
    tts.set_quantize(quantize)
    engine = StreamingTTS(
        tts,
        StreamConfig(first_chunk=first_chunk, chunk=chunk, head=head, steps=steps, cfg=cfg, seed=seed),  # type: ignore[arg-type]
    )
    if text is None:  # text arrives on stdin: get the first-call costs out of the way while waiting for it
        log.debug("warm-up: %.0f ms", engine.warmup(prompt, prompt_text))
    sr = tts.sample_rate
    sinks: list = []
    ok = False
    t0 = time.perf_counter()
    try:
        if play:
            sinks.append(DeviceSink(sr, output_device))
        if output == "-":
            sinks.append(StdoutSink(sr, fmt))
        elif output is not None:
            sinks.append(FileSink(output, sr))
        samples, first = 0, None
        for ch in engine.stream(text if text is not None else _stdin_pieces(), prompt, prompt_text):
            if len(ch.pcm) == 0:
                continue
            if first is None:
                first = ch.latency_ms
            log.debug(
                "chunk %d: %.0f ms of audio, ready at %.1f ms (compute %.1f ms, segment %d)",
                ch.index, 1e3 * ch.duration, ch.latency_ms, ch.compute_ms, ch.segment,
            )  # fmt: skip
            for sink in sinks:
                sink.write(ch.pcm)
            samples += len(ch.pcm)
        ok = True
    except KeyboardInterrupt:
        raise VoxarError("interrupted: the partial output was removed") from None
    finally:
        for sink in sinks:
            sink.close(ok)
    seconds = samples / sr
    elapsed = time.perf_counter() - t0
    log.info("first audio after %.1f ms; %.2f s of audio in %.2f s (RTF %.3f)", first or 0.0, seconds, elapsed,
             elapsed / max(seconds, 1e-9))  # fmt: skip
    where = ", ".join(x for x in ("<stdout>" if output == "-" else output, "device" if play else None) if x)
    typer.echo(f"streamed {seconds:.2f} s ({sr} Hz) to {where}; first audio after {first or 0.0:.0f} ms", err=True)
