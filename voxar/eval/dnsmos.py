"""Non-intrusive speech quality (DNSMOS) with Microsoft's DNSMOS models, run by the ``speechmos`` package.

DNSMOS predicts listener MOS (1 = bad ... 5 = excellent) from the audio alone, no reference needed:

- ``sig``, ``bak``, ``ovrl``: the ITU-T P.835 ratings of the *speech signal* (distortion), the *background*
  (noise intrusiveness) and the *overall* quality, from ``dnsmos_models/sig_bak_ovr.onnx`` followed by the
  polynomial calibration of the DNS Challenge scripts;
- ``p808``: the ITU-T P.808 (ACR) overall MOS from ``dnsmos_models/model_v8.onnx``.

The ONNX files ship inside the ``speechmos`` wheel and are run with ``onnxruntime`` on the CPU; nothing is downloaded
(speechmos imports ``requests`` but never uses it; :func:`dnsmos` checks the model files are present first).
The models work on 9.01 s windows of 16 kHz audio: ``speechmos`` repeats a shorter input end to end until it fills
one window, and scores a longer one with windows hopped by 1 s, averaging the window scores. Audio is resampled to
16 kHz here and clipped to [-1, 1] (speechmos rejects samples outside that range); the level is *not* normalised,
as in the official DNSMOS scripts.

DNSMOS was trained on noisy/enhanced real speech; on synthetic speech it measures artefacts and noise well but is
only a rough proxy for naturalness. Compare with the ground-truth ceiling that ``voxar eval`` reports.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path
from types import ModuleType

import numpy as np

from voxar.errors import VoxarAudioError, VoxarError

log = logging.getLogger(__name__)

DNSMOS_SAMPLE_RATE = 16000
MODEL_FILES = ("dnsmos_models/sig_bak_ovr.onnx", "dnsmos_models/model_v8.onnx")


def _import_speechmos() -> ModuleType:
    """``speechmos.dnsmos``, after checking its packaged ONNX models exist; VoxarError with a hint otherwise."""
    try:
        from speechmos import dnsmos as sm_dnsmos
    except ImportError as e:
        missing = getattr(e, "name", None) or "speechmos"
        hint = "pip install onnxruntime" if missing == "onnxruntime" else "pip install 'voxar[eval]'"
        raise VoxarError(f"DNSMOS needs the {missing} package ({e}); install it with: {hint}") from e
    root = Path(sm_dnsmos.__file__).resolve().parent
    for rel in MODEL_FILES:
        if not (root / rel).is_file():
            raise VoxarError(f"DNSMOS model {root / rel} is missing from the speechmos package; reinstall speechmos")
    return sm_dnsmos


def dnsmos_tool_name() -> str:
    """Name and version of the DNSMOS implementation (imports it: raises VoxarError when unavailable)."""
    _import_speechmos()
    try:
        version = importlib.metadata.version("speechmos")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"speechmos {version} DNSMOS (P.835 sig_bak_ovr.onnx + P.808 model_v8.onnx, onnxruntime CPU)"


def dnsmos(wav: np.ndarray, sr: int) -> dict[str, float]:
    """DNSMOS of one utterance ``wav`` ``(T,)`` (float, mono) at ``sr`` Hz -> ``dict(sig, bak, ovrl, p808)``.

    Each value is a MOS-like float, normally within [1, 5]. Raises :class:`voxar.errors.VoxarAudioError` for empty
    or all-zero audio (DNSMOS is undefined there) and :class:`voxar.errors.VoxarError` when speechmos or onnxruntime
    is missing.
    """
    from voxar.audio import check_waveform, resample

    sm_dnsmos = _import_speechmos()
    x = check_waveform(np.asarray(wav), "DNSMOS input")
    if x.ndim != 1:
        raise ValueError(f"DNSMOS input: expected a mono waveform (T,), got shape {tuple(x.shape)}")
    x = resample(x, int(sr), DNSMOS_SAMPLE_RATE)
    if x.size == 0 or not np.any(x):
        # speechmos would loop forever doubling an empty array, and a silent window has no defined quality.
        raise VoxarAudioError("DNSMOS input: the audio is empty or digital silence")
    x = np.clip(x, -1.0, 1.0).astype(np.float32)
    out = sm_dnsmos.run(x, DNSMOS_SAMPLE_RATE, model_type="dnsmos", verbose=False)
    return {
        "sig": float(out["sig_mos"]),
        "bak": float(out["bak_mos"]),
        "ovrl": float(out["ovrl_mos"]),
        "p808": float(out["p808_mos"]),
    }
