"""Fused inference step of :class:`voxar.models.vocoder.Vocoder` (exact stream mode, autograd off).

``Vocoder.step`` runs this path whenever autograd is off (``torch.no_grad`` / ``torch.inference_mode``) and
``model.fused_step`` is True (the default); otherwise, and for ``flush``, it runs the reference per-module path.
Both compute the same function up to float rounding and share one state, so they can alternate within a stream.

What makes it cheaper for chunks of a few frames (where per-op overhead, not arithmetic, dominates on CPU):

- activations stay time-major ``(B, n, D)`` from the embed conv to the head: no transposes, Linear layers take
  them as they are;
- the embed conv is one Linear over flattened input windows, the depthwise convs a multiply-sum over strided
  windows of the cached context (:meth:`~voxar.modules.conv.StreamingConv1d.step_windows`) instead of ``conv1d``
  (oneDNN's fixed cost per call is ~10x the arithmetic here);
- LayerNorm affines and layer scales are folded into the neighbouring Linear weights (:class:`FusedWeights`);
- the spectrum is built with one ``torch.polar`` and the ISTFT reuses cached window envelopes.

Legend: B batch, M mel bins, n input frames, m output frames of a layer, k kernel size, D model dim,
F = n_fft // 2 + 1 frequency bins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from voxar.models.vocoder import Vocoder, VocoderState


class FusedWeights:
    """Inference copy of a vocoder's weights for :func:`step_fused`. A plain class (not a dataclass), so
    :func:`~voxar.modules.clone_state` shares it between state copies. Folding is exact up to float rounding:

    - each block's LayerNorm affine goes into ``pwconv1`` (``W1 diag(g)``, ``b1 + W1 beta``) and its layer scale
      into ``pwconv2`` (``diag(gamma) W2``, ``gamma b2``); the final LayerNorm affine goes into the head Linear;
    - the embed conv weight ``(D, M, k)`` becomes a Linear weight ``(D, k * M)`` over time-major windows;
    - depthwise kernels are stored time-major, ``(k, D)``.

    ``key`` is :func:`weights_key` of the model the weights were taken from.
    """

    def __init__(self, model: Vocoder) -> None:
        def fold_norm(w: torch.Tensor, b: torch.Tensor, norm: torch.nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor]:
            return (w * norm.weight).contiguous(), b + w @ norm.bias  # (O, D) * (D,); (O,) + (O, D) @ (D,)

        with torch.inference_mode(False), torch.no_grad():  # plain tensors, whatever mode the caller is in
            embed = model.embed.conv.weight  # (D, M, k)
            self.embed_w = embed.permute(0, 2, 1).reshape(embed.shape[0], -1).contiguous()  # -> (D, k, M) -> flat
            self.embed_b = model.embed.conv.bias.detach()
            self.norm = (model.norm.weight.detach(), model.norm.bias.detach())
            self.blocks: list[tuple[torch.Tensor, ...]] = []
            for blk in model.blocks:
                w1, b1 = fold_norm(blk.pwconv1.weight, blk.pwconv1.bias, blk.norm)
                w2, b2 = blk.pwconv2.weight.detach(), blk.pwconv2.bias.detach()
                if blk.gamma is not None:
                    w2, b2 = (blk.gamma[:, None] * w2).contiguous(), blk.gamma * b2
                dw = blk.dwconv.conv.weight[:, 0, :].t().contiguous()  # (D, 1, k) -> (k, D)
                self.blocks.append((dw, blk.dwconv.conv.bias.detach(), w1, b1, w2, b2))
            self.head = fold_norm(model.head.out.weight, model.head.out.bias, model.final_norm)
        self.key = weights_key(model)


def weights_key(model: torch.nn.Module) -> tuple:
    """Identity, storage and version of every parameter: changes when a weight is replaced or updated in place."""
    return tuple((id(p), p.data_ptr(), p._version) for p in model.parameters())


def fused_weights(model: Vocoder) -> FusedWeights:
    """The :class:`FusedWeights` of the model's current parameters (cached on the model until one changes)."""
    cached = getattr(model, "_fused_cache", None)
    if cached is None or cached.key != weights_key(model):
        cached = model._fused_cache = FusedWeights(model)
    return cached


def step_fused(model: Vocoder, mel: torch.Tensor, state: VocoderState) -> torch.Tensor:
    """One exact-stream step: mel chunk ``(B, M, n)`` (n >= 1) -> the samples ``(B, l)`` that became final.

    Uses (and on first use sets) ``state.fused``; must run with autograd off.
    """
    if state.fused is None:
        state.fused = fused_weights(model)
    fw, dim, batch = state.fused, model.cfg.dim, mel.shape[0]
    win = model.embed.step_windows(mel.transpose(1, 2), state.embed)  # (B, M, n) -> (B, n, M) -> (B, m, k, M)
    if win is None:
        return state.istft.tail.new_zeros(batch, 0)
    x = F.linear(win.reshape(batch, win.shape[1], -1), fw.embed_w, fw.embed_b)  # (B, m, k * M) -> (B, m, D)
    x = F.layer_norm(x, (dim,), *fw.norm, eps=1e-6)
    for blk, bstate, (dw, dw_b, w1, b1, w2, b2) in zip(model.blocks, state.blocks, fw.blocks, strict=True):
        win = blk.dwconv.step_windows(x, bstate.conv)  # (B, m, k, D)
        m = 0 if win is None else win.shape[1]
        if blk.lookahead:
            # The inputs still waiting for their residual are the newest frames of the conv cache: keep them as a
            # view of it (the reference path reads ``pending``); the residual of output t is its window's centre.
            waiting = bstate.pending.shape[-1] + x.shape[1] - m
            bstate.pending = bstate.conv.cache[..., bstate.conv.cache.shape[-1] - waiting :]  # (B, D, waiting)
        if win is None:
            return state.istft.tail.new_zeros(batch, 0)
        residual = win[:, :, blk.dwconv.left_pad]  # (B, m, D): input t sits at tap left_pad of window t
        h = (win * dw).sum(dim=2).add_(dw_b)  # (B, m, k, D) * (k, D) -> (B, m, D)
        h = F.linear(F.gelu(F.linear(F.layer_norm(h, (dim,), eps=1e-6), w1, b1)), w2, b2)
        x = h.add_(residual)
    out = F.linear(F.layer_norm(x, (dim,), eps=1e-6), *fw.head).float()  # (B, m, n_fft + 2), fp32 as the reference
    bins = model.cfg.n_fft // 2 + 1
    spec = torch.polar(out[..., :bins].exp().clamp_(max=1e2), out[..., bins:])  # (B, m, F) complex
    istft = model.head.istft
    frames = torch.fft.irfft(spec, n=istft.n_fft, dim=-1) * istft.window.to(out.dtype)  # (B, m, n_fft)
    wav, state.istft = istft.step_frames(frames.transpose(1, 2), state.istft)  # (B, m, n_fft) -> (B, n_fft, m)
    return wav
