"""1-D convolutions that stream: causal (left padding only) and 'same' (centred, with lookahead).

Both are a stride-1 ``nn.Conv1d`` over an input zero-padded with ``left_pad`` frames on the left and ``lookahead``
frames on the right, ``left_pad + lookahead = (kernel_size - 1) * dilation``:

- :class:`StreamingConv1d` (default ``lookahead=0``) is causal: output ``t`` sees inputs ``<= t``.
- :class:`SameConv1d` is the usual non-causal ``padding=(k - 1) * dilation // 2`` conv (as in the published
  Vocos layout); it streams with a lookahead of ``(k - 1) * dilation // 2`` frames and a :meth:`flush` that applies
  the right zero padding at the end of the stream.

Streaming state: the last ``(k - 1) * dilation`` padded input frames (initially the ``left_pad`` zeros). Chunked
output equals ``forward`` exactly (the same ``conv1d`` over the same frames). Weights live in ``.conv`` (an
``nn.Conv1d`` without padding), so both variants have the same state-dict keys.

Shapes: input ``(B, C_in, T)``, output ``(B, C_out, T)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from voxar.modules.streaming import StreamingModule

SMALL_STEP = 4  # steps with at most this many output frames use StreamingConv1d._small_step (inference only)


@dataclass
class ConvState:
    """Streaming state of a conv: ``cache`` (B, C_in, <= (k - 1) * dilation) holds the last padded input frames."""

    cache: torch.Tensor


class StreamingConv1d(StreamingModule):
    """Stride-1 Conv1d with ``left_pad = (k - 1) * dilation - lookahead`` zeros on the left (causal by default).

    Args:
        in_channels, out_channels, kernel_size, dilation, groups, bias: as in ``nn.Conv1d`` (``groups=in_channels``
            gives a depthwise conv).
        lookahead: frames of right context (0 = causal); at most ``(k - 1) * dilation``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        lookahead: int = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, groups=groups, bias=bias)
        self.context = (kernel_size - 1) * dilation
        if not 0 <= lookahead <= self.context:
            raise ValueError(f"lookahead must be in [0, {self.context}], got {lookahead}")
        self.lookahead = lookahead
        self.left_pad = self.context - lookahead

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, T)`` -> ``(B, C_out, T)`` (whole sequence, zero padding on both ends)."""
        return self.conv(F.pad(x, (self.left_pad, self.lookahead)))

    def init_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> ConvState:
        device, dtype = self._default_device_dtype(device, dtype)
        return ConvState(torch.zeros(batch_size, self.conv.in_channels, self.left_pad, device=device, dtype=dtype))

    def step(self, x: torch.Tensor, state: ConvState) -> tuple[torch.Tensor, ConvState]:
        """Chunk ``(B, C_in, n)`` -> ``(B, C_out, m)``: every output whose receptive field is complete."""
        buf = torch.cat([state.cache, x.to(state.cache.dtype)], dim=-1)
        n_out = buf.shape[-1] - self.context
        if 0 < n_out <= SMALL_STEP and self.conv.dilation[0] == 1 and not torch.is_grad_enabled():
            y = self._small_step(buf)
        elif n_out > 0:
            y = self.conv(buf)
        else:
            y = buf.new_zeros(buf.shape[0], self.conv.out_channels, 0)
        state.cache = buf[..., buf.shape[-1] - min(buf.shape[-1], self.context) :]
        return y, state

    def _small_step(self, buf: torch.Tensor) -> torch.Tensor:
        """``conv(buf)`` for a few output frames ``(B, C_in, k - 1 + n) -> (B, C_out, n)`` as one matmul over the
        unfolded windows (depthwise: a multiply-sum): a live step of 1-2 frames costs a quarter of ``conv1d``'s
        fixed overhead on a CPU. Equal to ``conv1d`` up to float summation order."""
        w, b, k = self.conv.weight, self.conv.bias, self.conv.kernel_size[0]
        u = buf.unfold(-1, k, 1)  # (B, C_in, n, k): the window of each output frame
        if self.conv.groups == 1:
            bsz, c_in, n, _ = u.shape
            u = u.permute(0, 2, 1, 3).reshape(bsz * n, c_in * k)  # (B, C_in, n, k) -> (B * n, C_in * k)
            w2 = w.reshape(w.shape[0], c_in * k)  # (C_out, C_in, k) -> (C_out, C_in * k)
            y = torch.addmm(b, u, w2.T) if b is not None else u @ w2.T  # (B * n, C_out)
            return y.view(bsz, n, -1).transpose(1, 2)  # (B, n, C_out) -> (B, C_out, n)
        if self.conv.groups == w.shape[0] == buf.shape[1]:  # depthwise, one filter per channel
            y = (u * w[:, 0, None, :]).sum(-1)  # (B, C, n, k) * (C, 1, k) -> (B, C, n)
            return y + b[:, None] if b is not None else y
        return self.conv(buf)

    def step_windows(self, x: torch.Tensor, state: ConvState) -> torch.Tensor | None:
        """Inference helper for fused kernels: append *time-major* frames ``x (B, n, C_in)`` to the cache and return
        the input windows ``(B, m, k, C_in)`` of the ``m`` outputs that became final (None when ``m = 0``).

        ``windows[b, t, j] @ weight[:, :, j]`` summed over ``j`` (plus the bias) is output ``t`` of :meth:`step`.
        The windows are a strided view of one buffer (no copy); dilation must be 1. The cache is kept as a
        ``(B, C_in, c)`` view of that buffer, so :meth:`step` and :meth:`flush` continue the same stream.
        """
        if self.conv.dilation[0] != 1:
            raise ValueError("step_windows needs dilation 1")
        cache = state.cache.transpose(1, 2)  # (B, C, c) -> (B, c, C)
        buf = torch.cat([cache, x.to(cache.dtype)], dim=1)  # (B, c + n, C), contiguous
        total, channels = buf.shape[1], buf.shape[2]
        state.cache = buf[:, total - min(total, self.context) :].transpose(1, 2)  # (B, c', C) -> (B, C, c')
        m = total - self.context
        if m <= 0:
            return None
        k = self.context + 1
        return buf.as_strided((buf.shape[0], m, k, channels), (buf.stride(0), channels, channels, 1))

    def flush(self, state: ConvState) -> torch.Tensor | None:
        """The last ``lookahead`` outputs, computed with the right zero padding (None for a causal conv)."""
        if self.lookahead == 0:
            return None
        pad = state.cache.new_zeros(state.cache.shape[0], state.cache.shape[1], self.lookahead)
        y, state = self.step(pad, state)
        return y

    def extra_repr(self) -> str:
        return f"left_pad={self.left_pad}, lookahead={self.lookahead}"


class SameConv1d(StreamingConv1d):
    """Non-causal 'same' conv (``padding=(k - 1) * dilation // 2``), streamable with that many frames lookahead."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        context = (kernel_size - 1) * dilation
        if context % 2:
            raise ValueError(f"'same' padding needs an even (kernel_size - 1) * dilation, got {context}")
        super().__init__(in_channels, out_channels, kernel_size, dilation, groups, bias, lookahead=context // 2)
