"""Spectral distances between a generated utterance and its reference recording: MCD (with DTW) and log-mel L1.

**Mel-cepstral distortion (MCD)**, in dB, lower is better (0 for identical signals):

1. Both signals are resampled to 16 kHz and analysed with WORLD (``pyworld``): ``dio`` + ``stonemask`` for F0 and
   ``cheaptrick`` for the smoothed power-spectral envelope ``P(w)``, every 5 ms, FFT size 1024 (513 bins).
2. Envelope -> mel-cepstrum of order 24 (:func:`sp_to_mcep`): the real cepstrum of the log *amplitude* envelope,
   ``r = irfft(log P) / 2``, is folded into the one-sided (minimum-phase) form ``c(0) = r(0)``,
   ``c(m) = 2 r(m)`` (``0 < m < N/2``), ``c(N/2) = r(N/2)``, so that ``log|H(w)| = sum_m c(m) cos(m w)``. It is then
   frequency-warped by the first-order all-pass ``z~^-1 = (z^-1 - alpha) / (1 - alpha z^-1)`` with ``alpha = 0.42``
   (the usual approximation of the mel scale at 16 kHz) using the Oppenheim-Johnson recursion
   (:func:`freqt`), and truncated to ``c~(0..24)``. This is the usual "sp2mc" conversion of SPTK-based
   toolkits, so values are comparable with MCDs computed from WORLD envelopes at 16 kHz with alpha 0.42 (other
   toolkits' numbers still differ with their silence handling and alignment).
3. ``c~(0)`` (frame energy) is excluded; frames are compared on ``c~(1..24)``.
4. The two sequences are aligned with dynamic time warping (:func:`dtw_path`; plain O(N*M) DP with the symmetric
   steps (1,0), (0,1), (1,1), on the Euclidean distance of the 24-d vectors; refused above 25 M cells, i.e. about
   25 s per side, to bound memory).
5. Aligned pairs in which *both* frames are silent are dropped. A frame is silent when its envelope energy
   ``10 log10(mean_w P(w))`` is more than 40 dB below the loudest frame of its own utterance.
6. ``MCD = mean over the remaining aligned pairs of (10 / ln 10) * sqrt(2 * sum_{m=1}^{24} (c~_a(m) - c~_b(m))^2)``.

DTW forgives timing differences, so MCD measures spectral-envelope (timbre/phonetic) mismatch, not duration.

**log-mel L1** (:func:`logmel_l1`): mean absolute difference of the two natural-log mel spectrograms (voxar's
``"16k"`` preset, 80 bands, 10 ms hop), frame by frame *without* alignment -- only defined when the frame counts
match within one frame (e.g. vocoder copy-synthesis or voice conversion that keeps the timing); ``None`` otherwise.

``pyworld`` is imported only when MCD is computed (its import needs ``pkg_resources``, i.e. setuptools < 81).
"""

from __future__ import annotations

import functools
import logging
import warnings
from typing import Any

import numpy as np

from voxar.errors import VoxarAudioError, VoxarError

log = logging.getLogger(__name__)

MCD_SAMPLE_RATE = 16000
MCEP_ORDER = 24
MCEP_ALPHA = 0.42
FRAME_PERIOD_MS = 5.0
SILENCE_DB = 40.0  # a frame this far below its utterance's loudest frame is silent
MAX_DTW_CELLS = 25_000_000  # two float64 (N, M) matrices: ~400 MB
MCD_SCALE = 10.0 / np.log(10.0) * np.sqrt(2.0)  # per-frame MCD = MCD_SCALE * Euclidean distance
_ENVELOPE_FLOOR = 1e-20  # power floor before the log (WORLD's own floor on digital silence is ~1e-17)


def _import_pyworld() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pkg_resources.*")
            import pyworld
    except ImportError as e:
        raise VoxarError(f"MCD needs the pyworld package ({e}); install it with: pip install 'voxar[eval]'") from e
    return pyworld


def mcd_tool_name() -> str:
    """Name/version/settings of the MCD pipeline (imports pyworld: raises VoxarError when it is missing)."""
    import importlib.metadata

    _import_pyworld()
    version = importlib.metadata.version("pyworld")
    return (
        f"pyworld {version} (dio+stonemask+cheaptrick, {FRAME_PERIOD_MS:g} ms) + voxar sp_to_mcep/freqt "
        f"(order {MCEP_ORDER}, alpha {MCEP_ALPHA}) + DTW"
    )


def world_envelope(wav: np.ndarray, sr: int = MCD_SAMPLE_RATE) -> np.ndarray:
    """WORLD CheapTrick power envelope of ``wav`` ``(T,)`` at ``sr`` -> float64 ``(frames, fft_size // 2 + 1)``.

    One frame every :data:`FRAME_PERIOD_MS` ms (F0 from DIO refined by StoneMask).
    """
    pw = _import_pyworld()
    x = np.ascontiguousarray(wav, dtype=np.float64)
    f0, times = pw.dio(x, sr, frame_period=FRAME_PERIOD_MS)
    f0 = pw.stonemask(x, f0, times, sr)
    return np.asarray(pw.cheaptrick(x, f0, times, sr), dtype=np.float64)


@functools.lru_cache(maxsize=8)
def _freqt_matrix(n_in: int, order: int, alpha: float) -> np.ndarray:
    """Linear map of :func:`freqt`: float64 ``(order + 1, n_in)`` with ``warped = M @ cepstrum``.

    Built by running the recursion on all ``n_in`` unit vectors at once (the recursion is linear).
    """
    return _freqt_recursion(np.eye(n_in), order, alpha)


def _freqt_recursion(c: np.ndarray, order: int, alpha: float) -> np.ndarray:
    """Oppenheim-Johnson all-pass warping of cepstra ``c`` ``(n_in, B)`` (columns) -> ``(order + 1, B)``.

    Feeding ``c(n_in - 1), ..., c(0)`` through a cascade of all-pass sections: with ``g`` the state before a step,
    ``g'(0) = c(n) + alpha g(0)``, ``g'(1) = (1 - alpha^2) g(0) + alpha g(1)``,
    ``g'(m) = g(m - 1) + alpha (g(m) - g'(m - 1))`` for ``m >= 2``.
    """
    n_in, batch = c.shape
    beta = 1.0 - alpha * alpha
    g = np.zeros((order + 1, batch), dtype=np.float64)
    for n in range(n_in - 1, -1, -1):
        prev = g.copy()
        g[0] = c[n] + alpha * prev[0]
        if order >= 1:
            g[1] = beta * prev[0] + alpha * prev[1]
        for m in range(2, order + 1):
            g[m] = prev[m - 1] + alpha * (prev[m] - g[m - 1])
    return g


def freqt(c: np.ndarray, order: int = MCEP_ORDER, alpha: float = MCEP_ALPHA) -> np.ndarray:
    """Warp minimum-phase cepstra ``c`` ``(..., n_in)`` onto the all-pass (mel) frequency scale -> ``(..., order+1)``.

    ``alpha = 0`` only truncates/zero-pads. The result ``c~`` satisfies ``sum_m c~(m) cos(m w~) ~= sum_n c(n)
    cos(n w)`` with ``w~ = w + 2 atan(alpha sin w / (1 - alpha cos w))`` (exact for ``order -> infinity``).
    """
    c = np.asarray(c, dtype=np.float64)
    mat = _freqt_matrix(c.shape[-1], int(order), float(alpha))  # (order+1, n_in)
    return c @ mat.T  # (..., n_in) @ (n_in, order+1) -> (..., order+1)


def sp_to_mcep(sp: np.ndarray, order: int = MCEP_ORDER, alpha: float = MCEP_ALPHA) -> np.ndarray:
    """Power envelope ``sp`` ``(frames, K)`` (``K = N/2 + 1`` bins) -> mel-cepstrum ``(frames, order + 1)``.

    See the module docstring (step 2) for the cepstrum convention.
    """
    sp = np.asarray(sp, dtype=np.float64)
    n_bins = sp.shape[-1]
    fft_size = 2 * (n_bins - 1)
    r = 0.5 * np.fft.irfft(np.log(np.maximum(sp, _ENVELOPE_FLOOR)), n=fft_size, axis=-1)  # (frames, N)
    c = r[..., :n_bins].copy()  # (frames, N/2 + 1): the cepstrum is even, keep quefrencies 0..N/2
    c[..., 1 : n_bins - 1] *= 2.0  # fold the negative quefrencies onto the positive ones (minimum phase)
    return freqt(c, order, alpha)


def mel_cepstrum(wav: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mcep, energy_db)`` of ``wav`` ``(T,)`` at ``sr``: ``(frames, 25)`` mel-cepstra at 16 kHz and ``(frames,)``
    envelope energy in dB (used for the silence decision)."""
    from voxar.audio import check_waveform, resample

    x = check_waveform(np.asarray(wav), "MCD input")
    if x.ndim != 1:
        raise ValueError(f"MCD input: expected a mono waveform (T,), got shape {tuple(x.shape)}")
    x = resample(x, int(sr), MCD_SAMPLE_RATE)
    if not np.any(x):
        raise VoxarAudioError("MCD input: the audio is digital silence")
    sp = world_envelope(x, MCD_SAMPLE_RATE)  # (frames, 513)
    energy_db = 10.0 * np.log10(np.maximum(sp.mean(axis=1), _ENVELOPE_FLOOR))
    return sp_to_mcep(sp), energy_db


def _pairwise_distance(a: np.ndarray, b: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` ``(N, D)`` and ``b`` ``(M, D)`` -> ``(N, M)``.

    Differences are formed explicitly (not via ``|a|^2 + |b|^2 - 2ab``), so equal frames are exactly 0 apart;
    ``chunk`` rows at a time bound the ``(chunk, M, D)`` temporary.
    """
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.float64)
    for start in range(0, a.shape[0], chunk):
        diff = a[start : start + chunk, None, :] - b[None, :, :]  # (chunk, M, D)
        out[start : start + chunk] = np.sqrt(np.einsum("nmd,nmd->nm", diff, diff))
    return out


def dtw_path(dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost monotone alignment of a distance matrix ``dist`` ``(N, M)`` -> index arrays ``(i, j)``, each
    ``(L,)``, from ``(0, 0)`` to ``(N-1, M-1)``.

    Accumulated cost ``D(i, j) = d(i, j) + min(D(i-1, j-1), D(i-1, j), D(i, j-1))``. Each row is computed at once:
    with ``S(j) = d(i, 1) + ... + d(i, j)``, ``D(i, j) - S(j)`` is the running minimum of
    ``d(i, j) + min(D(i-1, j-1), D(i-1, j)) - S(j)`` along the row. Ties prefer the diagonal step.
    """
    dist = np.asarray(dist, dtype=np.float64)
    n, m = dist.shape
    if n == 0 or m == 0:
        raise ValueError("dtw_path(): empty distance matrix")
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        d = dist[i - 1]  # (M,)
        base = d + np.minimum(acc[i - 1, :-1], acc[i - 1, 1:])  # diagonal or vertical predecessor
        s = np.cumsum(d)
        acc[i, 1:] = np.minimum.accumulate(base - s) + s
    ii, jj = [n - 1], [m - 1]
    i, j = n, m
    while (i, j) != (1, 1):
        steps = ((i - 1, j - 1), (i - 1, j), (i, j - 1))  # diagonal first: it wins ties
        i, j = min(steps, key=lambda ij: acc[ij])
        ii.append(i - 1)
        jj.append(j - 1)
    return np.asarray(ii[::-1]), np.asarray(jj[::-1])


def mcd(wav_a: np.ndarray, wav_b: np.ndarray, sr: int) -> float:
    """Mel-cepstral distortion in dB between ``wav_a`` and ``wav_b`` (each ``(T,)``, both at ``sr`` Hz).

    Symmetric in its arguments up to DTW tie-breaking; exactly 0 for identical signals. Raises
    :class:`voxar.errors.VoxarAudioError` for digital silence or when every aligned pair is silent.
    """
    mc_a, e_a = mel_cepstrum(wav_a, sr)
    mc_b, e_b = mel_cepstrum(wav_b, sr)
    a, b = mc_a[:, 1:], mc_b[:, 1:]  # drop c~(0): (frames, 24)
    if a.shape[0] * b.shape[0] > MAX_DTW_CELLS:
        raise VoxarAudioError(
            f"MCD: {a.shape[0]} x {b.shape[0]} frames is too long for DTW (limit {MAX_DTW_CELLS} cells, ~25 s each)"
        )
    dist = _pairwise_distance(a, b)  # (N, M)
    pi, pj = dtw_path(dist)
    silent_a = e_a < e_a.max() - SILENCE_DB
    silent_b = e_b < e_b.max() - SILENCE_DB
    keep = ~(silent_a[pi] & silent_b[pj])
    if not np.any(keep):
        raise VoxarAudioError("MCD: no aligned frame pair contains speech")
    return float(MCD_SCALE * dist[pi[keep], pj[keep]].mean())


def logmel_l1(wav_a: np.ndarray, wav_b: np.ndarray, sr: int) -> float | None:
    """Mean ``|log-mel(a) - log-mel(b)|`` (natural log, voxar ``"16k"`` preset) of two ``(T,)`` signals at ``sr``.

    No alignment: returns ``None`` when the frame counts differ by more than one frame (10 ms); otherwise the longer
    spectrogram is cut to the shorter one. Raises :class:`voxar.errors.VoxarAudioError` for signals shorter than
    the analysis window (~33 ms).
    """
    from voxar.audio import MelConfig, log_mel, resample

    cfg = MelConfig.preset("16k")
    mels = []
    for name, w in (("first", wav_a), ("second", wav_b)):
        x = resample(np.asarray(w, dtype=np.float32), int(sr), cfg.sample_rate)
        if x.size <= cfg.n_fft // 2:
            raise VoxarAudioError(f"log-mel L1: the {name} signal is too short ({x.size} samples at 16 kHz)")
        mels.append(log_mel(x, cfg))  # (n_mels, frames)
    ma, mb = mels
    if abs(ma.shape[1] - mb.shape[1]) > 1:
        return None
    n = min(ma.shape[1], mb.shape[1])
    return float(np.mean(np.abs(ma[:, :n].astype(np.float64) - mb[:, :n])))
