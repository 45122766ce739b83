"""Building blocks of the chunk-wise autoregressive voice-conversion DiT (:mod:`voxar.models.vc`).

**Chunked layout.** The DiT works on chunks of ``C`` mel frames: hidden states are ``(N, n, C, D)`` (``n`` chunks)
and attention heads ``(N, H, n, C, Dh)``. A query chunk attends to

- itself (bidirectionally, masking padded frames), and
- its *past*: the keys/values of the clean chunks before it, at most ``lookback`` chunks back.

:func:`past_band` is the one rule saying which past chunks a query chunk may see; :func:`chunk_attention` applies it
with explicit "math" attention (forward-mode AD safe: the mean-flow JVP runs through it). Training and inference
call the same two functions with the same rule: in training the past is the whole clean sequence (every chunk at
once, teacher forced), in inference it is the bounded K/V cache of the last ``lookback`` generated chunks.

:class:`DiTBlock` is an AdaLN-zero transformer block (qk-LayerNorm, rotary positions, GELU MLP) split in two halves
(:meth:`DiTBlock.qkv` and :meth:`DiTBlock.finish`) so the caller decides what the queries attend to; rotary tables
come from :func:`rope_tables` (float64 angles: exact at any stream position). :class:`TimbreEncoder` is the
MRTE-style timbre encoder: cross-attention whose queries are the content features (BNF) and whose keys/values are
reference mel frames. Norms are LayerNorms (one fused kernel each; an RMSNorm costs ~20 small ops per call, which
matters at 4 tokens per streaming step).

Legend: N batch (or batch x chunks), n query chunks, C frames per chunk, P past frames, H heads, Dh head dim,
D width, R reference frames, M mel bins, Dc content (BNF) dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# ------------------------------------------------------------------------------------------------ rotary positions
def rope_tables(
    positions: torch.Tensor, head_dim: int, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary ``(cos, sin)`` tables ``(T, Dh)`` of integer ``positions (T,)`` (rotate-half layout, pairs
    ``(i, i + Dh/2)``). Angles are computed in float64, so a stream can run for hours (positions in the millions)
    with the same accuracy as at its start; keys are cached already rotated at their absolute position."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim)
    angles = positions.to(torch.float64)[:, None] * inv_freq  # (T, 1) * (Dh/2,) -> (T, Dh/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, Dh/2) -> (T, Dh)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply rotary tables ``(..., T, Dh)`` (broadcast) to ``x (..., T, Dh)``."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


# ------------------------------------------------------------------------------------------------ attention rule
def past_band(n: int, n_past: int, lookback: int, device: torch.device | None = None) -> torch.Tensor:
    """``(n, n_past)`` bool: may query chunk ``i`` see past chunk ``j``.

    The ``n`` query chunks are the last ``n`` chunks of a stream whose clean past holds ``n_past`` chunks, ending
    right before the *last* query chunk: query ``i`` comes right after past chunk ``i + o - 1`` with
    ``o = n_past - n + 1``, and sees past chunks ``i + o - lookback .. i + o - 1``. Training passes all chunks at
    once (past = clean chunks ``0 .. n-2``, ``o = 0``); streaming passes one chunk with a cache of ``lookback``
    chunks (``o = lookback``: the whole cache).
    """
    o = n_past - n + 1
    i = torch.arange(n, device=device)[:, None]
    j = torch.arange(n_past, device=device)[None, :]
    return (j >= i + o - lookback) & (j <= i + o - 1)


def chunk_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_past: torch.Tensor,
    v_past: torch.Tensor,
    past_allowed: torch.Tensor | None,
    self_ok: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of chunked queries to their own chunk and to allowed past frames (explicit math kernel).

    Args:
        q, k, v: ``(N, H, n, C, Dh)`` queries (already scaled by ``1/sqrt(Dh)``) and the same tokens' keys/values
            (rotary already applied).
        k_past, v_past: ``(N, H, P, Dh)`` past keys/values (``P`` frames, may be 0).
        past_allowed: ``(N | 1, n, P)`` bool: which past frames each query chunk may see (None: all).
        self_ok: ``(N, n, C)`` bool, the valid frames (None: all). Padded frames are never keys of valid frames;
            a padded query attends to itself so that no softmax row is empty.

    Returns ``(N, H, n, C, Dh)``. One streaming chunk (``n = 1``, no padding) takes a single-matmul path.
    """
    nb, h, n, c, dh = q.shape
    p = k_past.shape[2]
    if n == 1 and self_ok is None and p > 0:  # streaming: one chunk against the cache, keys [past ; self]
        q1 = q[:, :, 0]  # (N, H, 1, C, Dh) -> (N, H, C, Dh)
        s = torch.matmul(q1, torch.cat([k_past, k[:, :, 0]], dim=2).transpose(-2, -1))  # -> (N, H, C, P + C)
        if past_allowed is not None:  # only until the cache is full
            allow = torch.cat([past_allowed[:, 0], past_allowed.new_ones(past_allowed.shape[0], c)], dim=-1)
            s = s.masked_fill(~allow[:, None, None], float("-inf"))  # mask (N|1, 1, 1, P + C)
        out = torch.matmul(torch.softmax(s, dim=-1), torch.cat([v_past, v[:, :, 0]], dim=2))  # -> (N, H, C, Dh)
        return out[:, :, None]  # (N, H, C, Dh) -> (N, H, 1, C, Dh)
    s_self = torch.matmul(q, k.transpose(-2, -1))  # (N,H,n,C,Dh) @ (N,H,n,Dh,C) -> (N,H,n,C,C)
    if self_ok is not None:
        eye = torch.eye(c, dtype=torch.bool, device=q.device)
        allow = self_ok[:, :, None, :] | (eye & ~self_ok[:, :, :, None])  # (N, n, C_q, C_k)
        s_self = s_self.masked_fill(~allow[:, None], float("-inf"))
    if p == 0:
        return torch.matmul(torch.softmax(s_self, dim=-1), v)  # (N,H,n,C,C) @ (N,H,n,C,Dh) -> (N,H,n,C,Dh)
    q_flat = q.reshape(nb, h, n * c, dh)  # (N, H, n, C, Dh) -> (N, H, n*C, Dh)
    s_past = torch.matmul(q_flat, k_past.transpose(-2, -1)).view(nb, h, n, c, p)  # (N,H,n*C,P) -> (N,H,n,C,P)
    if past_allowed is not None:
        s_past = s_past.masked_fill(~past_allowed[:, None, :, None, :], float("-inf"))  # mask (N|1, 1, n, 1, P)
    probs = torch.softmax(torch.cat([s_past, s_self], dim=-1), dim=-1)  # (N, H, n, C, P + C)
    p_past, p_self = probs.split([p, c], dim=-1)
    out_past = torch.matmul(p_past.reshape(nb, h, n * c, p), v_past)  # (N,H,n*C,P) @ (N,H,P,Dh) -> (N,H,n*C,Dh)
    return out_past.view(nb, h, n, c, dh) + torch.matmul(p_self, v)  # + (N,H,n,C,C) @ (N,H,n,C,Dh)


# ------------------------------------------------------------------------------------------------ DiT block
class DiTBlock(nn.Module):
    """AdaLN-zero block over chunked tokens ``(N, n, C, D)``, in two halves around the attention kernel.

    ``mods = block.modulation(c)`` turns the condition ``c (N, n|1, 1, D)`` into six modulations (shift, 1 + scale
    and gate for attention, then for the MLP; zero-initialised, so the block starts as the identity; computed once
    per stream and sampling step in streaming). ``q, k, v = block.qkv(x, mods, cos, sin)`` gives heads
    ``(N, H, n, C, Dh)`` (queries and keys layer-normalised and rotated, queries scaled by ``1/sqrt(Dh)``);
    ``block.finish(x, y, mods)`` adds the attention output ``y`` and the MLP.
    """

    def __init__(self, dim: int, n_heads: int, ff_mult: int) -> None:
        super().__init__()
        if dim % n_heads or (dim // n_heads) % 2:
            raise ValueError(f"DiT width {dim} must split into {n_heads} heads of even size")
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv_proj = nn.Linear(dim, 3 * dim)
        self.qk_weight = nn.Parameter(torch.ones(2, 1, 1, 1, 1, self.head_dim))  # qk-norm gains (q, k)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = ff_mult * dim
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)
        scale = torch.ones(2, 1, 1, 1, 1, 1)
        scale[0] = self.head_dim**-0.5
        self.register_buffer("qk_scale", scale, persistent=False)  # the attention's 1/sqrt(Dh), folded into q

    def modulation(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``c (..., D)`` -> six ``(..., D)`` tensors: shift, 1 + scale, gate of the attention, then of the MLP."""
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(F.silu(c)).chunk(6, dim=-1)
        return sh1, 1 + sc1, g1, sh2, 1 + sc2, g2

    def qkv(
        self, x: torch.Tensor, mods: tuple[torch.Tensor, ...], cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x (N, n, C, D)``, rotary tables ``(1, 1, n, C, Dh)`` -> ``q, k, v`` each ``(N, H, n, C, Dh)``."""
        nb, n, c, d = x.shape
        h = self.norm1(x) * mods[1] + mods[0]
        qkv = self.qkv_proj(h).view(nb, n, c, 3, self.n_heads, self.head_dim)
        qkv = qkv.permute(3, 0, 4, 1, 2, 5)  # (N, n, C, 3, H, Dh) -> (3, N, H, n, C, Dh)
        qk = F.layer_norm(qkv[:2], (self.head_dim,), eps=1e-6) * (self.qk_weight * self.qk_scale)
        q, k = rotate(qk, cos, sin).unbind(0)
        return q, k, qkv[2]

    def finish(self, x: torch.Tensor, y: torch.Tensor, mods: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Residual attention output ``y (N, H, n, C, Dh)`` and MLP on ``x (N, n, C, D)`` -> ``(N, n, C, D)``."""
        nb, n, c, d = x.shape
        y = y.permute(0, 2, 3, 1, 4).reshape(nb, n, c, d)  # (N, H, n, C, Dh) -> (N, n, C, H, Dh) -> (N, n, C, D)
        x = x + mods[2] * self.out(y)
        return x + mods[5] * self.mlp(self.norm2(x) * mods[4] + mods[3])


# ------------------------------------------------------------------------------------------------ timbre encoder
class _CrossBlock(nn.Module):
    """Pre-norm cross-attention + MLP: ``x (B, T, D)`` attends to reference keys/values ``(B, H, R, Dh)``."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.norm_q = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(approximate="tanh"), nn.Linear(2 * dim, dim))

    def memory(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference features ``(B, R, D)`` -> keys, values ``(B, H, R, Dh)``."""
        b, r, d = ref.shape
        kv = self.kv(ref).view(b, r, 2, self.n_heads, self.head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4)  # (B, R, 2, H, Dh) -> 2 x (B, H, R, Dh)
        return k, v

    def forward(
        self, x: torch.Tensor, mem: tuple[torch.Tensor, torch.Tensor], ref_ok: torch.Tensor | None
    ) -> torch.Tensor:
        b, t, d = x.shape
        q = self.q(self.norm_q(x)).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # -> (B, H, T, Dh)
        k, v = mem
        s = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B,H,T,Dh) @ (B,H,Dh,R) -> (B,H,T,R)
        if ref_ok is not None:
            s = s.masked_fill(~ref_ok[:, None, None, :], float("-inf"))  # mask (B, 1, 1, R)
        y = torch.matmul(torch.softmax(s, dim=-1), v)  # (B, H, T, R) @ (B, H, R, Dh) -> (B, H, T, Dh)
        y = y.transpose(1, 2).reshape(b, t, d)  # (B, H, T, Dh) -> (B, T, H, Dh) -> (B, T, D)
        x = x + self.out(y)
        return x + self.mlp(self.norm_ff(x))


class TimbreEncoder(nn.Module):
    """MRTE-style timbre encoder: content frames (queries) attend to reference mel frames (keys/values).

    ``memory(ref (B, R, M))`` runs once per target voice (a list with one ``(k, v)`` per block);
    ``forward(bnf (B, T, Dc), memory, ref_ok (B, R) | None) -> (B, T, D)`` is frame-wise (no mixing over time), so
    any chunking of ``T`` gives the same result. No positions on the reference: it is a bag of frames.
    """

    def __init__(self, content_dim: int, n_mels: int, dim: int, n_blocks: int, n_heads: int) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"timbre width {dim} is not a multiple of {n_heads} heads")
        self.in_norm = nn.LayerNorm(content_dim)
        self.in_proj = nn.Linear(content_dim, dim)
        self.ref_proj = nn.Sequential(nn.Linear(n_mels, dim), nn.SiLU(), nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.blocks = nn.ModuleList(_CrossBlock(dim, n_heads) for _ in range(n_blocks))
        self.norm = nn.LayerNorm(dim)

    def memory(self, ref: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised reference mel frames ``(B, R, M)`` -> per block ``(k, v)``, each ``(B, H, R, Dh)``."""
        h = self.ref_proj(ref)
        return [block.memory(h) for block in self.blocks]

    def forward(
        self, bnf: torch.Tensor, memory: list[tuple[torch.Tensor, torch.Tensor]], ref_ok: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.in_proj(self.in_norm(bnf))
        for block, mem in zip(self.blocks, memory, strict=True):
            x = block(x, mem, ref_ok)
        return self.norm(x)


__all__ = ["DiTBlock", "TimbreEncoder", "chunk_attention", "past_band", "rope_tables", "rotate"]
