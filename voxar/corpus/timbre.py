"""New speakers from base voices: WORLD analysis/resynthesis with F0 scaling and vocal-tract-length warping.

WORLD (pyworld, imported lazily) splits speech into F0 (dio + stonemask), a smooth spectral envelope (cheaptrick)
and band aperiodicity (d4c). :func:`world_transform` then

- multiplies F0 by ``f0_scale`` and stretches its excursions around the utterance's mean log-F0 by ``f0_range``;
- warps the frequency axis of the envelope (and of the aperiodicity) by ``vtl_alpha``: the new envelope at
  frequency ``f`` is the old one at ``f / alpha``, so every formant moves from ``F`` to ``alpha * F``. ``alpha > 1``
  mimics a shorter vocal tract (higher formants, child/female-like), ``alpha < 1`` a longer one. The warp is
  interpolated in the log-amplitude domain; beyond the old Nyquist the last bin is held;
- optionally adds ``breath`` (0-1) of aperiodicity, for a breathier voice.

Everything is deterministic: WORLD's synthesis noise generator is reseeded on every call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_PERIOD_MS = 5.0
F0_FLOOR_HZ = 50.0
F0_CEIL_HZ = 700.0


@dataclass(frozen=True)
class Timbre:
    """A fixed voice transform. ``f0_scale`` and ``vtl_alpha`` of 1.0 and ``f0_range`` 1.0, ``breath`` 0 = none."""

    f0_scale: float = 1.0
    vtl_alpha: float = 1.0
    f0_range: float = 1.0
    breath: float = 0.0

    @property
    def is_identity(self) -> bool:
        """True when the transform would only resynthesise (callers may then skip WORLD entirely)."""
        return self.f0_scale == 1.0 and self.vtl_alpha == 1.0 and self.f0_range == 1.0 and self.breath == 0.0


def _pyworld():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyworld imports the deprecated pkg_resources
        import pyworld

    return pyworld


def analyze(wav: np.ndarray, sr: int, *, frame_period: float = FRAME_PERIOD_MS):
    """WORLD features of ``wav`` ``(T,)``: ``(f0 (N,), sp (N, K), ap (N, K))`` with ``K = fft_size // 2 + 1``."""
    pw = _pyworld()
    x = np.ascontiguousarray(wav, dtype=np.float64)
    f0, t = pw.dio(x, sr, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ, frame_period=frame_period)
    f0 = pw.stonemask(x, f0, t, sr)
    sp = pw.cheaptrick(x, f0, t, sr, f0_floor=F0_FLOOR_HZ)
    ap = pw.d4c(x, f0, t, sr)
    return f0, sp, ap


def scale_f0(f0: np.ndarray, scale: float, range_scale: float = 1.0) -> np.ndarray:
    """F0 contour ``(N,)`` (0 = unvoiced) scaled by ``scale``, its log-excursions around the mean by ``range_scale``."""
    out = np.zeros_like(f0)
    voiced = f0 > 0
    if not voiced.any():
        return out
    logf = np.log(f0[voiced])
    mean = float(logf.mean())
    out[voiced] = np.exp(mean + range_scale * (logf - mean)) * scale
    return out


def warp_frequency(env: np.ndarray, alpha: float, *, log_domain: bool = True) -> np.ndarray:
    """Warp the frequency axis of ``env`` ``(N, K)`` (K bins, 0 to Nyquist) by ``alpha``: out[:, k] = env at k/alpha.

    Interpolation is linear between bins, in the log domain when ``log_domain`` (for power envelopes); bins that
    map beyond the top bin take its value. Returns ``(N, K)``.
    """
    if alpha <= 0:
        raise ValueError(f"vtl alpha must be > 0, got {alpha}")
    if alpha == 1.0:
        return env.copy()
    n_bins = env.shape[1]
    src = np.arange(n_bins, dtype=np.float64) / alpha  # (K,) source bin of each output bin
    lo = np.clip(np.floor(src).astype(np.int64), 0, n_bins - 1)
    hi = np.clip(lo + 1, 0, n_bins - 1)
    frac = np.clip(src - lo, 0.0, 1.0)[None, :]  # (1, K)
    vals = np.log(np.maximum(env, 1e-30)) if log_domain else env
    out = vals[:, lo] * (1.0 - frac) + vals[:, hi] * frac  # (N, K)
    return np.exp(out) if log_domain else out


def world_transform(
    wav: np.ndarray,
    sr: int,
    timbre: Timbre,
    *,
    frame_period: float = FRAME_PERIOD_MS,
) -> np.ndarray:
    """Apply ``timbre`` to ``wav`` ``(T,)`` at ``sr`` Hz by WORLD resynthesis; returns float32 ``(T,)`` (same length).

    The output level is not normalised (WORLD keeps it roughly); callers normalise afterwards.
    """
    pw = _pyworld()
    f0, sp, ap = analyze(wav, sr, frame_period=frame_period)
    f0 = scale_f0(f0, timbre.f0_scale, timbre.f0_range)
    if timbre.vtl_alpha != 1.0:
        sp = warp_frequency(sp, timbre.vtl_alpha)
        ap = np.clip(warp_frequency(ap, timbre.vtl_alpha, log_domain=False), 0.0, 1.0)
    if timbre.breath > 0:
        ap = np.clip(ap + timbre.breath * (1.0 - ap), 0.0, 1.0)
    y = pw.synthesize(
        np.ascontiguousarray(f0), np.ascontiguousarray(sp), np.ascontiguousarray(ap), sr, frame_period=frame_period
    )
    n = len(wav)
    y = y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))
    return np.ascontiguousarray(y, dtype=np.float32)


def median_f0(wav: np.ndarray, sr: int, *, frame_period: float = FRAME_PERIOD_MS) -> float:
    """Median F0 (Hz) over the voiced frames of ``wav`` ``(T,)`` (dio + stonemask); 0.0 when nothing is voiced."""
    pw = _pyworld()
    x = np.ascontiguousarray(wav, dtype=np.float64)
    f0, t = pw.dio(x, sr, f0_floor=F0_FLOOR_HZ, f0_ceil=F0_CEIL_HZ, frame_period=frame_period)
    f0 = pw.stonemask(x, f0, t, sr)
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if voiced.size else 0.0
