"""Speaker embeddings and speaker similarity (SIM) with Resemblyzer's pretrained voice encoder.

Resemblyzer's ``VoiceEncoder`` is a 3-layer LSTM speaker encoder trained with the GE2E loss (Wan et al., 2018) on
40-band mel frames; its weights (``pretrained.pt``, 17 MB) ship inside the ``resemblyzer`` wheel, so nothing is
downloaded. An utterance is resampled to 16 kHz, volume-normalised and stripped of long silences (Resemblyzer's
``preprocess_wav``), cut into 1.6 s windows, and the window embeddings are averaged: the result is a 256-d,
L2-normalised, non-negative vector. SIM is the cosine of two such vectors: 1 for the same recording; on flite/espeak-ng
voices, two sentences of one voice give about 0.72-0.95 and two different voices 0.38-0.71 (the numbers depend on
recording conditions -- always compare with the ground-truth ceiling ``voxar eval`` reports).

Resemblyzer's dependency ``webrtcvad`` imports ``pkg_resources``, which setuptools >= 81 no longer ships: the
``eval`` extra pins ``setuptools<81``. The checkpoint is checked with ``torch.load(weights_only=True)`` before
Resemblyzer loads it, so only plain tensors/containers are ever unpickled.
"""

from __future__ import annotations

import importlib.metadata
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxar.errors import VoxarAudioError, VoxarError

log = logging.getLogger(__name__)

EMBED_DIM = 256
ENCODER_SAMPLE_RATE = 16000
_MIN_SAMPLES = 1600  # 0.1 s at 16 kHz: shorter speech after silence trimming falls back to the untrimmed audio


def _import_resemblyzer() -> Any:
    """Import resemblyzer quietly (its pkg_resources/scipy deprecation warnings are not the user's concern)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pkg_resources.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            import resemblyzer
    except ImportError as e:
        hint = "pip install 'voxar[eval]'"
        if "pkg_resources" in str(e):
            hint = "pip install 'setuptools<81' (resemblyzer's webrtcvad imports pkg_resources)"
        raise VoxarError(f"speaker similarity needs the resemblyzer package ({e}); install it with: {hint}") from e
    return resemblyzer


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors ``(D,)`` in [-1, 1]; ``ValueError`` for a zero vector or shape mismatch."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"cosine(): shapes differ, {a.shape} vs {b.shape}")
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        raise ValueError("cosine(): zero vector")
    return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))


class SpeakerEncoder:
    """Resemblyzer voice encoder: ``embed(wav, sr) -> (256,)`` unit vector; ``cosine(a, b)`` compares two.

    ``device`` is a torch device string (``"cpu"``, ``"cuda"``). Loading takes ~1-3 s; reuse one instance.
    Raises :class:`voxar.errors.VoxarError` with an install hint when resemblyzer (or pkg_resources) is missing.
    """

    def __init__(self, device: str = "cpu") -> None:
        import torch

        resemblyzer = _import_resemblyzer()
        weights = Path(resemblyzer.__file__).resolve().parent / "pretrained.pt"
        if not weights.is_file():
            raise VoxarError(f"{weights}: resemblyzer's packaged weights are missing; reinstall resemblyzer")
        try:  # refuse checkpoints that need arbitrary unpickling; resemblyzer then loads the same, vetted file
            torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:
            raise VoxarError(f"{weights}: not loadable with torch.load(weights_only=True) ({e})") from e
        self._preprocess = resemblyzer.preprocess_wav
        self._encoder = resemblyzer.VoiceEncoder(device=device, verbose=False, weights_fpath=weights)
        self._encoder.eval()
        self.device = device
        version = importlib.metadata.version("resemblyzer")
        self.name = f"resemblyzer {version} VoiceEncoder (GE2E LSTM, 256-d, packaged weights)"

    def preprocess(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Mono ``wav`` ``(T,)`` at ``sr`` -> float32 ``(T',)`` at 16 kHz, volume-normalised, long silences cut."""
        from voxar.audio import check_waveform, resample

        x = check_waveform(np.asarray(wav), "speaker-embedding input")
        if x.ndim != 1:
            raise ValueError(f"speaker embedding: expected a mono waveform (T,), got shape {tuple(x.shape)}")
        x = resample(x, int(sr), ENCODER_SAMPLE_RATE)
        if not np.any(x):
            raise VoxarAudioError("speaker embedding: the audio is digital silence")
        trimmed = np.asarray(self._preprocess(x), dtype=np.float32)  # (T',) at 16 kHz
        if trimmed.size < _MIN_SAMPLES:
            log.debug("speaker embedding: VAD kept %d samples, using the untrimmed audio", trimmed.size)
            trimmed = x
        return trimmed

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Speaker embedding of one utterance ``wav`` ``(T,)`` at ``sr`` Hz -> float32 ``(256,)`` with unit L2 norm.

        Raises :class:`voxar.errors.VoxarAudioError` for silent or unusable audio.
        """
        import torch

        x = self.preprocess(wav, sr)
        with torch.inference_mode():
            e = np.asarray(self._encoder.embed_utterance(x), dtype=np.float64)
        norm = float(np.linalg.norm(e))
        if not np.isfinite(norm) or norm == 0.0:
            raise VoxarAudioError("speaker embedding: no usable speech in the audio (zero embedding)")
        return (e / norm).astype(np.float32)

    def embed_many(self, wavs: Sequence[np.ndarray], sr: int) -> np.ndarray:
        """Embeddings of several utterances (each ``(T_i,)``, all at ``sr`` Hz) -> float32 ``(N, 256)``."""
        if len(wavs) == 0:
            return np.zeros((0, EMBED_DIM), dtype=np.float32)
        return np.stack([self.embed(w, sr) for w in wavs])

    @staticmethod
    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        """Cosine similarity of two embeddings (same as the module-level :func:`cosine`)."""
        return cosine(a, b)
