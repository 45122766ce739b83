"""Conformer building blocks of the streaming content encoder (:mod:`voxar.models.content`).

Legend: B batch, T frames, D model width, H heads, Dh head dim, S key slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from voxar.modules.attention import attention
from voxar.modules.conv import ConvState, StreamingConv1d

if TYPE_CHECKING:
    from voxar.models.content import ContentConfig

__all__ = ["ConformerBlock", "ConvModule", "FeedForward", "LayerCache"]


@dataclass
class LayerCache:
    """Streaming state of one conformer block: attention keys/values ``k``, ``v`` ``(B, H, <= L * c, Dh)`` of the
    last ``L`` chunks, and the depthwise conv's input cache."""

    k: torch.Tensor
    v: torch.Tensor
    conv: ConvState


class FeedForward(nn.Module):
    """``(B, T, D) -> (B, T, D)``: LayerNorm, Linear(D, F), SiLU, Linear(F, D), dropout (none on the F-wide hidden
    layer: random masks cost more than the matmuls on a CPU)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvModule(nn.Module):
    """Conformer conv module ``(B, T, D) -> (B, T, D)``: LayerNorm, pointwise GLU, *causal* depthwise conv (k),
    LayerNorm (streaming-safe, unlike BatchNorm), SiLU, pointwise, dropout. With a :class:`ConvState` it streams."""

    def __init__(self, dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, 2 * dim)
        self.dw = StreamingConv1d(dim, dim, kernel_size, groups=dim)
        self.dw_norm = nn.LayerNorm(dim)
        self.pw2 = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state: ConvState | None = None) -> torch.Tensor:
        h = F.glu(self.pw1(self.norm(x)), dim=-1).transpose(1, 2)  # (B, T, D) -> (B, D, T)
        h = self.dw(h) if state is None else self.dw.step(h, state)[0]
        h = self.dw_norm(h.transpose(1, 2))  # (B, D, T) -> (B, T, D)
        return self.dropout(self.pw2(F.silu(h)))


class ConformerBlock(nn.Module):
    """Macaron conformer block ``(B, T, D) -> (B, T, D)``: ``x + FF/2``, ``x + MHSA``, ``x + Conv``, ``x + FF/2``,
    LayerNorm. Attention takes an additive mask ``(B|1, H, T, S)`` (chunk mask + relative bias) over ``S`` keys:
    the new frames, after the cached ones when a :class:`LayerCache` is given."""

    def __init__(self, cfg: ContentConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_heads, self.head_dim, self.attn_impl = cfg.n_heads, d // cfg.n_heads, cfg.attn_impl
        self.ff1 = FeedForward(d, cfg.ffn, cfg.dropout)
        self.attn_norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.attn_out = nn.Linear(d, d)
        self.conv = ConvModule(d, cfg.conv_kernel, cfg.dropout)
        self.ff2 = FeedForward(d, cfg.ffn, cfg.dropout)
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)  # on the attention output (no attention-probability dropout)

    def _attend(self, x: torch.Tensor, mask: torch.Tensor, cache: LayerCache | None, keep: int) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(self.attn_norm(x)).view(b, t, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # (B, T, 3, H, Dh) -> 3 x (B, H, T, Dh)
        if cache is not None:
            k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)  # (B, H, S, Dh)
            start = k.shape[2] - min(keep, k.shape[2])
            cache.k, cache.v = k[:, :, start:], v[:, :, start:]  # the last L chunks (bounded memory)
        y = attention(q, k, v, mask.to(q.dtype), self.attn_impl)  # type: ignore[arg-type]
        y = y.transpose(1, 2).reshape(b, t, d)  # (B, H, T, Dh) -> (B, T, H, Dh) -> (B, T, D)
        return self.dropout(self.attn_out(y))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, cache: LayerCache | None = None, keep: int = 0
    ) -> torch.Tensor:
        """``keep``: key frames a cache retains after this call (``L * c``)."""
        x = x + 0.5 * self.ff1(x)
        x = x + self._attend(x, mask, cache, keep)
        x = x + self.conv(x, cache.conv if cache is not None else None)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)
