"""Where streamed audio goes: a growing file, stdout (streaming WAV or raw PCM) or a sound device.

Every sink takes float32 mono chunks ``(n,)`` in [-1, 1] through :meth:`write` and is closed with :meth:`close`
(``ok=False`` after an error or interruption). All of them write as they receive, so a consumer downstream (a
player reading the pipe, a file watcher) gets audio while synthesis goes on, and a blocking write (a full pipe, a
sound card playing in real time) holds the engine back instead of letting audio pile up (backpressure).

- :class:`FileSink`: the file grows chunk by chunk (format by extension, via soundfile); the header is finalised on
  close. After a failure the partial file is deleted (never a silently truncated output).
- :class:`StdoutSink`: ``fmt="wav"`` writes a streaming WAV header (data size unknown: ``0xFFFFFFFF``, which players
  and ``sox``/``ffmpeg`` read until end of stream) then 16-bit PCM; ``fmt="raw"`` writes bare s16le samples.
- :class:`DeviceSink`: plays through sounddevice (PortAudio) on ``device`` (index or name substring).
"""

from __future__ import annotations

import logging
import struct
import sys
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from voxar.errors import VoxarAudioError

log = logging.getLogger(__name__)


def pcm16(chunk: np.ndarray) -> bytes:
    """Float32 ``(n,)`` -> little-endian 16-bit PCM bytes (clipped to [-1, 1])."""
    return (np.clip(chunk, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def streaming_wav_header(sample_rate: int, channels: int = 1) -> bytes:
    """A 44-byte PCM16 WAV header whose RIFF and data sizes are ``0xFFFFFFFF`` (length unknown while streaming)."""
    block = 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate, sample_rate * block, block, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + (struct.pack("<I", 0xFFFFFFFF))
    )


class StdoutSink:
    """Streaming WAV (``fmt="wav"``) or raw s16le (``fmt="raw"``) on a binary stream (stdout by default)."""

    def __init__(self, sample_rate: int, fmt: str = "wav", stream: BinaryIO | None = None) -> None:
        if fmt not in ("wav", "raw"):
            raise VoxarAudioError(f"stdout format must be 'wav' or 'raw', got {fmt!r}")
        self.out = stream if stream is not None else sys.stdout.buffer
        self.samples = 0
        if fmt == "wav":
            self.out.write(streaming_wav_header(sample_rate))
            self.out.flush()

    def write(self, chunk: np.ndarray) -> None:
        self.out.write(pcm16(chunk))
        self.out.flush()
        self.samples += len(chunk)

    def close(self, ok: bool = True) -> None:
        self.out.flush()


class FileSink:
    """A file that grows as chunks arrive (format by extension); deleted again if the stream fails."""

    def __init__(self, path: str | Path, sample_rate: int) -> None:
        import soundfile as sf

        from voxar.audio.io import _WRITE_FORMATS

        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in _WRITE_FORMATS:
            raise VoxarAudioError(f"{path}: unsupported extension; use one of {', '.join(_WRITE_FORMATS)}")
        if not self.path.parent.is_dir():
            raise VoxarAudioError(f"{path}: directory {self.path.parent} does not exist")
        subtype = "PCM_16" if ext in (".wav", ".flac") else None
        self.file = sf.SoundFile(self.path, "w", samplerate=sample_rate, channels=1, subtype=subtype)
        self.samples = 0

    def write(self, chunk: np.ndarray) -> None:
        self.file.write(np.clip(chunk, -1.0, 1.0))
        self.file.flush()
        self.samples += len(chunk)

    def close(self, ok: bool = True) -> None:
        self.file.close()
        if not ok:
            self.path.unlink(missing_ok=True)
            log.warning("%s: removed the partial output (the stream did not finish)", self.path)


class DeviceSink:
    """Plays chunks through a sounddevice output stream (blocking writes: real-time pacing and backpressure)."""

    def __init__(self, sample_rate: int, device: str | int | None = None, block_ms: float = 20.0) -> None:
        from voxar.devices import VoxarDeviceError, find_device, import_sounddevice

        sd = import_sounddevice()
        self.device = find_device(device, "output")
        self.underflows = 0
        try:
            self.stream: Any = sd.OutputStream(
                samplerate=sample_rate, channels=1, dtype="float32", device=self.device,
                blocksize=int(sample_rate * block_ms / 1000),
            )  # fmt: skip
            self.stream.start()
        except Exception as e:  # PortAudio errors are plain exceptions
            raise VoxarDeviceError(f"cannot open output device {device!r} at {sample_rate} Hz: {e}") from e
        self.samples = 0

    def write(self, chunk: np.ndarray) -> None:
        if len(chunk) == 0:
            return
        underflow = self.stream.write(np.ascontiguousarray(chunk, dtype=np.float32)[:, None])
        self.underflows += int(bool(underflow))
        self.samples += len(chunk)

    def close(self, ok: bool = True) -> None:
        try:
            if ok:
                self.stream.stop()  # plays what is queued
            else:
                self.stream.abort()
        finally:
            self.stream.close()
        if self.underflows:
            log.warning("playback: %d output underflow(s) (the device ran dry between chunks)", self.underflows)
