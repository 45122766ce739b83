"""`voxar audio ...`: inspect and convert audio files with the same loader every model uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Inspect and convert audio files (any format libsndfile reads).", no_args_is_help=True)


@app.command()
def info(
    files: Annotated[list[Path], typer.Argument(help="Audio files.")],
    require_speech: Annotated[bool, typer.Option(help="Treat all-silent audio as an error.")] = True,
    max_seconds: Annotated[float, typer.Option(help="Longest accepted duration.")] = 3600.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file on stdout.")] = False,
) -> None:
    """Check that files load as voxar would use them; print rate, duration, peak and loudness.

    Each unusable file gets one line on stderr naming it and the problem; the exit status is 1 if any failed.
    """
    import soundfile as sf

    from voxar.audio import load_audio, loudness_db
    from voxar.audio.level import sample_peak_db
    from voxar.errors import VoxarError

    failed = 0
    for path in files:
        try:
            wav, sr = load_audio(path, max_seconds=max_seconds, require_speech=require_speech)
            channels = sf.info(str(path)).channels
        except VoxarError as e:
            typer.echo(f"voxar: error: {e}", err=True)
            failed += 1
            continue
        row = {
            "path": str(path),
            "sample_rate": sr,
            "channels": channels,
            "seconds": round(len(wav) / sr, 3),
            "peak_db": round(sample_peak_db(wav), 2),
            "loudness_db": round(loudness_db(wav, sr), 2),
        }
        if as_json:
            typer.echo(json.dumps(row))
        else:
            typer.echo(
                f"{row['path']}: {sr} Hz, {channels} ch, {row['seconds']:.2f} s, "
                f"peak {row['peak_db']:.1f} dBFS, loudness {row['loudness_db']:.1f} dB"
            )
    if failed:
        raise typer.Exit(1)


@app.command()
def convert(
    src: Annotated[Path, typer.Argument(help="Input audio file.")],
    dst: Annotated[Path, typer.Argument(help="Output file (.wav, .flac, .ogg, .mp3).")],
    sr: Annotated[int | None, typer.Option("--sr", help="Resample to this rate (Hz).")] = None,
    loudness: Annotated[float | None, typer.Option(help="Normalise loudness to this level (dB).")] = None,
    peak: Annotated[float | None, typer.Option(help="Normalise the peak to this level (dBFS).")] = None,
) -> None:
    """Convert to mono at a given rate, optionally level-normalised."""
    from voxar.audio import load_audio, loudness_normalize, peak_normalize, save_audio

    wav, rate = load_audio(src, sr)
    if loudness is not None:
        wav = loudness_normalize(wav, rate, loudness)
    if peak is not None:
        wav = peak_normalize(wav, peak)
    save_audio(dst, wav, rate)
    typer.echo(f"wrote {dst} ({rate} Hz, {len(wav) / rate:.2f} s)", err=True)
