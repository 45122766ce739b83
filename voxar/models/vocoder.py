"""Vocos-style neural vocoder: ConvNeXt backbone + ISTFT head, streamable, in a causal and a non-causal build.

Legend: B batch, M mel bins, T mel frames, D model dim, F = n_fft // 2 + 1 frequency bins, L samples.

``mel (B, M, T)`` -> embed conv (k 7) -> LayerNorm -> N ConvNeXt blocks -> LayerNorm -> Linear(D, n_fft + 2)
-> log-magnitude (exp, clipped at 1e2) and phase -> complex spectrum ``(B, F, T)`` -> inverse STFT -> ``wav (B, L)``.

Two builds (``VocoderConfig.causal``):

- **non-causal** (as published): 'same' convs (k 7, pad 3). Streams exactly: each conv holds its 3-frame lookahead,
  so ``lookahead = 3 * (num_layers + 1)`` mel frames (12 = 120 ms for ``tiny``, 27 = 270 ms for ``small`` at 16k);
  the ISTFT then holds back ``hold_back`` samples of overlap-add. After ``flush`` the streamed waveform equals the
  full pass. ``stream_mode="crossfade"`` instead decodes each chunk with the last ``crossfade_frames`` mel frames
  prepended and cross-fades ``(crossfade_frames - 1) * hop`` samples (MeanVC style): no frame lookahead, not exact.
- **causal**: left-only padding (6 frames per k-7 conv) with conv caches; LayerNorm and Linear act per frame.
  Zero frame lookahead; only the ISTFT overlap-add is held back.

ISTFT hold-back: after frame k the overlap-add buffer still holds ``n_fft - hop`` partial samples. 'same' padding
starts the output ``(n_fft - hop) / 2`` samples into the overlap-add, so of the ``(k + 1) * hop`` samples a full pass
over frames ``0..k`` gives, only the last ``hold_back = (n_fft - hop) / 2`` can still change (240 samples = 15 ms at
16k; the method brief's "n_fft - hop" is the buffer size). 'center' padding (the official Vocos 24 kHz head) gives
``k * hop`` samples with ``hold_back = n_fft / 2 - hop``. Output length: ``T * hop`` ('same') or ``(T - 1) * hop``
('center', as ``torch.istft(center=True)``).

Inference: with autograd off, ``step`` of the exact stream runs a fused path (:mod:`voxar.models.vocoder_fused`:
time-major activations, LayerNorm affines folded into Linear weights, no per-layer ``conv1d``), equal to the
reference path up to float rounding; ``model.fused_step = False`` forces the reference path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from voxar.errors import VoxarConfigError
from voxar.models.vocoder_fused import FusedWeights, step_fused
from voxar.modules.conv import ConvState, SameConv1d, StreamingConv1d
from voxar.modules.streaming import StreamingModule


@dataclass
class VocoderConfig:
    """Vocoder hyperparameters (defaults: ``tiny`` for the 16k mel preset). See :data:`VOCODER_SIZES`.

    ``preset`` names the :class:`voxar.audio.MelConfig` preset the vocoder reads; ``n_mels`` and ``hop_length``
    must match it. ``layer_scale_init`` None means ``1 / num_layers`` (0 disables layer scale).
    """

    preset: str = "16k"
    n_mels: int = 80
    dim: int = 128
    intermediate_dim: int = 384
    num_layers: int = 3
    kernel_size: int = 7
    layer_scale_init: float | None = None
    n_fft: int = 640
    hop_length: int = 160
    padding: Literal["same", "center"] = "same"
    causal: bool = False
    stream_mode: Literal["exact", "crossfade"] = "exact"
    crossfade_frames: int = 3

    def __post_init__(self) -> None:
        where = "VocoderConfig"
        for key in ("n_mels", "dim", "intermediate_dim", "num_layers", "kernel_size", "n_fft", "hop_length"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise VoxarConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
        if self.kernel_size % 2 == 0:
            raise VoxarConfigError(f"{where}: kernel_size must be odd, got {self.kernel_size}")
        if self.padding not in ("same", "center"):
            raise VoxarConfigError(f"{where}: padding must be 'same' or 'center', got {self.padding!r}")
        if self.hop_length > self.n_fft // 2:
            raise VoxarConfigError(f"{where}: hop_length {self.hop_length} must be <= n_fft / 2 ({self.n_fft // 2})")
        if self.padding == "same" and (self.n_fft - self.hop_length) % 2:
            raise VoxarConfigError(f"{where}: 'same' padding needs n_fft - hop_length even")
        if self.stream_mode not in ("exact", "crossfade"):
            raise VoxarConfigError(f"{where}: stream_mode must be 'exact' or 'crossfade', got {self.stream_mode!r}")
        if self.stream_mode == "crossfade" and (self.causal or self.padding != "same"):
            raise VoxarConfigError(f"{where}: stream_mode 'crossfade' is for the non-causal 'same'-padded build")
        if self.crossfade_frames < 1:
            raise VoxarConfigError(f"{where}: crossfade_frames must be >= 1, got {self.crossfade_frames}")
        mel = self.mel_config()
        if (self.n_mels, self.hop_length) != (mel.n_mels, mel.hop_length):
            raise VoxarConfigError(
                f"{where}: preset {self.preset!r} has {mel.n_mels} mel bins and hop {mel.hop_length}, "
                f"got n_mels={self.n_mels}, hop_length={self.hop_length}"
            )

    def mel_config(self) -> Any:
        """The :class:`voxar.audio.MelConfig` of ``preset`` (its features are this vocoder's input)."""
        from voxar.audio.features import MelConfig  # deferred: keeps the model importable on its own

        return MelConfig.preset(self.preset)

    @property
    def sample_rate(self) -> int:
        return int(self.mel_config().sample_rate)

    @classmethod
    def named(cls, name: str, **overrides: Any) -> VocoderConfig:
        """A named size from :data:`VOCODER_SIZES` (``tiny``, ``small``, ``vocos24k``) with field overrides."""
        if name not in VOCODER_SIZES:
            raise VoxarConfigError(f"unknown vocoder size {name!r}; valid sizes: {', '.join(VOCODER_SIZES)}")
        from voxar.config import from_dict

        return from_dict(cls, {**VOCODER_SIZES[name], **overrides}, where=f"vocoder size {name}")


VOCODER_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(preset="16k", n_mels=80, dim=128, intermediate_dim=384, num_layers=3, n_fft=640, hop_length=160),
    "small": dict(preset="16k", n_mels=80, dim=384, intermediate_dim=1152, num_layers=8, n_fft=640, hop_length=160),
    # The published charactr/vocos-mel-24khz layout (its head uses 'center' padding).
    "vocos24k": dict(
        preset="vocos24k", n_mels=100, dim=512, intermediate_dim=1536, num_layers=8, n_fft=1024, hop_length=256,
        padding="center",
    ),
}  # fmt: skip


class ConvNeXtBlock(StreamingModule):
    """``x + gamma * Linear(GELU(Linear(LayerNorm(dwconv(x)))))``; ``(B, D, T)`` -> ``(B, D, T)``.

    The depthwise conv is causal or 'same'; in streaming the residual is delayed by the conv's lookahead.
    """

    def __init__(
        self, dim: int, intermediate_dim: int, kernel_size: int, layer_scale_init: float, causal: bool
    ) -> None:
        super().__init__()
        conv_cls = StreamingConv1d if causal else SameConv1d
        self.dwconv = conv_cls(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init))) if layer_scale_init > 0 else None
        self.lookahead = self.dwconv.lookahead

    def _branch(self, h: torch.Tensor) -> torch.Tensor:
        """Per-frame part of the residual branch on the dwconv output, ``(B, D, T)`` -> ``(B, D, T)``."""
        h = h.transpose(1, 2)  # (B, D, T) -> (B, T, D)
        h = self.pwconv2(self.act(self.pwconv1(self.norm(h))))
        if self.gamma is not None:
            h = self.gamma * h
        return h.transpose(1, 2)  # (B, T, D) -> (B, D, T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self._branch(self.dwconv(x))

    def init_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> BlockState:
        conv = self.dwconv.init_state(batch_size, device, dtype)
        return BlockState(conv, conv.cache.new_zeros(batch_size, self.dwconv.conv.in_channels, 0))

    def step(self, x: torch.Tensor, state: BlockState) -> tuple[torch.Tensor, BlockState]:
        h, state.conv = self.dwconv.step(x, state.conv)
        pending = torch.cat([state.pending, x], dim=-1)
        n = h.shape[-1]
        state.pending = pending[..., n:]
        return pending[..., :n] + self._branch(h), state

    def flush(self, state: BlockState) -> torch.Tensor | None:
        h = self.dwconv.flush(state.conv)
        if h is None:
            return None
        return state.pending[..., : h.shape[-1]] + self._branch(h)


@dataclass
class BlockState:
    """ConvNeXt block stream: the dwconv cache and the inputs ``(B, D, <= lookahead)`` awaiting their residual."""

    conv: ConvState
    pending: torch.Tensor


@dataclass
class ISTFTState:
    """Overlap-add stream: partial sums ``tail (B, n_fft - hop)``, their window envelope ``env_tail (n_fft - hop,)``,
    leading samples still to crop (``skip``), frames seen and samples emitted."""

    tail: torch.Tensor
    env_tail: torch.Tensor
    skip: int
    frames: int = 0
    emitted: int = 0


class ISTFT(StreamingModule):
    """Inverse STFT with a periodic Hann window of ``n_fft`` and 'same' or 'center' cropping, written with
    ``torch.fft.irfft`` + overlap-add + window-envelope normalisation so that it streams exactly.

    ``(B, F, T)`` complex -> ``(B, L)``; 'same' crops ``(n_fft - hop) / 2`` samples at both ends (``L = T * hop``),
    'center' crops ``n_fft / 2`` (``L = (T - 1) * hop``, the same as ``torch.istft(center=True)``).
    """

    def __init__(self, n_fft: int, hop_length: int, padding: str = "same") -> None:
        super().__init__()
        self.n_fft, self.hop, self.padding = n_fft, hop_length, padding
        self.pad = (n_fft - hop_length) // 2 if padding == "same" else n_fft // 2
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)
        self.hold_back = self.num_samples(1) - (hop_length - self.pad)
        self._env_cache: dict[tuple, torch.Tensor] = {}

    def num_samples(self, num_frames: int) -> int:
        """Output length for ``num_frames`` frames."""
        if self.padding == "same":
            return num_frames * self.hop
        return max(0, num_frames - 1) * self.hop

    def _fold(self, frames: torch.Tensor) -> torch.Tensor:
        """Overlap-add ``(B, n_fft, n)`` frames -> ``(B, (n - 1) * hop + n_fft)``."""
        length = (frames.shape[-1] - 1) * self.hop + self.n_fft
        fold = F.fold(frames, output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop))
        return fold[:, 0, 0]  # (B, 1, 1, length) -> (B, length)

    def envelope(self, n: int, dtype: torch.dtype) -> torch.Tensor:
        """Overlap-added squared window of ``n`` frames, ``((n - 1) * hop + n_fft,)``; cached for chunk sizes."""
        key = (n, dtype, self.window.device)
        env = self._env_cache.get(key)
        if env is None:
            with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable later with autograd on
                env = self._fold(self.window.to(dtype).square()[None, :, None].expand(1, -1, n))[0]
            if n <= 64:
                self._env_cache[key] = env
        return env

    def frames(self, spec: torch.Tensor) -> torch.Tensor:
        """Windowed inverse-FFT frames: complex ``(B, F, n)`` -> ``(B, n_fft, n)``."""
        return torch.fft.irfft(spec, n=self.n_fft, dim=1) * self.window.to(spec.real.dtype)[:, None]

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        n = spec.shape[-1]
        out_len = self.num_samples(n)
        if out_len == 0:
            return spec.real.new_zeros(spec.shape[0], 0)
        frames = self.frames(spec)
        y, env = self._fold(frames), self.envelope(n, frames.dtype)
        return y[:, self.pad : self.pad + out_len] / env[self.pad : self.pad + out_len]

    def init_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> ISTFTState:
        device, dtype = self._default_device_dtype(device, dtype)
        overlap = self.n_fft - self.hop
        return ISTFTState(
            torch.zeros(batch_size, overlap, device=device, dtype=dtype),
            torch.zeros(overlap, device=device, dtype=dtype),
            skip=self.pad,
        )

    def step(self, spec: torch.Tensor, state: ISTFTState) -> tuple[torch.Tensor, ISTFTState]:
        if spec.shape[-1] == 0:
            return state.tail.new_zeros(state.tail.shape[0], 0), state
        return self.step_frames(self.frames(spec), state)

    def step_frames(self, frames: torch.Tensor, state: ISTFTState) -> tuple[torch.Tensor, ISTFTState]:
        """:meth:`step` on windowed frames ``(B, n_fft, n)`` (n >= 1) from :meth:`frames`."""
        n = frames.shape[-1]
        y, env = self._fold(frames), self.envelope(n, frames.dtype)
        overlap = self.n_fft - self.hop
        y = torch.cat([y[:, :overlap] + state.tail, y[:, overlap:]], dim=1)
        env = torch.cat([env[:overlap] + state.env_tail, env[overlap:]])
        done = n * self.hop  # samples no later frame can touch
        state.tail, state.env_tail = y[:, done:], env[done:]
        drop = min(state.skip, done)
        state.skip -= drop
        state.frames += n
        out = y[:, drop:done] / env[drop:done]
        state.emitted += out.shape[-1]
        return out, state

    def flush(self, state: ISTFTState) -> torch.Tensor:
        """The last ``hold_back`` samples, normalised by the partial envelope at the end (as the full pass)."""
        left = self.num_samples(state.frames) - state.emitted
        if left <= 0:
            return state.tail.new_zeros(state.tail.shape[0], 0)
        sl = slice(state.skip, state.skip + left)
        return state.tail[:, sl] / state.env_tail[sl]


class ISTFTHead(nn.Module):
    """``Linear(D, n_fft + 2)`` -> complex spectrum (magnitude ``exp`` clipped at 1e2, phase via cos/sin) -> ISTFT."""

    def __init__(self, dim: int, n_fft: int, hop_length: int, padding: str) -> None:
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length, padding)

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> complex ``(B, F, T)``."""
        x = self.out(x).transpose(1, 2).float()  # (B, T, n_fft + 2) -> (B, n_fft + 2, T); fp32 under autocast
        with torch.autocast(x.device.type, enabled=False):
            log_mag, phase = x.chunk(2, dim=1)  # 2 x (B, F, T)
            mag = torch.exp(log_mag).clamp(max=1e2)
            return torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> ``(B, L)`` (float32: the spectrum and the ISTFT run outside autocast)."""
        spec = self.spectrum(x)
        with torch.autocast(spec.device.type, enabled=False):
            return self.istft(spec)


@dataclass
class VocoderState:
    """Exact stream: the embed conv, each block and the ISTFT overlap-add (+ the fused inference weights)."""

    embed: ConvState
    blocks: list[BlockState]
    istft: ISTFTState
    fused: FusedWeights | None = None  # taken at the first step without autograd (shared by clone_state copies)


@dataclass
class CrossfadeState:
    """Cross-fade stream: last mel frames ``context (B, M, <= crossfade_frames)`` and held samples ``tail (B, n)``."""

    context: torch.Tensor
    tail: torch.Tensor


class Vocoder(StreamingModule):
    """Vocos-style vocoder: ``forward(mel (B, M, T)) -> wav (B, L)`` with ``L = num_samples(T)``.

    Streaming (``init_state`` / ``step`` / ``flush``, or :func:`voxar.modules.streaming`): see the module docstring.
    ``lookahead`` is in mel frames, ``hold_back`` in samples; ``latency_ms`` is both together.
    """

    def __init__(self, cfg: VocoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        conv_cls = StreamingConv1d if cfg.causal else SameConv1d
        scale = cfg.layer_scale_init if cfg.layer_scale_init is not None else 1.0 / cfg.num_layers
        self.embed = conv_cls(cfg.n_mels, cfg.dim, cfg.kernel_size)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(cfg.dim, cfg.intermediate_dim, cfg.kernel_size, scale, cfg.causal)
            for _ in range(cfg.num_layers)
        )
        self.final_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = ISTFTHead(cfg.dim, cfg.n_fft, cfg.hop_length, cfg.padding)
        self.apply(self._init_weights)
        self.fused_step = True  # use the fused inference step when autograd is off (False: always the reference)
        self._fused_cache: FusedWeights | None = None
        if cfg.stream_mode == "crossfade":
            self.lookahead, self.hold_back = 0, (cfg.crossfade_frames - 1) * cfg.hop_length
        else:
            self.lookahead = self.embed.lookahead + sum(b.lookahead for b in self.blocks)
            self.hold_back = self.head.istft.hold_back

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    # ----------------------------------------------------------------------------------------------- full pass
    def _check_mel(self, mel: torch.Tensor) -> None:
        if mel.dim() != 3:
            raise ValueError(f"vocoder expects mel of shape (B, n_mels, T), got {tuple(mel.shape)}")
        if mel.shape[1] != self.cfg.n_mels:
            raise VoxarConfigError(
                f"vocoder expects {self.cfg.n_mels} mel bins (preset {self.cfg.preset}), got {mel.shape[1]}"
            )

    def _frame_norm(self, x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        """LayerNorm over channels of ``(B, D, T)``, returned as ``(B, T, D)``."""
        return norm(x.transpose(1, 2))  # (B, D, T) -> (B, T, D)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel (B, M, T)`` -> ``wav (B, num_samples(T))``."""
        self._check_mel(mel)
        x = self._frame_norm(self.embed(mel), self.norm).transpose(1, 2)  # (B, T, D) -> (B, D, T)
        for block in self.blocks:
            x = block(x)
        return self.head(self._frame_norm(x, self.final_norm))

    def num_samples(self, num_frames: int) -> int:
        """Output samples for ``num_frames`` mel frames."""
        return self.head.istft.num_samples(num_frames)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def lookahead_ms(self) -> float:
        """The frame lookahead in milliseconds (``lookahead * hop / sample_rate``)."""
        return 1000.0 * self.lookahead * self.cfg.hop_length / self.sample_rate

    @property
    def latency_ms(self) -> float:
        """Algorithmic streaming latency: ``lookahead`` frames plus ``hold_back`` samples, in milliseconds."""
        return 1000.0 * (self.lookahead * self.cfg.hop_length + self.hold_back) / self.sample_rate

    # ----------------------------------------------------------------------------------------------- streaming
    def init_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> VocoderState | CrossfadeState:
        device, dtype = self._default_device_dtype(device, dtype)
        if self.cfg.stream_mode == "crossfade":
            return CrossfadeState(
                torch.zeros(batch_size, self.cfg.n_mels, 0, device=device, dtype=dtype),
                torch.zeros(batch_size, 0, device=device, dtype=dtype),
            )
        return VocoderState(
            self.embed.init_state(batch_size, device, dtype),
            [b.init_state(batch_size, device, dtype) for b in self.blocks],
            self.head.istft.init_state(batch_size, device, dtype),
        )

    def step(
        self, mel: torch.Tensor, state: VocoderState | CrossfadeState
    ) -> tuple[torch.Tensor, VocoderState | CrossfadeState]:
        """Mel chunk ``(B, M, n)`` (any n) -> the waveform samples ``(B, l)`` that became final (fused path when
        autograd is off, see the module docstring)."""
        self._check_mel(mel)
        if isinstance(state, CrossfadeState):
            return self._step_crossfade(mel, state)
        if self.fused_step and not torch.is_grad_enabled() and mel.shape[-1] > 0:
            return step_fused(self, mel, state), state
        x, state.embed = self.embed.step(mel, state.embed)
        return self._step_rest(x, state, flush=False), state

    def flush(self, state: VocoderState | CrossfadeState) -> torch.Tensor:
        """End of stream: the held-back samples ``(B, l)``; the stream is then finished."""
        if isinstance(state, CrossfadeState):
            return state.tail
        x = self.embed.flush(state.embed)
        if x is None:
            x = state.embed.cache.new_zeros(state.embed.cache.shape[0], self.cfg.dim, 0)
        return self._step_rest(x, state, flush=True)

    def _step_rest(self, x: torch.Tensor, state: VocoderState, flush: bool) -> torch.Tensor:
        """Embed output ``(B, D, n)`` through the blocks (flushing each when ``flush``) and the ISTFT."""
        x = self._frame_norm(x, self.norm).transpose(1, 2)  # (B, T, D) -> (B, D, T)
        for block, bstate in zip(self.blocks, state.blocks, strict=True):
            x, _ = block.step(x, bstate)
            tail = block.flush(bstate) if flush else None
            if tail is not None:
                x = torch.cat([x, tail], dim=-1)
        wav, state.istft = self.head.istft.step(self.head.spectrum(self._frame_norm(x, self.final_norm)), state.istft)
        if flush:
            wav = torch.cat([wav, self.head.istft.flush(state.istft)], dim=-1)
        return wav

    def _step_crossfade(self, mel: torch.Tensor, state: CrossfadeState) -> tuple[torch.Tensor, CrossfadeState]:
        """Decode ``[context | chunk]``, cross-fade its start with the held tail, hold back the new end."""
        if mel.shape[-1] == 0:
            return state.tail.new_zeros(state.tail.shape[0], 0), state
        window = torch.cat([state.context, mel.to(state.context.dtype)], dim=-1)  # (B, M, c + n)
        wav = self.forward(window)  # (B, (c + n) * hop)
        start = state.context.shape[-1] * self.cfg.hop_length
        fade = state.tail.shape[-1]
        ramp = torch.arange(1, fade + 1, device=wav.device, dtype=wav.dtype) / (fade + 1)
        mixed = state.tail * (1 - ramp) + wav[:, start - fade : start] * ramp
        full = torch.cat([mixed, wav[:, start:]], dim=-1)
        keep = min(self.hold_back, full.shape[-1])
        state.tail = full[:, full.shape[-1] - keep :]
        state.context = window[..., max(0, window.shape[-1] - self.cfg.crossfade_frames) :]
        return full[:, : full.shape[-1] - keep], state

    # ----------------------------------------------------------------------------------------------- model dirs
    def save_pretrained(
        self, path: str | Path, overwrite: bool = False, extra_files: dict[str, bytes | str] | None = None
    ) -> Path:
        """Write ``path/config.yaml`` + ``path/model.safetensors`` (see :mod:`voxar.models.modeldir`)."""
        from voxar.models.modeldir import save_model_dir

        return save_model_dir(self, self.cfg, "vocoder", path, extra_files=extra_files, overwrite=overwrite)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device = "cpu", preset: str | None = None
    ) -> Vocoder:
        """Load a vocoder model dir; ``preset`` (e.g. ``"16k"``) rejects a vocoder made for another mel preset."""
        from voxar.models.modeldir import load_model_dir

        expect = {"preset": preset} if preset is not None else None
        model, _ = load_model_dir(path, "vocoder", VocoderConfig, cls, device=device, expect=expect)
        return model


def describe(model: Vocoder) -> str:
    """One line: size, build and streaming latency."""
    c = model.cfg
    build = "causal" if c.causal else f"non-causal/{c.stream_mode}"
    return (
        f"vocoder {c.preset} dim={c.dim} layers={c.num_layers} {build}: {model.num_parameters() / 1e6:.2f}M params, "
        f"lookahead {model.lookahead} frames + {model.hold_back} samples = {model.latency_ms:.1f} ms"
    )


__all__ = ["VOCODER_SIZES", "ISTFT", "ConvNeXtBlock", "ISTFTHead", "Vocoder", "VocoderConfig", "describe"]
