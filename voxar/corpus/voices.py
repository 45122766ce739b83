"""Base voices from the Debian speech synthesisers ``espeak-ng`` and ``flite``, rendered to clean 16 kHz audio.

A :class:`VoiceSpec` names an engine, a voice and its prosody settings; :func:`synthesize` runs the engine binary
in a temporary directory, reads its wav, resamples to ``sr`` (16 kHz by default), trims leading/trailing silence
(keeping ~100 ms) and normalises the level (gated loudness to -23 dB, then a -1 dBFS peak ceiling).

espeak-ng: English accents (``en-us``, ``en-gb``, ``en-gb-scotland``, ...) combined with a variant
(``m1``..``m8``, ``f1``..``f5``, ``klatt``..``klatt6``, ...); speed in words per minute (``-s``), pitch ``-p``
(0-99) and pitch range via SSML ``<prosody range="N%">`` (espeak-ng 1.51 has no ``-P`` flag).
flite: voices ``kal16``, ``awb``, ``rms``, ``slt`` (``kal`` is the 8 kHz diphone voice and is mapped to ``kal16``;
``awb_time`` only speaks clock times and is not offered); ``duration_stretch`` and ``int_f0_target_mean``/
``int_f0_target_stddev`` (ignored by some voices, e.g. ``rms``).
MBROLA voices are not installed and festival's voices are reserved for evaluation: neither is used here.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape

import numpy as np

from voxar.errors import VoxarError

log = logging.getLogger(__name__)

Engine = Literal["espeak", "flite"]

SAMPLE_RATE = 16000
TARGET_LOUDNESS_DB = -23.0
PEAK_CEILING_DB = -1.0
KEEP_SILENCE_S = 0.1

ESPEAK_BINARY = "espeak-ng"
FLITE_BINARY = "flite"

# English accents of espeak-ng (no MBROLA voices): name -> short tag used in speaker ids.
ESPEAK_ACCENTS: dict[str, str] = {
    "en-us": "enus",
    "en-gb": "engb",
    "en-gb-scotland": "ensc",
    "en-gb-x-rp": "enrp",
    "en-gb-x-gbclan": "enln",
    "en-gb-x-gbcwmd": "enwm",
    "en-029": "en29",
    "en-us-nyc": "enny",
}
# The name given to ``-v``: espeak-ng ignores a ``+variant`` after ``en-gb`` (it resolves the language, not the
# voice file), so British English is addressed by its voice file name ``en``.
ESPEAK_VOICE_ARG: dict[str, str] = {"en-gb": "en"}
# espeak-ng voice variants (``espeak-ng --voices=variant``) that sound like distinct adult speakers.
ESPEAK_MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8")
ESPEAK_FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")
ESPEAK_KLATT_VARIANTS = ("klatt", "klatt2", "klatt3", "klatt4", "klatt6")
ESPEAK_NAMED_VARIANTS = ("adam", "edward", "john", "max", "quincy", "robert", "steph", "linda", "annie", "belinda")
ESPEAK_DEFAULT_WPM = 175

# flite voices -> (name passed to -voice, nominal gender). ``kal`` is served by its 16 kHz build.
FLITE_VOICES: dict[str, tuple[str, str]] = {
    "kal": ("kal16", "m"),
    "awb": ("awb", "m"),
    "rms": ("rms", "m"),
    "slt": ("slt", "f"),
}

SUBPROCESS_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class VoiceSpec:
    """One engine voice with fixed prosody settings.

    ``engine``: ``"espeak"`` or ``"flite"``; ``voice``: an espeak accent (``en-us``) or a flite voice (``slt``);
    ``variant``: espeak variant (``m3``, ``f2``, ``klatt4``; empty for the accent's default, unused by flite);
    ``speed``: speaking-rate factor (1.0 = engine default: espeak 175 wpm, flite duration_stretch 1.0);
    ``pitch``: espeak ``-p`` (0-99, default 50) or flite target mean F0 in Hz (0 = the voice's own);
    ``pitch_range``: espeak pitch range in percent of the default (100) or flite F0 stddev in Hz (0 = own).
    """

    engine: Engine
    voice: str
    variant: str = ""
    speed: float = 1.0
    pitch: float = 50.0
    pitch_range: float = 100.0

    def __post_init__(self) -> None:
        if self.engine == "espeak":
            if self.voice not in ESPEAK_ACCENTS:
                raise VoxarError(f"espeak voice {self.voice!r}: not one of {', '.join(ESPEAK_ACCENTS)}")
        elif self.engine == "flite":
            if self.voice not in FLITE_VOICES:
                raise VoxarError(f"flite voice {self.voice!r}: not one of {', '.join(FLITE_VOICES)}")
        else:
            raise VoxarError(f"unknown synthesis engine {self.engine!r} (expected 'espeak' or 'flite')")
        if not 0.3 <= self.speed <= 3.0:
            raise VoxarError(f"voice speed {self.speed}: must lie in [0.3, 3.0]")

    def command(self, text: str, out_wav: Path) -> tuple[list[str], bytes | None]:
        """``(argv, stdin bytes)`` that make the engine write ``text`` to ``out_wav``."""
        if self.engine == "espeak":
            voice = ESPEAK_VOICE_ARG.get(self.voice, self.voice) + (f"+{self.variant}" if self.variant else "")
            wpm = int(round(ESPEAK_DEFAULT_WPM * self.speed))
            pitch = int(round(min(max(self.pitch, 0), 99)))
            rng = int(round(min(max(self.pitch_range, 0), 400)))
            ssml = f'<speak><prosody range="{rng}%">{escape(text)}</prosody></speak>'
            argv = [ESPEAK_BINARY, "-v", voice, "-s", str(wpm), "-p", str(pitch), "-m", "-w", str(out_wav), "--stdin"]
            return argv, ssml.encode("utf-8")
        name = FLITE_VOICES[self.voice][0]
        argv = [FLITE_BINARY, "-voice", name, "--setf", f"duration_stretch={1.0 / self.speed:.4f}"]
        if self.pitch > 0:
            argv += ["--setf", f"int_f0_target_mean={self.pitch:.2f}"]
        if self.pitch_range > 0:
            argv += ["--setf", f"int_f0_target_stddev={self.pitch_range:.2f}"]
        txt = out_wav.with_suffix(".txt")
        txt.write_text(text + "\n", encoding="utf-8")
        argv += ["-f", str(txt), "-o", str(out_wav)]
        return argv, None


def require_binary(name: str) -> str:
    """Absolute path of executable ``name``; raises :class:`VoxarError` with an install hint when it is missing."""
    path = shutil.which(name)
    if path is None:
        raise VoxarError(
            f"{name}: synthesis binary not found on PATH; install the Debian package "
            f"(apt-get install {name}) or run `make sysdeps`"
        )
    return path


def engine_binary(engine: Engine) -> str:
    """The executable an engine needs (checked with :func:`require_binary`)."""
    return require_binary(ESPEAK_BINARY if engine == "espeak" else FLITE_BINARY)


def trim_silence(
    wav: np.ndarray, sr: int, *, threshold_db: float = -40.0, keep_s: float = KEEP_SILENCE_S, frame_s: float = 0.01
) -> np.ndarray:
    """Cut leading/trailing silence of ``wav`` ``(T,)``, keeping ``keep_s`` seconds before/after the speech.

    A 10 ms frame is speech when its RMS is within ``threshold_db`` of the loudest frame. Returns a view ``(T',)``;
    all-silent input is returned unchanged.
    """
    frame = max(1, int(round(frame_s * sr)))
    n = len(wav) // frame
    if n == 0:
        return wav
    frames = wav[: n * frame].astype(np.float64).reshape(n, frame)  # (T,) -> (n_frames, frame)
    rms = np.sqrt(np.mean(frames * frames, axis=1) + 1e-20)
    level = 20.0 * np.log10(rms)
    active = np.flatnonzero(level > level.max() + threshold_db)
    if active.size == 0 or rms.max() < 1e-6:
        return wav
    keep = int(round(keep_s * sr))
    start = max(0, active[0] * frame - keep)
    end = min(len(wav), (active[-1] + 1) * frame + keep)
    return wav[start:end]


def postprocess(wav: np.ndarray, orig_sr: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample ``wav`` ``(T,)`` to ``sr``, trim silence, normalise loudness to -23 dB with a -1 dBFS peak ceiling.

    Returns float32 ``(T',)``.
    """
    from voxar.audio import loudness_normalize, resample

    wav = resample(np.asarray(wav, dtype=np.float32), orig_sr, sr)
    wav = trim_silence(wav, sr)
    wav = loudness_normalize(wav, sr, target_db=TARGET_LOUDNESS_DB, max_peak_db=PEAK_CEILING_DB)
    return np.ascontiguousarray(wav, dtype=np.float32)


def render(text: str, spec: VoiceSpec) -> tuple[np.ndarray, int]:
    """Run the engine binary on ``text``; returns the raw engine output ``(wav (T,), sample_rate)``.

    Raises :class:`VoxarError` when the binary is missing, fails, or writes no audio.
    """
    from voxar.audio import load_audio

    text = " ".join(text.split())
    if not text:
        raise VoxarError("cannot synthesise empty text")
    engine_binary(spec.engine)
    with tempfile.TemporaryDirectory(prefix="voxar-tts-") as tmp:
        out = Path(tmp) / "out.wav"
        argv, stdin = spec.command(text, out)
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=SUBPROCESS_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as e:
            raise VoxarError(f"{argv[0]}: timed out after {SUBPROCESS_TIMEOUT_S:g} s on {text[:40]!r}") from e
        if proc.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            detail = err[-1] if err else f"exit status {proc.returncode}"
            raise VoxarError(f"{argv[0]} ({spec.voice}{'+' + spec.variant if spec.variant else ''}): {detail}")
        wav, sr = load_audio(out)
    return wav, sr


def synthesize(text: str, spec: VoiceSpec, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``text`` spoken by ``spec`` as clean mono float32 ``(T,)`` at ``sr`` Hz (see :func:`postprocess`)."""
    wav, orig_sr = render(text, spec)
    return postprocess(wav, orig_sr, sr)


def available_engines() -> dict[str, bool]:
    """Which engine binaries are on PATH: ``{"espeak": bool, "flite": bool}``."""
    return {"espeak": shutil.which(ESPEAK_BINARY) is not None, "flite": shutil.which(FLITE_BINARY) is not None}
