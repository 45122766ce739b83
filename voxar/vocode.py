"""``voxar vocode``: analysis-synthesis through a vocoder, offline or streamed chunk by chunk.

Registered by :mod:`voxar.cli` as ``app.command("vocode")(vocode_command)``. Only typer is imported at module level;
torch, numpy and the models are imported inside the functions.

Input: an audio file (anything libsndfile reads; loaded mono at the vocoder's rate and turned into log-mel with the
vocoder's preset) or a ``.npy`` log-mel array ``(n_mels, T)`` (e.g. from ``voxar data dump``). Output: a WAV file
(or FLAC/OGG/MP3 by extension), or WAV bytes on stdout with ``-o -``. Logs and the per-chunk report go to stderr.

Vocoder: ``--model DIR`` (a :class:`~voxar.models.vocoder.Vocoder` model directory), ``--griffin-lim``, or by
default the packaged model directory ``voxar/assets/models/vocoder`` when the installation has one, else Griffin-Lim
with a warning. Every user error is a :class:`~voxar.errors.VoxarError` (one line on stderr, exit status 1).

Legend: M mel bins, T mel frames, L samples.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import numpy as np
    import torch

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "models" / "vocoder"


# ----------------------------------------------------------------------------------------------------- helpers
def resolve_device(device: str) -> torch.device:
    """``cpu`` or ``cuda[:N]`` as a torch device; anything else, or CUDA without a GPU, is a :class:`VoxarError`."""
    import torch

    from voxar.errors import VoxarError

    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise VoxarError(f"--device: unknown device {device!r} (use cpu or cuda[:N])") from e
    if dev.type not in ("cpu", "cuda"):
        raise VoxarError(f"--device: unsupported device {device!r} (use cpu or cuda[:N])")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VoxarError(f"--device {device}: CUDA requested but torch.cuda.is_available() is False")
    return dev


def device_clock(device: torch.device) -> Callable[[], float]:
    """A clock in seconds that first waits for queued GPU work, so each reading covers finished compute."""
    import torch

    if device.type != "cuda":
        return time.perf_counter

    def clock() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()

    return clock


def load_vocoder(
    model_dir: Path | None, griffin_lim: bool, preset: str | None, device: torch.device
) -> tuple[Any, str, str]:
    """``(vocoder, name of its mel preset, description)`` for the options of ``voxar vocode``.

    ``preset`` (a mel preset name) rejects a model directory made for another preset; without a model it picks
    the Griffin-Lim analysis (default ``16k``). Without ``model_dir`` and ``griffin_lim``: the packaged model
    directory if there is one, else Griffin-Lim with a warning.
    """
    from voxar.audio import MelConfig
    from voxar.errors import VoxarConfigError

    if model_dir is not None and griffin_lim:
        raise VoxarConfigError("give either --model DIR or --griffin-lim, not both")
    if preset is not None:
        MelConfig.preset(preset)  # unknown names fail here, with the list of valid ones
    if model_dir is None and not griffin_lim:
        if DEFAULT_MODEL_DIR.is_dir():
            model_dir = DEFAULT_MODEL_DIR
        else:
            log.warning(
                "no --model given and no packaged vocoder at %s: falling back to Griffin-Lim (lower quality)",
                DEFAULT_MODEL_DIR,
            )
    if model_dir is None:
        from voxar.models.griffinlim import GriffinLimVocoder

        preset = preset or "16k"
        gl = GriffinLimVocoder(MelConfig.preset(preset)).to(device).eval()
        return gl, preset, f"Griffin-Lim ({gl.n_iter} iterations, preset {preset})"
    from voxar.models.vocoder import Vocoder, describe

    model = Vocoder.from_pretrained(model_dir, device=device, preset=preset)
    return model, model.cfg.preset, f"{model_dir}: {describe(model)}"


def load_npy_mel(path: Path, mel_cfg: Any, preset: str) -> np.ndarray:
    """A log-mel ``.npy`` file as float32 ``(M, T)`` (``(1, M, T)`` is accepted); checks bins, dtype, values."""
    import numpy as np

    from voxar.errors import VoxarDataError

    if not path.is_file():
        raise VoxarDataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise VoxarDataError(f"{path}: not a .npy file (no NumPy header)")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise VoxarDataError(f"{path}: cannot read the .npy array ({reason})") from e
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.floating):
        raise VoxarDataError(f"{path}: expected a floating-point log-mel array, got dtype {getattr(arr, 'dtype', '?')}")
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]  # (1, M, T) -> (M, T)
    if arr.ndim != 2:
        raise VoxarDataError(f"{path}: expected a log-mel array of shape (n_mels, T), got shape {arr.shape}")
    if arr.shape[0] != mel_cfg.n_mels:
        raise VoxarDataError(
            f"{path}: expected {mel_cfg.n_mels} mel bins (preset {preset}), got {arr.shape[0]} (shape {arr.shape})"
        )
    if arr.shape[1] == 0:
        raise VoxarDataError(f"{path}: log-mel array has no frames (shape {arr.shape})")
    finite = np.isfinite(arr)
    if not finite.all():
        raise VoxarDataError(f"{path}: {arr.size - int(finite.sum())} of {arr.size} values are NaN or infinite")
    return np.ascontiguousarray(arr, dtype=np.float32)


def load_audio_mel(path: Path, mel_cfg: Any) -> tuple[np.ndarray, int]:
    """An audio file loaded mono at the preset's rate -> its log-mel ``(M, T)`` and the number of samples."""
    from voxar.audio import load_audio, log_mel
    from voxar.errors import VoxarAudioError

    wav, _ = load_audio(path, mel_cfg.sample_rate)
    try:
        return log_mel(wav, mel_cfg), len(wav)
    except ValueError as e:
        raise VoxarAudioError(f"{path}: {e}") from e


def run_offline(vocoder: Any, mel: torch.Tensor) -> torch.Tensor:
    """Whole input at once: ``mel (1, M, T)`` -> ``wav (1, L)``."""
    import torch

    with torch.inference_mode():
        return vocoder(mel)


def run_stream(
    vocoder: Any, mel: torch.Tensor, chunk_frames: int, frame_ms: float = 10.0
) -> tuple[torch.Tensor, list[float]]:
    """``mel (1, M, T)`` through ``init_state`` / ``step`` / ``flush`` in chunks of ``chunk_frames`` frames.

    Returns ``wav (1, L)`` and the compute time of every call in ms (the flush last); each call is logged at DEBUG
    (``frame_ms``: the duration of one mel frame, for the log).
    """
    import torch

    clock = device_clock(mel.device)
    parts, times_ms = [], []
    with torch.inference_mode():
        state = vocoder.init_state(1, mel.device)
        for i, start in enumerate(range(0, mel.shape[-1], chunk_frames)):
            t0 = clock()
            wav, state = vocoder.step(mel[..., start : start + chunk_frames], state)
            times_ms.append((clock() - t0) * 1000)
            parts.append(wav)
            n = min(chunk_frames, mel.shape[-1] - start)
            log.debug(
                "chunk %d: %d frames (%.0f ms of audio) -> %d samples, compute %.2f ms",
                i, n, n * frame_ms, wav.shape[-1], times_ms[-1],
            )  # fmt: skip
        t0 = clock()
        tail = vocoder.flush(state)
        times_ms.append((clock() - t0) * 1000)
        if tail is not None:
            parts.append(tail)
        log.debug("flush: %d samples in %.2f ms", 0 if tail is None else tail.shape[-1], times_ms[-1])
    return torch.cat(parts, dim=-1), times_ms


def write_output(output: str, wav: np.ndarray, sr: int) -> None:
    """Write mono ``wav (L,)``: to a file (format by extension, see :func:`voxar.audio.save_audio`) or, for
    ``"-"``, as 16-bit WAV bytes to stdout (clipped to [-1, 1] with a warning, as files are)."""
    import io

    import numpy as np
    import soundfile as sf

    from voxar.audio import check_waveform, save_audio

    if output != "-":
        save_audio(output, wav, sr)
        return
    wav = check_waveform(wav, "<stdout>")
    peak = float(np.max(np.abs(wav)))
    if peak > 1.0:
        log.warning("<stdout>: clipped %d samples (peak %.3f) to [-1, 1]", int(np.sum(np.abs(wav) > 1.0)), peak)
        wav = np.clip(wav, -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, wav, sr, format="WAV", subtype="PCM_16")
    sys.stdout.buffer.write(buf.getvalue())
    sys.stdout.buffer.flush()


# ----------------------------------------------------------------------------------------------------- command
def vocode_command(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="IN", help="Audio file (wav, flac, ogg, mp3, ...) or a log-mel .npy array of shape (n_mels, T)."
        ),
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Output audio file (.wav, .flac, ...) or '-' for WAV on stdout.")
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Vocoder model directory. Default: the packaged vocoder (voxar/assets/models/vocoder) if this "
            "installation has one, else Griffin-Lim with a warning.",
        ),
    ] = None,
    griffin_lim: Annotated[bool, typer.Option("--griffin-lim", help="Use Griffin-Lim (no neural model).")] = False,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Mel preset of the input (16k, vocos24k). Default: the model's own (16k for Griffin-Lim); a model "
            "made for another preset is an error."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda[:N].")] = "cpu",
    stream: Annotated[bool, typer.Option("--stream", help="Vocode chunk by chunk through the streaming API.")] = False,
    chunk_frames: Annotated[int, typer.Option("--chunk-frames", min=1, help="Mel frames per chunk with --stream.")] = 4,
    threads: Annotated[
        int, typer.Option(min=0, help="torch threads (0: 1 for --stream on CPU, else torch's default).")
    ] = 0,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Report every chunk's compute time on stderr.")
    ] = 0,
) -> None:
    """Resynthesise audio (audio -> log-mel -> vocoder) or vocode a log-mel .npy array.

    Audio input is loaded mono at the vocoder's rate and analysed with its mel preset; the output keeps its length.

    Without --model: the packaged vocoder if this installation ships one, else Griffin-Lim with a warning.
    """
    import numpy as np
    import torch

    from voxar.audio import MelConfig
    from voxar.audio.io import _WRITE_FORMATS
    from voxar.errors import VoxarAudioError, VoxarError

    # output problems fail before any work
    if output == "-" and sys.stdout.isatty():
        raise VoxarError("-o -: refusing to write WAV bytes to a terminal (redirect stdout or give a file name)")
    if output != "-" and Path(output).suffix.lower() not in _WRITE_FORMATS:
        raise VoxarAudioError(f"{output}: unsupported extension; use one of {', '.join(_WRITE_FORMATS)} or '-'")
    if verbose:
        logging.getLogger("voxar").setLevel(logging.DEBUG)
    dev = resolve_device(device)
    if threads or (stream and dev.type == "cpu"):
        torch.set_num_threads(threads or 1)
    vocoder, preset_name, name = load_vocoder(model, griffin_lim, preset, dev)
    mel_cfg = MelConfig.preset(preset_name)
    if input_path.suffix.lower() == ".npy":
        mel_np, n_in = load_npy_mel(input_path, mel_cfg, preset_name), None
    else:
        mel_np, n_in = load_audio_mel(input_path, mel_cfg)
    sr, hop = mel_cfg.sample_rate, mel_cfg.hop_length
    mel = torch.from_numpy(mel_np)[None].to(dev)  # (M, T) -> (1, M, T)
    log.info("vocoding %d frames (%.2f s) with %s", mel.shape[-1], mel.shape[-1] * hop / sr, name)
    clock = device_clock(dev)
    t0 = clock()
    if stream:
        wav, times_ms = run_stream(vocoder, mel, chunk_frames, 1000.0 * hop / sr)
    else:
        wav, times_ms = run_offline(vocoder, mel), []
    elapsed = clock() - t0
    out = wav[0].float().cpu().numpy()  # (1, L) -> (L,)
    if n_in is not None:  # audio in: as many samples out ('center' heads stop up to a hop short: zero-pad)
        out = np.pad(out[:n_in], (0, max(0, n_in - len(out))))
    seconds = max(len(out), 1) / sr
    if stream:
        steps = np.asarray(times_ms[:-1])
        latency_ms = 1000.0 * (vocoder.lookahead * hop + vocoder.hold_back) / sr
        log.info(
            "streamed %d chunks of %d frames (%.0f ms): compute p50 %.2f ms, p95 %.2f ms, flush %.2f ms; RTF %.3f; "
            "algorithmic latency %.1f ms",
            len(steps), chunk_frames, 1000.0 * chunk_frames * hop / sr, np.percentile(steps, 50),
            np.percentile(steps, 95), times_ms[-1], sum(times_ms) / 1000 / seconds, latency_ms,
        )  # fmt: skip
    else:
        log.info("vocoded in %.3f s (RTF %.3f)", elapsed, elapsed / seconds)
    write_output(output, out, sr)
    typer.echo(f"wrote {'<stdout>' if output == '-' else output} ({sr} Hz, {len(out) / sr:.2f} s)", err=True)
