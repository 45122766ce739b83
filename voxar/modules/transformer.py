"""Pre-norm transformer stack: RMSNorm, SwiGLU/GELU MLP, blocks of rotary self-attention, KV caches.

``Transformer.forward(x (B, T, D), positions (B, T), mask, caches)`` runs every block as
``x + attn(norm(x))`` then ``x + mlp(norm(x))`` and a final RMSNorm. Positions are explicit (rotary, see
:mod:`voxar.modules.attention`), the mask is whatever the caller builds (causal, chunk-causal, prefix, padding), and
with ``caches`` (one :class:`~voxar.modules.attention.KVCache` per block, from :meth:`Transformer.init_caches`) the
new tokens attend to everything cached before them, so a model can prefill once and then decode step by step.

Legend: B batch, T (new) time steps, S key slots (cached + new), D model width, F MLP hidden width.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from voxar.modules.attention import AttnImpl, KVCache, MultiHeadAttention, RotaryEmbedding

MlpKind = Literal["swiglu", "gelu"]


class RMSNorm(nn.Module):
    """``x / rms(x) * weight`` over the last axis (no mean subtraction, no bias); any leading shape."""

    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return y * self.weight if self.weight is not None else y


class MLP(nn.Module):
    """Position-wise feed-forward ``(..., D) -> (..., D)``: SwiGLU ``W2(silu(W1 x) * W3 x)`` or ``W2(gelu(W1 x))``."""

    def __init__(self, dim: int, hidden: int, kind: MlpKind = "swiglu", dropout: float = 0.0) -> None:
        super().__init__()
        if kind not in ("swiglu", "gelu"):
            raise ValueError(f"MLP kind must be 'swiglu' or 'gelu', got {kind!r}")
        self.kind = kind
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False) if kind == "swiglu" else None
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.w1(x)) * self.w3(x) if self.w3 is not None else F.gelu(self.w1(x))
        return self.dropout(self.w2(h))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + drop(attn(norm1(x)))``, then ``x + mlp(norm2(x))``; ``(B, T, D) -> (B, T, D)``."""

    def __init__(
        self,
        dim: int,
        n_heads: int,
        ffn: int,
        dropout: float = 0.0,
        mlp: MlpKind = "swiglu",
        attn_impl: AttnImpl = "math",
    ) -> None:
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.attn = MultiHeadAttention(dim, n_heads, dropout=dropout, impl=attn_impl)
        self.norm2 = RMSNorm(dim)
        self.mlp = MLP(dim, ffn, mlp, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        impl: AttnImpl | None = None,
        probs_out: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), rope, mask, cache, impl, probs_out))
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """A stack of :class:`TransformerBlock` with shared rotary positions and a final RMSNorm.

    Args:
        dim: width D; n_layers: blocks; n_heads: heads (``dim // n_heads`` even); ffn: MLP hidden width F;
        dropout: residual/attention/MLP dropout; mlp: ``"swiglu"`` or ``"gelu"``;
        attn_impl: ``"math"`` (forward-mode AD safe) or ``"sdpa"`` (fast); rope_base: rotary base.
    """

    def __init__(
        self,
        dim: int,
        n_layers: int,
        n_heads: int,
        ffn: int,
        dropout: float = 0.0,
        mlp: MlpKind = "swiglu",
        attn_impl: AttnImpl = "math",
        rope_base: float = 10000.0,
    ) -> None:
        super().__init__()
        self.dim, self.n_heads = dim, n_heads
        self.rope = RotaryEmbedding(dim // n_heads, rope_base)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, n_heads, ffn, dropout, mlp, attn_impl) for _ in range(n_layers)
        )
        self.norm = RMSNorm(dim)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
        impl: AttnImpl | None = None,
        probs_from: tuple[int, ...] = (),
        probs_out: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``x (B, T, D)``, ``positions (B, T)`` int, ``mask`` broadcastable to ``(B, H, T, S)`` -> ``(B, T, D)``.

        With ``caches`` (one per block) the new keys/values are appended and ``S`` counts cached + new slots.
        The attention probabilities ``(B, H, T, S)`` of the blocks listed in ``probs_from`` are appended to
        ``probs_out`` in block order (those blocks use the math kernel).
        """
        if caches is not None and len(caches) != len(self.blocks):
            raise ValueError(f"expected {len(self.blocks)} KV caches, got {len(caches)}")
        rope = self.rope(positions)
        for i, block in enumerate(self.blocks):
            out = probs_out if i in probs_from else None
            x = block(x, rope, mask, caches[i] if caches is not None else None, impl, out)
        return self.norm(x)

    def init_caches(
        self,
        batch_size: int,
        capacity: int,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        max_capacity: int | None = None,
    ) -> list[KVCache]:
        """Empty KV caches (one per block) with ``capacity`` preallocated slots each."""
        head_dim = self.dim // self.n_heads
        return [
            KVCache.empty(batch_size, self.n_heads, head_dim, capacity, device, dtype, max_capacity)
            for _ in self.blocks
        ]
