"""Level measurement and normalisation of mono waveforms.

Levels are in dB relative to digital full scale (a full-scale sine has peak 0 dB and RMS about -3 dB).

:func:`loudness_db` is a *simplified* programme loudness: the gating of ITU-R BS.1770 (400 ms blocks with 75 %
overlap, an absolute gate at -70 dB and a relative gate 10 dB below the absolute-gated level) applied to plain mean
squares, **without** the K-weighting pre-filter and without the -0.691 dB LUFS offset. It is therefore not LUFS: it
tracks the level of the active (non-silent) parts of a recording, which is what TTS prompt and output normalisation
needs, but it weights bass and treble equally.

All functions take a numpy array or torch tensor ``(T,)`` (or ``(1, T)``) and return the same type, dtype and shape.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import numpy as np

from voxar.audio.io import check_waveform

log = logging.getLogger(__name__)

W = TypeVar("W")

BLOCK_SECONDS = 0.4
BLOCK_OVERLAP = 0.75
ABSOLUTE_GATE_DB = -70.0
RELATIVE_GATE_DB = -10.0


def _samples(wav: Any) -> np.ndarray:
    """Checked float64 numpy copy of ``wav`` flattened to ``(T,)`` (for measurement only)."""
    arr = check_waveform(wav)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]  # (1, T) -> (T,)
    if arr.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (T,) or (1, T), got {tuple(arr.shape)}")
    return arr.astype(np.float64)


def _peak(arr: np.ndarray) -> float:
    return float(np.max(np.abs(arr)))


def _db(power_or_amp: float, factor: float) -> float:
    return factor * float(np.log10(power_or_amp)) if power_or_amp > 0 else float("-inf")


def sample_peak_db(wav: Any) -> float:
    """Sample peak of ``wav`` ``(T,)`` in dBFS (``-inf`` for digital silence)."""
    return _db(_peak(_samples(wav)), 20.0)


def rms_db(wav: Any) -> float:
    """RMS level of ``wav`` ``(T,)`` over all samples in dBFS (``-inf`` for digital silence)."""
    x = _samples(wav)
    return _db(float(np.mean(x * x)), 10.0)


def loudness_db(wav: Any, sr: int) -> float:
    """Gated loudness of ``wav`` ``(T,)`` in dB (BS.1770 gating without K-weighting; see the module docstring).

    Signals shorter than one 400 ms block are measured as a single block. Returns ``-inf`` when no block passes
    the absolute gate (silence).
    """
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    x = _samples(wav)
    block = max(1, round(BLOCK_SECONDS * sr))
    hop = max(1, round(block * (1.0 - BLOCK_OVERLAP)))
    if x.size <= block:
        energies = np.array([np.mean(x * x)])
    else:
        sq = np.concatenate([[0.0], np.cumsum(x * x)])  # (T + 1,) running energy
        starts = np.arange(0, x.size - block + 1, hop)
        energies = (sq[starts + block] - sq[starts]) / block  # (n_blocks,) mean square per block
    with np.errstate(divide="ignore"):
        levels = 10.0 * np.log10(energies)
    kept = energies[levels > ABSOLUTE_GATE_DB]
    if kept.size == 0:
        return float("-inf")
    relative_gate = 10.0 * np.log10(np.mean(kept)) + RELATIVE_GATE_DB
    kept = energies[(levels > ABSOLUTE_GATE_DB) & (levels > relative_gate)]
    return _db(float(np.mean(kept)), 10.0)


def _scale(wav: W, gain: float) -> W:
    """``wav * gain`` keeping the container type and dtype (numpy array or torch tensor)."""
    if isinstance(wav, np.ndarray):
        return (wav * np.asarray(gain, dtype=wav.dtype)).astype(wav.dtype, copy=False)
    return wav * gain  # torch: a python float keeps the tensor's dtype


def peak_normalize(wav: W, peak_db: float = -1.0) -> W:
    """Scale ``wav`` ``(T,)`` so its sample peak is ``peak_db`` dBFS; digital silence is returned unchanged."""
    peak = _peak(_samples(wav))
    if peak == 0.0:
        return wav
    return _scale(wav, 10.0 ** (peak_db / 20.0) / peak)


def loudness_normalize(wav: W, sr: int, target_db: float = -23.0, *, max_peak_db: float = -1.0) -> W:
    """Scale ``wav`` ``(T,)`` so its gated loudness (:func:`loudness_db`) is ``target_db``.

    If that gain would push the sample peak above ``max_peak_db`` dBFS, the gain is lowered so the peak sits exactly
    at ``max_peak_db`` (no clipping, no distortion; the result is then quieter than ``target_db`` and a debug
    message says so). Silent input (nothing above the -70 dB gate) is returned unchanged.
    """
    x = _samples(wav)
    level = loudness_db(x, sr)
    if level == float("-inf"):
        return wav
    gain = 10.0 ** ((target_db - level) / 20.0)
    peak = _peak(x) * gain
    ceiling = 10.0 ** (max_peak_db / 20.0)
    if peak > ceiling:
        log.debug(
            "loudness target %.1f dB would put the peak at %.1f dBFS; limited to %.1f dBFS",
            target_db,
            _db(peak, 20.0),
            max_peak_db,
        )
        gain *= ceiling / peak
    return _scale(wav, gain)
