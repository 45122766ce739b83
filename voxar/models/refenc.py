"""Reference (speaker) encoder: a prompt mel ``(B, n_mels, T)`` -> a global speaker embedding ``(B, out_dim)``.

Three 1-D conv layers (kernel 5, "same" padding, SiLU, LayerNorm over channels) -> masked mean over the valid
frames -> linear -> ``out_dim`` (128 by default, method brief 6.3). It gives the TTS LM its speaker token for the
transcript-free zero-shot mode and is trained jointly with it.

Padding never leaks into the result: after each conv the padded frames are set to zero, which is exactly what the
conv's own zero padding shows a sequence run alone, and the pooling averages valid frames only. A batch item thus
gives the same embedding padded or alone, whatever values its padding holds. No BatchNorm (a JVP could reach a
speaker encoder in the VC model, and batch statistics would couple items).

Legend: B batch, M mel bins, T frames, C channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from voxar.errors import VoxarConfigError


@dataclass
class RefEncoderConfig:
    """Reference encoder hyperparameters: ``n_layers`` convs of ``channels`` and odd ``kernel_size``."""

    n_mels: int = 80
    channels: int = 128
    kernel_size: int = 5
    n_layers: int = 3
    out_dim: int = 128

    def __post_init__(self) -> None:
        for key in ("n_mels", "channels", "kernel_size", "n_layers", "out_dim"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise VoxarConfigError(f"RefEncoderConfig: {key} must be a positive integer, got {value!r}")
        if self.kernel_size % 2 == 0:
            raise VoxarConfigError(f"RefEncoderConfig: kernel_size must be odd, got {self.kernel_size}")


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, max_len)`` bool, True on valid steps."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class RefEncoder(nn.Module):
    """``forward(mel (B, M, T), lengths (B,) | None) -> (B, out_dim)`` (see the module docstring)."""

    def __init__(self, cfg: RefEncoderConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or RefEncoderConfig()
        pad = cfg.kernel_size // 2
        dims = [cfg.n_mels] + [cfg.channels] * cfg.n_layers
        self.convs = nn.ModuleList(
            nn.Conv1d(dims[i], dims[i + 1], cfg.kernel_size, padding=pad) for i in range(cfg.n_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.channels) for _ in range(cfg.n_layers))
        self.proj = nn.Linear(cfg.channels, cfg.out_dim)

    def forward(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.cfg.n_mels:
            raise ValueError(f"reference encoder expects mel (B, {self.cfg.n_mels}, T), got {tuple(mel.shape)}")
        b, _, t = mel.shape
        if lengths is None:
            lengths = torch.full((b,), t, device=mel.device, dtype=torch.long)
        if t == 0 or bool((lengths <= 0).any()):
            raise ValueError("reference encoder needs at least one frame per item")
        valid = length_mask(lengths.to(mel.device), t)[:, None, :].to(mel.dtype)  # (B, 1, T)
        x = mel * valid
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = F.silu(conv(x))
            x = norm(x.transpose(1, 2)).transpose(1, 2)  # (B, C, T) -> (B, T, C) -> norm -> (B, C, T)
            x = x * valid
        pooled = x.sum(dim=-1) / valid.sum(dim=-1)  # (B, C, T) -> (B, C)
        return self.proj(pooled)
