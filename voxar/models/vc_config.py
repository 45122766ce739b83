"""Hyperparameters and streaming state of the voice-conversion DiT (:class:`voxar.models.vc.VCModel`).

:class:`VCConfig` is the model's dataclass config (stored in its model directory); :data:`VC_SIZES` names the
``tiny`` (CI, live on one CPU thread) and ``small`` (GPU research) sizes of method brief 6.4, with C = 4-frame
(40 ms) chunks. :class:`TargetCond` is a prepared target voice and :class:`VCState` the explicit state of one
(batched) stream; :func:`noise_seed` fixes the noise of every chunk so streams are reproducible.

Legend: B batch, L lookback chunks, C frames per chunk, H heads, Dh head dim, D width, S speaker dim,
R reference frames, Dc content dim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from voxar.errors import VoxarConfigError
from voxar.models.refenc import RefEncoderConfig

Mods = tuple[list[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]  # per-block modulations, final (shift, scale)


@dataclass
class VCConfig:
    """VC model hyperparameters (defaults: ``tiny``; see :data:`VC_SIZES` and method brief 6.4).

    ``chunk_size`` C frames per AR chunk, ``lookback`` clean chunks of context (the K/V cache holds ``C * lookback``
    frames). ``mode`` is the training objective (``mf`` mean flow, ``fm`` flow matching); ``mf_steps`` /
    ``fm_steps`` the default sampling steps; ``cfg_scale`` None means 1.0 in MF (guidance trained in) and
    ``mf_omega`` in FM. ``mf_ratio_*``: share of items trained on intervals ``r < t`` (ramped with progress).
    """

    preset: str = "16k"
    n_mels: int = 80
    content_dim: int = 64
    content_features: Literal["bnf", "ppg"] = "bnf"  # which output of the content encoder (set_features) feeds it
    chunk_size: int = 4
    lookback: int = 8
    dim: int = 128
    n_layers: int = 2
    n_heads: int = 2
    ff_mult: int = 2
    timbre_dim: int = 128
    timbre_blocks: int = 1
    timbre_heads: int = 2
    speaker: RefEncoderConfig = field(default_factory=RefEncoderConfig)
    time_dim: int = 128
    time_max_freq: float = 4.0
    rope_base: float = 10000.0
    mode: Literal["mf", "fm"] = "mf"
    mf_steps: int = 1
    fm_steps: int = 8
    cfg_scale: float | None = None
    cond_drop: float = 0.1
    fm_t_mu: float = 0.0
    fm_t_sigma: float = 1.0
    mf_t_mu: float = -0.4
    mf_t_sigma: float = 1.0
    mf_ratio_start: float = 0.5
    mf_ratio_end: float = 0.5
    mf_adaptive_p: float = 0.5
    mf_adaptive_c: float = 1e-3
    mf_omega: float = 2.0
    mf_guidance_interval: list[float] = field(default_factory=lambda: [0.0, 1.0])
    jvp: Literal["func", "autograd", "fd"] = "func"
    fd_eps: float = 1e-3

    def __post_init__(self) -> None:
        where = "VCConfig"
        ints = "n_mels content_dim chunk_size lookback dim n_layers n_heads ff_mult timbre_dim timbre_blocks"
        for key in (ints + " timbre_heads time_dim mf_steps fm_steps").split():
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise VoxarConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise VoxarConfigError(f"{where}: dim {self.dim} must split into {self.n_heads} heads of even size")
        if self.timbre_dim % self.timbre_heads:
            raise VoxarConfigError(f"{where}: timbre_dim {self.timbre_dim} is not a multiple of timbre_heads")
        if self.time_dim % 2:
            raise VoxarConfigError(f"{where}: time_dim must be even, got {self.time_dim}")
        if self.speaker.n_mels != self.n_mels:
            raise VoxarConfigError(f"{where}: speaker.n_mels {self.speaker.n_mels} differs from n_mels {self.n_mels}")
        if self.mode not in ("mf", "fm"):
            raise VoxarConfigError(f"{where}: mode must be 'mf' or 'fm', got {self.mode!r}")
        if self.jvp not in ("func", "autograd", "fd"):
            raise VoxarConfigError(f"{where}: jvp must be 'func', 'autograd' or 'fd', got {self.jvp!r}")
        for key in ("cond_drop", "mf_ratio_start", "mf_ratio_end"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise VoxarConfigError(f"{where}: {key} must be in [0, 1], got {getattr(self, key)}")
        if len(self.mf_guidance_interval) != 2:
            raise VoxarConfigError(f"{where}: mf_guidance_interval must be [t_lo, t_hi]")

    @classmethod
    def named(cls, name: str, **overrides: Any) -> VCConfig:
        """A named size from :data:`VC_SIZES` (``tiny``, ``small``) with field overrides."""
        if name not in VC_SIZES:
            raise VoxarConfigError(f"unknown VC size {name!r}; valid sizes: {', '.join(VC_SIZES)}")
        from voxar.config import from_dict

        return from_dict(cls, {**VC_SIZES[name], **overrides}, where=f"VC size {name}")

    def grid(self, steps: int | None = None) -> list[float]:
        """Sampling times from 1 (noise) to 0 (data): MF ``[1, 0]``, ``[1, 0.8, 0]`` or a linspace; FM a linspace."""
        steps = steps or (self.mf_steps if self.mode == "mf" else self.fm_steps)
        if steps < 1:
            raise VoxarConfigError(f"sampling steps must be >= 1, got {steps}")
        if self.mode == "mf" and steps == 2:
            return [1.0, 0.8, 0.0]  # MeanVC's 2-step grid
        return [1.0 - i / steps for i in range(steps)] + [0.0]

    @property
    def default_cfg_scale(self) -> float:
        if self.cfg_scale is not None:
            return self.cfg_scale
        return 1.0 if self.mode == "mf" else self.mf_omega


VC_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(content_dim=64, dim=128, n_layers=2, n_heads=2, timbre_dim=128, timbre_blocks=1, timbre_heads=2,
                 chunk_size=4, lookback=8, mf_steps=1),
    "small": dict(content_dim=128, dim=512, n_layers=4, n_heads=2, timbre_dim=256, timbre_blocks=2, timbre_heads=4,
                  chunk_size=4, lookback=10, mf_steps=2, fm_steps=10, time_dim=256,
                  speaker=dict(n_mels=80, channels=256, kernel_size=5, n_layers=3, out_dim=256)),
}  # fmt: skip


@dataclass
class TargetCond:
    """A prepared target voice: the speaker vector ``spk (B, S)`` and its part of the frame condition
    ``spk_frame (B, D)``, the timbre memory (per block ``(k, v)``, each ``(B, H, R, Dh)``) and ``ref_ok (B, R)``
    (valid reference frames; None: all)."""

    spk: torch.Tensor
    spk_frame: torch.Tensor
    memory: list[tuple[torch.Tensor, torch.Tensor]]
    ref_ok: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.spk.shape[0]


@dataclass
class VCState:
    """Streaming state of :class:`VCModel` (see :meth:`VCModel.init_state`).

    ``cache_k``/``cache_v`` ``(layers, B, H, L*C, Dh)``: keys (rotated at their absolute frame positions) and values
    of the last ``n_cached`` clean chunks, oldest first and right-aligned (a fixed size: the state never grows).
    ``buffer (B, Dc, < C)``: content frames of the incomplete chunk. ``chunk_index``: chunks emitted so far (the
    noise of chunk ``k`` comes from ``(seed, k)``; its frames sit at positions ``k*C ..``). The rest is precomputed
    per stream: the sampling ``grid``, ``cfg_scale`` and the AdaLN modulations of the clean tokens and of every
    sampling step (and of the unconditional pass when ``cfg_scale != 1``), and rotary tables ``(K, C, Dh)`` of
    chunks ``rope_start .. rope_start + K - 1``.
    """

    target: TargetCond
    cache_k: torch.Tensor
    cache_v: torch.Tensor
    buffer: torch.Tensor
    mods_clean: Mods
    mods_steps: list[Mods]
    mods_uncond: list[Mods] | None
    grid: list[float]
    rope_cos: torch.Tensor
    rope_sin: torch.Tensor
    rope_start: int = 0
    cfg_scale: float = 1.0
    seed: int = 0
    n_cached: int = 0
    chunk_index: int = 0


def noise_seed(seed: int, chunk: int) -> int:
    """The generator seed of chunk ``chunk`` of a stream with ``seed`` (mixed so nearby seeds do not overlap)."""
    return (int(seed) * 0x9E3779B97F4A7C15 + int(chunk) * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % (2**63 - 1)


__all__ = ["VC_SIZES", "Mods", "TargetCond", "VCConfig", "VCState", "noise_seed"]
