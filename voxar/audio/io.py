"""Reading, writing and resampling audio files.

Every waveform voxar handles is mono float32 in [-1, 1], shape ``(T,)``. :func:`load_audio` turns any file libsndfile
decodes (wav, flac, ogg/vorbis, mp3, ...) into that form, resampling with soxr's very-high-quality filter when asked.
Anything wrong with a file (missing, corrupt, empty, too long, NaN samples, silence) raises
:class:`~voxar.errors.VoxarAudioError` with a one-line message that starts with the file's name.
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from pathlib import Path
from typing import IO, Any

import numpy as np
import soundfile as sf
import soxr

from voxar.errors import VoxarAudioError

log = logging.getLogger(__name__)

STREAM_NAME = "<stream>"

# Output extension -> (libsndfile format, default subtype).
_WRITE_FORMATS: dict[str, tuple[str, str]] = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}

AudioSource = str | os.PathLike | IO[bytes]


def check_waveform(wav: Any, name: str = "<waveform>") -> np.ndarray:
    """Validate samples and return them as a numpy array (same shape, floating dtype kept).

    ``wav`` is a numpy array or torch tensor of any shape, e.g. ``(T,)`` or ``(1, T)``. Raises
    :class:`VoxarAudioError` naming ``name`` when it is empty, not floating point, or holds NaN/inf samples.
    """
    if hasattr(wav, "detach"):  # torch.Tensor, without importing torch here
        wav = wav.detach().cpu().numpy()
    arr = np.asarray(wav)
    if arr.size == 0:
        raise VoxarAudioError(f"{name}: zero-length audio (no samples)")
    if not np.issubdtype(arr.dtype, np.floating):
        raise VoxarAudioError(f"{name}: expected floating-point samples in [-1, 1], got dtype {arr.dtype}")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(arr.size - np.count_nonzero(finite))
        raise VoxarAudioError(f"{name}: {bad} of {arr.size} samples are NaN or infinite")
    return arr


def resample(wav: np.ndarray, orig_sr: int, sr: int) -> np.ndarray:
    """Resample ``wav`` ``(T,)`` (or ``(T, C)``) from ``orig_sr`` to ``sr`` Hz with soxr 'VHQ'.

    Returns float32 ``(T',)`` with ``T' ~= T * sr / orig_sr``; the input (as float32) when the rates are equal.
    """
    if orig_sr <= 0 or sr <= 0:
        raise ValueError(f"sample rates must be positive, got orig_sr={orig_sr}, sr={sr}")
    wav = np.ascontiguousarray(wav, dtype=np.float32)
    if orig_sr == sr:
        return wav
    return np.ascontiguousarray(soxr.resample(wav, orig_sr, sr, quality="VHQ"), dtype=np.float32)


def _source(path: AudioSource) -> tuple[Any, str]:
    """(what soundfile should open, display name); checks that a path exists and is a regular file."""
    if isinstance(path, (str, os.PathLike)):
        p = Path(path)
        name = str(p)
        if not p.exists():
            raise VoxarAudioError(f"{name}: file not found")
        if p.is_dir():
            raise VoxarAudioError(f"{name}: is a directory, not an audio file")
        return p, name
    if not hasattr(path, "read"):
        raise TypeError(f"expected a path or a binary file-like object, got {type(path).__name__}")
    seekable = getattr(path, "seekable", None)
    if seekable is None or not seekable():
        # libsndfile needs to seek: buffer a non-seekable stream in memory.
        return io.BytesIO(path.read()), STREAM_NAME
    return path, STREAM_NAME


def _describe(e: Exception) -> str:
    """soundfile's error without its own 'Error opening <path>:' prefix."""
    if isinstance(e, sf.LibsndfileError):
        return e.error_string.rstrip(".")
    return str(e).rstrip(".")


def duration(path: str | os.PathLike) -> float:
    """Length of an audio file in seconds, from its header (no samples are decoded)."""
    src, name = _source(path)
    try:
        info = sf.info(src)
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        raise VoxarAudioError(f"{name}: cannot read audio ({_describe(e)})") from e
    if info.samplerate <= 0:
        raise VoxarAudioError(f"{name}: invalid sample rate {info.samplerate}")
    return info.frames / info.samplerate


def load_audio(
    path: AudioSource,
    sr: int | None = None,
    *,
    max_seconds: float | None = 3600.0,
    require_speech: bool = False,
    silence_db: float = -60.0,
) -> tuple[np.ndarray, int]:
    """Load an audio file (or binary file-like object) as mono float32 ``(T,)``.

    Channels are averaged; the result is resampled to ``sr`` when given (soxr 'VHQ'). Returns ``(wav, sample_rate)``.
    The duration is checked against ``max_seconds`` from the header, before any sample is decoded. With
    ``require_speech``, audio whose peak is below ``silence_db`` dBFS is rejected as silent. Raises
    :class:`VoxarAudioError` (message starting with the file name) for any unusable file, ``ValueError`` for
    ``sr <= 0``.
    """
    if sr is not None and sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    src, name = _source(path)
    try:
        with sf.SoundFile(src) as f:
            orig_sr = int(f.samplerate)
            frames = int(f.frames)
            if orig_sr <= 0:
                raise VoxarAudioError(f"{name}: invalid sample rate {orig_sr}")
            if frames <= 0:
                raise VoxarAudioError(f"{name}: zero-length audio (no samples)")
            seconds = frames / orig_sr
            if max_seconds is not None and seconds > max_seconds:
                raise VoxarAudioError(
                    f"{name}: audio is {seconds:.1f} s long, more than the limit of {max_seconds:g} s"
                )
            data = f.read(dtype="float32", always_2d=True)  # (T, C)
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        raise VoxarAudioError(f"{name}: cannot read audio ({_describe(e)})") from e
    if data.shape[0] == 0:
        raise VoxarAudioError(f"{name}: zero-length audio (no samples)")
    wav = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]  # (T, C) -> (T,)
    wav = check_waveform(wav, name)
    if require_speech:
        peak = float(np.max(np.abs(wav)))
        peak_db = 20.0 * np.log10(peak) if peak > 0 else float("-inf")
        if peak_db < silence_db:
            raise VoxarAudioError(f"{name}: audio is silent (peak {peak_db:.1f} dBFS, below {silence_db:g} dBFS)")
    if sr is not None and sr != orig_sr:
        wav = resample(wav, orig_sr, sr)
        orig_sr = sr
    return np.ascontiguousarray(wav, dtype=np.float32), orig_sr


def _mono(wav: Any, name: str) -> np.ndarray:
    """``(T,)`` or ``(1, T)`` numpy/torch samples as a checked numpy ``(T,)``."""
    arr = check_waveform(wav, name)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]  # (1, T) -> (T,)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a waveform of shape (T,) or (1, T), got {tuple(arr.shape)}")
    return arr


def save_audio(path: str | os.PathLike, wav: Any, sr: int, *, subtype: str | None = None) -> None:
    """Write mono ``wav`` ``(T,)`` or ``(1, T)`` (numpy or torch) to ``path``; the extension picks the format.

    Supported: ``.wav`` and ``.flac`` (default subtype PCM_16), ``.ogg`` (vorbis) and ``.mp3`` (where libsndfile
    can encode it). Samples outside [-1, 1] are clipped with a logged warning; NaN/inf samples raise
    :class:`VoxarAudioError`. Parent directories are created; the file is written to a temporary name in the same
    directory and renamed into place, so readers never see a partial file.
    """
    if not isinstance(sr, (int, np.integer)) or isinstance(sr, bool) or sr <= 0:
        raise ValueError(f"sample rate must be a positive integer, got {sr!r}")
    path = Path(path)
    name = str(path)
    ext = path.suffix.lower()
    if ext not in _WRITE_FORMATS:
        raise VoxarAudioError(f"{name}: unsupported extension {ext!r}; use one of {', '.join(_WRITE_FORMATS)}")
    fmt, default_subtype = _WRITE_FORMATS[ext]
    if fmt not in sf.available_formats():
        raise VoxarAudioError(f"{name}: this libsndfile build cannot write {fmt}")
    arr = _mono(wav, name)
    peak = float(np.max(np.abs(arr)))
    if peak > 1.0:
        n_clipped = int(np.count_nonzero(np.abs(arr) > 1.0))
        log.warning("%s: clipped %d samples (peak %.3f) to [-1, 1]", name, n_clipped, peak)
        arr = np.clip(arr, -1.0, 1.0)
    if path.exists() and path.is_dir():
        raise VoxarAudioError(f"{name}: is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        sf.write(tmp, arr, int(sr), subtype=subtype or default_subtype, format=fmt)
        os.replace(tmp, path)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, OSError) as e:
        raise VoxarAudioError(f"{name}: cannot write audio ({_describe(e)})") from e
    finally:
        if tmp.exists():
            tmp.unlink()
