"""Log-mel spectrogram features, the acoustic representation shared by voxar's models and vocoders.

:class:`MelConfig` holds every parameter of the analysis; :data:`PRESETS` names the two configurations voxar ships:

- ``"16k"`` (the default): 16 kHz, 10 ms hop, 80 Slaney mels up to 8 kHz, magnitude spectrogram.
- ``"vocos24k"``: bit-for-bit the features the published Vocos ``mel-24khz`` vocoder was trained on (its extractor is
  a torchaudio ``MelSpectrogram(sample_rate=24000, n_fft=1024, hop_length=256, n_mels=100, center=True, power=1)``
  with torchaudio's defaults -- hann window of ``n_fft`` samples, 0 Hz to Nyquist, HTK mel scale, no filter
  normalisation, reflect padding -- followed by ``log(clamp(x, min=1e-5))``). Reproduced here without torchaudio.

:class:`LogMelSpectrogram` computes the features with ``torch.stft`` and a librosa mel filterbank, on any device.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from voxar.errors import VoxarConfigError


@dataclass
class MelConfig:
    """Parameters of the log-mel analysis (defaults are the ``"16k"`` preset).

    ``f_max=None`` means ``sample_rate / 2``. ``power`` 1.0 uses the STFT magnitude, 2.0 the power. ``log_floor``
    is the value the mel energies are clamped to before the natural log. With ``center=True`` the signal is padded
    by ``n_fft // 2`` on both sides (``pad_mode``) and a signal of ``T`` samples gives ``1 + T // hop_length``
    frames.
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 640
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = 8000.0
    mel_scale: Literal["slaney", "htk"] = "slaney"
    mel_norm: Literal["slaney"] | None = "slaney"
    power: float = 1.0
    log_floor: float = 1e-5
    center: bool = True
    pad_mode: Literal["reflect", "constant"] = "reflect"

    def __post_init__(self) -> None:
        where = "MelConfig"
        for key in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise VoxarConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
        if self.win_length > self.n_fft:
            raise VoxarConfigError(f"{where}: win_length {self.win_length} is larger than n_fft {self.n_fft}")
        if not 0.0 <= self.f_min < self.fmax_hz <= self.sample_rate / 2:
            raise VoxarConfigError(
                f"{where}: need 0 <= f_min < f_max <= sample_rate/2, got f_min={self.f_min}, f_max={self.f_max}, "
                f"sample_rate={self.sample_rate}"
            )
        if self.mel_scale not in ("slaney", "htk"):
            raise VoxarConfigError(f"{where}: mel_scale must be 'slaney' or 'htk', got {self.mel_scale!r}")
        if self.mel_norm not in ("slaney", None):
            raise VoxarConfigError(f"{where}: mel_norm must be 'slaney' or null, got {self.mel_norm!r}")
        if self.power not in (1.0, 2.0):
            raise VoxarConfigError(f"{where}: power must be 1.0 (magnitude) or 2.0 (power), got {self.power!r}")
        if not self.log_floor > 0:
            raise VoxarConfigError(f"{where}: log_floor must be positive, got {self.log_floor!r}")
        if self.pad_mode not in ("reflect", "constant"):
            raise VoxarConfigError(f"{where}: pad_mode must be 'reflect' or 'constant', got {self.pad_mode!r}")

    @property
    def fmax_hz(self) -> float:
        """Upper edge of the mel filterbank in Hz (``f_max``, or Nyquist when it is None)."""
        return float(self.sample_rate) / 2 if self.f_max is None else float(self.f_max)

    @property
    def n_freqs(self) -> int:
        """Number of one-sided STFT bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    def frames(self, num_samples: int) -> int:
        """Number of feature frames for a signal of ``num_samples`` samples."""
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if self.center:
            return 1 + num_samples // self.hop_length
        return 0 if num_samples < self.n_fft else 1 + (num_samples - self.n_fft) // self.hop_length

    @classmethod
    def preset(cls, name: str) -> MelConfig:
        """A fresh copy of the named preset (see :data:`PRESETS`); unknown names raise :class:`VoxarConfigError`."""
        if name not in PRESETS:
            raise VoxarConfigError(f"unknown mel preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
        return dataclasses.replace(PRESETS[name])


PRESETS: dict[str, MelConfig] = {
    "16k": MelConfig(
        sample_rate=16000,
        n_fft=1024,
        win_length=640,
        hop_length=160,
        n_mels=80,
        f_min=0.0,
        f_max=8000.0,
        mel_scale="slaney",
        mel_norm="slaney",
        power=1.0,
        log_floor=1e-5,
        center=True,
        pad_mode="reflect",
    ),
    # Must stay identical to Vocos mel-24khz's torchaudio feature extractor (see the module docstring).
    "vocos24k": MelConfig(
        sample_rate=24000,
        n_fft=1024,
        win_length=1024,
        hop_length=256,
        n_mels=100,
        f_min=0.0,
        f_max=None,
        mel_scale="htk",
        mel_norm=None,
        power=1.0,
        log_floor=1e-5,
        center=True,
        pad_mode="reflect",
    ),
}


def mel_filterbank(cfg: MelConfig) -> np.ndarray:
    """The mel filterbank of ``cfg`` as float32 ``(n_mels, n_fft // 2 + 1)`` (from ``librosa.filters.mel``).

    Where librosa cannot be imported (a minimal inference machine: librosa pulls numba, llvmlite and scipy),
    :func:`mel_filterbank_numpy` computes the same matrix (tested equal to librosa's to 1e-6).
    """
    try:
        import librosa  # deferred: importing librosa is slow and not needed to import voxar.audio
    except ImportError:
        return mel_filterbank_numpy(cfg)
    fb = librosa.filters.mel(
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.fmax_hz,
        htk=cfg.mel_scale == "htk",
        norm=cfg.mel_norm,
        dtype=np.float64,
    )
    return fb.astype(np.float32)


def _hz_to_mel(f: np.ndarray, htk: bool) -> np.ndarray:
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    lin = f / (200.0 / 3)  # Slaney: linear below 1 kHz, logarithmic above
    log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, lin)


def _mel_to_hz(m: np.ndarray, htk: bool) -> np.ndarray:
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), (200.0 / 3) * m)


def mel_filterbank_numpy(cfg: MelConfig) -> np.ndarray:
    """Triangular mel filters (Slaney or HTK scale, optional Slaney area norm) in float64, returned as float32
    ``(n_mels, n_fft // 2 + 1)``: the definition ``librosa.filters.mel`` uses, without librosa."""
    if cfg.mel_norm not in (None, "slaney"):
        raise ValueError(f"mel_norm must be None or 'slaney' without librosa, got {cfg.mel_norm!r}")
    htk = cfg.mel_scale == "htk"
    fft_hz = np.linspace(0.0, cfg.sample_rate / 2.0, cfg.n_fft // 2 + 1)
    lo, hi = _hz_to_mel(np.array(cfg.f_min, dtype=np.float64), htk), _hz_to_mel(np.array(cfg.fmax_hz, np.float64), htk)
    edges = _mel_to_hz(np.linspace(lo, hi, cfg.n_mels + 2), htk)  # (n_mels + 2,) band edges in Hz
    widths = np.diff(edges)  # (n_mels + 1,)
    ramps = edges[:, None] - fft_hz[None, :]  # (n_mels + 2, n_freqs)
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    fb = np.maximum(0.0, np.minimum(rising, falling))  # (n_mels, n_freqs)
    if cfg.mel_norm == "slaney":
        fb *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # equal area per filter
    return fb.astype(np.float32)


class LogMelSpectrogram(torch.nn.Module):
    """Waveform to natural-log mel spectrogram.

    ``forward(wav)``: ``(B, T)`` float tensor -> ``(B, n_mels, frames)``, or ``(T,)`` -> ``(n_mels, frames)``, with
    ``frames = cfg.frames(T)``. Computed in float32 on the input's device (move the module with ``.to(device)``:
    the filterbank and window are buffers). Each batch item is analysed independently, so batched output equals
    per-item output. Differentiable with respect to ``wav`` (except where the clamp at ``log_floor`` is active).
    """

    def __init__(self, cfg: MelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg if cfg is not None else MelConfig()
        # Non-persistent buffers: derived from cfg, moved by .to(), kept out of checkpoints.
        self.register_buffer("mel_basis", torch.from_numpy(mel_filterbank(self.cfg)), persistent=False)
        self.register_buffer(
            "window", torch.hann_window(self.cfg.win_length, periodic=True, dtype=torch.float32), persistent=False
        )

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if not torch.is_tensor(wav):
            raise TypeError(f"expected a torch.Tensor, got {type(wav).__name__}")
        if wav.dim() not in (1, 2):
            raise ValueError(f"expected a waveform of shape (T,) or (B, T), got {tuple(wav.shape)}")
        squeeze = wav.dim() == 1
        x = wav.unsqueeze(0) if squeeze else wav  # (T,) -> (1, T)
        x = x.to(torch.float32)
        length = x.shape[-1]
        if cfg.center and cfg.pad_mode == "reflect" and length <= cfg.n_fft // 2:
            raise ValueError(f"waveform of {length} samples is too short: reflect padding needs > {cfg.n_fft // 2}")
        if not cfg.center and length < cfg.n_fft:
            raise ValueError(f"waveform of {length} samples is shorter than n_fft={cfg.n_fft} (center=False)")
        spec = torch.stft(
            x,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            window=self.window.to(torch.float32),
            center=cfg.center,
            pad_mode=cfg.pad_mode,
            normalized=False,
            onesided=True,
            return_complex=True,
        )  # (B, n_freqs, frames) complex
        if cfg.power == 2.0:
            mag = torch.view_as_real(spec).pow(2).sum(-1)  # (B, n_freqs, frames, 2) -> (B, n_freqs, frames)
        else:
            mag = spec.abs()
        mel = torch.matmul(self.mel_basis.to(torch.float32), mag)  # (n_mels, F) @ (B, F, N) -> (B, n_mels, N)
        out = torch.log(torch.clamp(mel, min=cfg.log_floor))
        return out[0] if squeeze else out

    def extra_repr(self) -> str:
        c = self.cfg
        return f"sr={c.sample_rate}, n_fft={c.n_fft}, hop={c.hop_length}, n_mels={c.n_mels}"


@functools.lru_cache(maxsize=8)
def _cached_module(key: tuple[Any, ...]) -> LogMelSpectrogram:
    return LogMelSpectrogram(MelConfig(*key))


def log_mel(wav: Any, cfg: MelConfig | None = None) -> np.ndarray:
    """Log-mel of a numpy array or tensor ``(T,)`` -> float32 ``(n_mels, frames)`` (``(B, T)`` -> ``(B, n_mels,
    frames)``), computed on the CPU. Filterbanks are cached per config."""
    cfg = cfg if cfg is not None else MelConfig()
    module = _cached_module(dataclasses.astuple(cfg))
    if torch.is_tensor(wav):
        x = wav.detach().to("cpu", torch.float32)
    else:
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    with torch.inference_mode():
        return module(x).numpy()
