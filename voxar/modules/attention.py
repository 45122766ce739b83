"""Multi-head self-attention: rotary positions with explicit offsets, boolean/additive masks, and a KV cache.

Two interchangeable kernels compute ``softmax(Q K^T / sqrt(Dh) + mask) V``:

- ``"math"``: written out (``Q K^T -> mask -> softmax -> V``). It supports forward-mode AD, so it is the
  **required** path wherever a ``torch.func.jvp`` can reach (PyTorch's flash / memory-efficient / CPU-flash SDPA
  kernels have no forward-mode AD), and it is the reference in tests.
- ``"sdpa"``: ``F.scaled_dot_product_attention``, the fast path for training modules no JVP reaches and for inference.

Masks are either boolean, ``True`` = "may attend" (the :mod:`torch` SDPA convention), or additive floats
(``0`` / ``-inf``), broadcastable to ``(B, H, T_q, T_k)``. Every query row must allow at least one key, otherwise the
softmax is NaN (callers let padding rows attend to themselves).

Positions are explicit integer tensors ``(B, T)`` so a cached decoder continues at any offset, and batch items may
have different offsets (e.g. text prefixes of different lengths).

:class:`KVCache` holds the keys and values of one layer in a preallocated buffer of ``capacity`` slots. Appending
beyond it reallocates (doubling), up to ``max_capacity`` where it raises a clear error; :meth:`KVCache.truncate`
rolls back (drops the newest slots).

Legend: B batch, T (new) time steps, S cached + new key slots, H heads, Dh head dim, D model dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

AttnImpl = Literal["math", "sdpa"]


# ------------------------------------------------------------------------------------------------ rotary embedding
class RotaryEmbedding(nn.Module):
    """Rotary position embedding (rotate-half layout) for heads of ``head_dim`` (even) channels.

    ``forward(positions (B, T) int)`` -> ``(cos, sin)``, each ``(B, 1, T, head_dim // 2)`` (float32), shared by
    all layers of a stack; :func:`apply_rope` rotates queries/keys with them.
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head dim, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (Dh/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = positions.to(torch.float32)[..., None] * self.inv_freq  # (B, T, 1) * (Dh/2,) -> (B, T, Dh/2)
        angles = angles[:, None]  # (B, T, Dh/2) -> (B, 1, T, Dh/2), broadcast over heads
        return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x (B, H, T, Dh)`` by the angles of ``cos``/``sin (B, 1, T, Dh/2)``; pairs are ``(i, i + Dh/2)``."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


# ------------------------------------------------------------------------------------------------ KV cache
@dataclass
class KVCache:
    """Keys/values of one attention layer: ``k``, ``v`` ``(B, H, capacity, Dh)``, of which ``length`` are used.

    ``max_capacity`` (None = unbounded) caps growth by reallocation; :meth:`append` beyond it raises.
    """

    k: torch.Tensor
    v: torch.Tensor
    length: int = 0
    max_capacity: int | None = None

    @classmethod
    def empty(
        cls,
        batch_size: int,
        n_heads: int,
        head_dim: int,
        capacity: int,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        max_capacity: int | None = None,
    ) -> KVCache:
        """A cache with ``capacity`` preallocated slots (at least 1)."""
        shape = (batch_size, n_heads, max(1, capacity), head_dim)
        k = torch.zeros(shape, device=device, dtype=dtype)
        return cls(k, torch.zeros_like(k), 0, max_capacity)

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``, ``v`` ``(B, H, T, Dh)`` after the used slots; returns all used ``(B, H, S, Dh)`` views."""
        need = self.length + k.shape[2]
        if need > self.capacity:
            if self.max_capacity is not None and need > self.max_capacity:
                raise RuntimeError(
                    f"KV cache is full: {need} slots needed, max_capacity is {self.max_capacity} "
                    "(raise the model's max_patches / max_text_len, or generate shorter segments)"
                )
            new_cap = max(need, 2 * self.capacity)
            if self.max_capacity is not None:
                new_cap = min(new_cap, self.max_capacity)
            grown_k = self.k.new_zeros(self.k.shape[0], self.k.shape[1], new_cap, self.k.shape[3])
            grown_v = self.v.new_zeros(grown_k.shape)
            grown_k[:, :, : self.length] = self.k[:, :, : self.length]
            grown_v[:, :, : self.length] = self.v[:, :, : self.length]
            self.k, self.v = grown_k, grown_v
        self.k[:, :, self.length : need] = k.to(self.k.dtype)
        self.v[:, :, self.length : need] = v.to(self.v.dtype)
        self.length = need
        return self.k[:, :, :need], self.v[:, :, :need]

    def truncate(self, length: int) -> None:
        """Forget the slots from ``length`` on (roll back)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a KV cache of length {self.length} to {length}")
        self.length = length


# ------------------------------------------------------------------------------------------------ kernels
def math_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    probs_out: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Explicit attention (forward-mode AD safe). ``q (B, H, T, Dh)``, ``k``/``v (B, H, S, Dh)`` -> ``(B, H, T, Dh)``.

    ``mask``: bool (True = attend) or additive float, broadcastable to ``(B, H, T, S)``. ``probs_out``: a list the
    attention probabilities ``(B, H, T, S)`` (before dropout, with their graph) are appended to.
    """
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B,H,T,Dh) @ (B,H,Dh,S) -> (B,H,T,S)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.to(scores.dtype)
    probs = torch.softmax(scores, dim=-1)
    if probs_out is not None:
        probs_out.append(probs)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    return torch.matmul(probs, v)  # (B, H, T, S) @ (B, H, S, Dh) -> (B, H, T, Dh)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    impl: AttnImpl = "math",
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(Dh) + mask) v`` with the chosen kernel; shapes as in :func:`math_attention`."""
    if impl == "math":
        return math_attention(q, k, v, mask, dropout_p)
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    raise ValueError(f"attention impl must be 'math' or 'sdpa', got {impl!r}")


# ------------------------------------------------------------------------------------------------ module
class MultiHeadAttention(nn.Module):
    """Multi-head self-attention with rotary positions and an optional KV cache.

    Args:
        d_model: model width D (a multiple of ``n_heads``).
        n_heads: heads H; ``head_dim = D // H`` must be even (rotary).
        dropout: attention-probability dropout (training only).
        impl: default kernel, ``"math"`` or ``"sdpa"`` (see the module docstring); ``forward(impl=...)`` overrides.
        bias: biases on the projections.
    """

    def __init__(
        self, d_model: int, n_heads: int, dropout: float = 0.0, impl: AttnImpl = "math", bias: bool = False
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not a multiple of n_heads {n_heads}")
        if impl not in ("math", "sdpa"):
            raise ValueError(f"attention impl must be 'math' or 'sdpa', got {impl!r}")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.impl: AttnImpl = impl
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        impl: AttnImpl | None = None,
        probs_out: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``x (B, T, D)`` -> ``(B, T, D)``.

        ``rope``: ``(cos, sin)`` of the new tokens' positions (:class:`RotaryEmbedding`); ``mask`` broadcastable
        to ``(B, H, T, S)`` where ``S`` = cached + new slots (``S = T`` without a cache); ``cache``: appended to in
        place, the new keys occupying its last ``T`` slots. ``probs_out``: run the math kernel and append its
        attention probabilities ``(B, H, T, S)`` there (for attention losses).
        """
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # (B, T, 3, H, Dh) -> 3 x (B, H, T, Dh)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, S, Dh)
        p = self.dropout if self.training else 0.0
        if probs_out is not None:
            y = math_attention(q, k, v, mask, p, probs_out)  # (B, H, T, Dh)
        else:
            y = attention(q, k, v, mask, impl or self.impl, p)  # (B, H, T, Dh)
        y = y.transpose(1, 2).reshape(b, t, d)  # (B, H, T, Dh) -> (B, T, H, Dh) -> (B, T, D)
        return self.out(y)
