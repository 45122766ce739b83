"""``voxar tts``: zero-shot text-to-speech from the command line.

Registered by :mod:`voxar.cli` as ``app.command("tts")(tts_command)``. Only typer is imported at module level; torch
and the models are imported inside the function.

Text comes from ``--text`` or, without it, from stdin. The voice comes from ``--prompt ref.wav`` (transcript-free:
the reference encoder reads it) plus, optionally, ``--prompt-text`` (its transcript: prompt continuation). Output:
an audio file (format by extension) or WAV bytes on stdout with ``-o -``; logs go to stderr.

Model: ``--model DIR`` or the packaged ``voxar/assets/models/tts`` when the installation has one (else a one-line
error). Vocoder: ``--vocoder DIR`` / ``--vocoder griffin-lim``, or the packaged vocoder when installed, else
Griffin-Lim with a warning. Every user error is a :class:`~voxar.errors.VoxarError` (one line, exit status 1).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)


def tts_command(
    output: Annotated[
        str, typer.Option("--output", "-o", help="Output audio file (.wav, .flac, ...) or '-' for WAV on stdout.")
    ],
    text: Annotated[str | None, typer.Option("--text", "-t", help="Text to speak (default: read stdin).")] = None,
    prompt: Annotated[
        Path | None, typer.Option("--prompt", "-p", help="Reference recording of the target voice (0.5-30 s).")
    ] = None,
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
    head: Annotated[str, typer.Option("--head", help="Generative head: fm (flow matching) or mf (mean flow).")] = "fm",
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="Sampling steps (default: the head's).")] = None,
    cfg: Annotated[float | None, typer.Option("--cfg", help="Guidance scale (default: the head's).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same audio).")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda[:N].")] = "cpu",
    threads: Annotated[int, typer.Option(min=0, help="torch threads (0: torch's default).")] = 0,
) -> None:
    """Speak TEXT in the voice of a short reference recording (zero-shot)."""
    from voxar.errors import VoxarAudioError, VoxarConfigError, VoxarError, VoxarTextError

    if head not in ("fm", "mf"):
        raise VoxarConfigError(f"--head: expected 'fm' or 'mf', got {head!r}")
    if output == "-" and sys.stdout.isatty():
        raise VoxarError("-o -: refusing to write WAV bytes to a terminal (redirect stdout or give a file name)")
    from voxar.audio.io import _WRITE_FORMATS

    if output != "-" and Path(output).suffix.lower() not in _WRITE_FORMATS:
        raise VoxarAudioError(f"{output}: unsupported extension; use one of {', '.join(_WRITE_FORMATS)} or '-'")
    from voxar.tts import DEFAULT_MODEL_DIR

    if model is None:
        if not DEFAULT_MODEL_DIR.is_dir():
            raise VoxarConfigError(
                f"no TTS model given and none packaged at {DEFAULT_MODEL_DIR}; pass --model DIR (a trained model dir)"
            )
        model = DEFAULT_MODEL_DIR
    if text is None:
        if sys.stdin.isatty():
            raise VoxarTextError("no --text given and nothing on stdin")
        text = sys.stdin.read()
    if not text.strip():
        raise VoxarTextError("text is empty or whitespace only; nothing to speak")
    if prompt_text is not None and prompt is None:
        raise VoxarTextError("--prompt-text needs --prompt (the recording it transcribes)")

    import torch

    from voxar.tts import TTS
    from voxar.vocode import resolve_device, write_output

    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    tts = TTS.from_pretrained(model, vocoder=vocoder, device=dev)
    mode = "no prompt" if prompt is None else ("prompt continuation" if prompt_text else "reference encoder")
    log.info("synthesising %d characters with %s (%s head, %s)", len(text), model, head, mode)
    t0 = time.perf_counter()
    wav, sr = tts.synthesize(text, prompt, prompt_text, head=head, steps=steps, cfg=cfg, seed=seed)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t0
    seconds = max(len(wav), 1) / sr
    log.info("generated %.2f s of audio in %.2f s (RTF %.3f)", seconds, elapsed, elapsed / seconds)
    write_output(output, wav, sr)
    typer.echo(f"wrote {'<stdout>' if output == '-' else output} ({sr} Hz, {seconds:.2f} s)", err=True)
