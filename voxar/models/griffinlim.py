"""Griffin-Lim vocoder: a training-free, deterministic baseline behind the :class:`~voxar.models.vocoder.Vocoder`
interface (``forward(mel (B, M, T)) -> wav (B, T * hop)`` plus the streaming API).

Log-mel -> linear magnitude with the pseudo-inverse of the (librosa) mel filterbank -> fast Griffin-Lim (momentum
0.99, Perraudin et al. 2013) with ``torch.stft`` / ``torch.istft`` using the analysis settings of the mel config.
The initial phase is a fixed pseudo-random function of (frequency bin, absolute frame index), so results are
deterministic and a streamed block starts from the same phase as the full pass.

Streaming re-runs Griffin-Lim on blocks: ``block_frames`` new frames with ``context_frames`` of left context and
``lookahead_frames`` of right context, joined by a linear cross-fade of ``fade_frames * hop`` samples. Its output is
close to the full pass but not equal (Griffin-Lim is iterative and global). ``lookahead`` (worst case, in frames) is
``block_frames - 1 + lookahead_frames``; ``hold_back`` is the cross-fade length in samples.

Legend: B batch, M mel bins, F = n_fft // 2 + 1 frequency bins, T frames, L samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from voxar.errors import VoxarConfigError
from voxar.modules.streaming import StreamingModule


@dataclass
class GriffinLimState:
    """Block stream: buffered mel ``(B, M, k)`` starting at absolute frame ``buf_start``, the next block's first
    frame, frames received, and the held cross-fade samples ``tail (B, <= fade)``."""

    mel: torch.Tensor
    tail: torch.Tensor
    buf_start: int = 0
    next_frame: int = 0
    frames: int = 0


class GriffinLimVocoder(StreamingModule):
    """Log-mel -> waveform by mel pseudo-inverse + Griffin-Lim. ``mel_cfg`` defaults to the ``16k`` preset."""

    def __init__(
        self,
        mel_cfg: Any = None,
        n_iter: int = 32,
        momentum: float = 0.99,
        block_frames: int = 16,
        context_frames: int = 16,
        lookahead_frames: int = 4,
        fade_frames: int = 2,
    ) -> None:
        super().__init__()
        from voxar.audio.features import MelConfig, mel_filterbank

        self.mel_cfg = mel_cfg if mel_cfg is not None else MelConfig.preset("16k")
        if not self.mel_cfg.center:
            raise VoxarConfigError("GriffinLimVocoder needs a centred mel analysis (MelConfig.center=True)")
        if n_iter < 0 or not 0 <= momentum < 1:
            raise VoxarConfigError(
                f"GriffinLimVocoder: need n_iter >= 0 and 0 <= momentum < 1, got {n_iter}, {momentum}"
            )
        if block_frames < 1 or context_frames < 0 or not 0 <= fade_frames <= lookahead_frames:
            raise VoxarConfigError("GriffinLimVocoder: need block_frames >= 1 and 0 <= fade_frames <= lookahead_frames")
        self.n_iter, self.momentum = n_iter, momentum
        self.block_frames, self.context_frames, self.lookahead_frames = block_frames, context_frames, lookahead_frames
        self.hop = self.mel_cfg.hop_length
        basis = torch.from_numpy(mel_filterbank(self.mel_cfg)).double()  # (M, F)
        self.register_buffer("mel_basis", basis.float(), persistent=False)
        self.register_buffer("inv_basis", torch.linalg.pinv(basis).float(), persistent=False)  # (F, M)
        self.register_buffer("window", torch.hann_window(self.mel_cfg.win_length, periodic=True), persistent=False)
        self.lookahead = block_frames - 1 + lookahead_frames
        self.hold_back = fade_frames * self.hop

    # ------------------------------------------------------------------------------------------------ full pass
    def magnitude(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(B, M, T)`` -> estimated linear STFT magnitude ``(B, F, T)`` (pseudo-inverse, >= 0)."""
        if mel.dim() != 3 or mel.shape[1] != self.mel_cfg.n_mels:
            raise VoxarConfigError(f"Griffin-Lim expects mel (B, {self.mel_cfg.n_mels}, T), got {tuple(mel.shape)}")
        energy = torch.matmul(self.inv_basis, torch.exp(mel.float())).clamp(min=0)  # (F, M) @ (B, M, T)
        return energy.sqrt() if self.mel_cfg.power == 2.0 else energy

    def _initial_phase(self, n_freqs: int, start: int, n: int, device: torch.device) -> torch.Tensor:
        """Fixed pseudo-random unit phasors ``(F, n)`` for absolute frames ``start .. start + n``."""
        f = torch.arange(n_freqs, device=device, dtype=torch.float64)[:, None]
        t = torch.arange(start, start + n, device=device, dtype=torch.float64)[None, :]
        u = torch.frac(torch.sin(f * 12.9898 + t * 78.233) * 43758.5453)
        return torch.polar(torch.ones_like(u), 2 * torch.pi * u).to(torch.complex64)

    def _stft(self, wav: torch.Tensor) -> torch.Tensor:
        c = self.mel_cfg
        return torch.stft(
            wav, c.n_fft, c.hop_length, c.win_length, self.window, center=True, pad_mode=c.pad_mode,
            return_complex=True,
        )  # fmt: skip

    def _istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        c = self.mel_cfg
        return torch.istft(spec, c.n_fft, c.hop_length, c.win_length, self.window, center=True, length=length)

    def griffin_lim(self, mag: torch.Tensor, start_frame: int = 0) -> torch.Tensor:
        """Magnitude ``(B, F, T)`` -> waveform ``(B, T * hop)`` (``start_frame`` only picks the initial phase)."""
        n = mag.shape[-1]
        length = n * self.hop
        if n == 0:
            return mag.new_zeros(mag.shape[0], 0)
        angles = self._initial_phase(mag.shape[1], start_frame, n, mag.device).expand(mag.shape[0], -1, -1)
        prev = torch.zeros_like(angles)
        for _ in range(self.n_iter):
            rebuilt = self._stft(self._istft(mag * angles, length))[..., :n]  # T * hop samples give T + 1 frames
            angles = rebuilt - prev * (self.momentum / (1 + self.momentum))
            angles = angles / (angles.abs() + 1e-16)
            prev = rebuilt
        return self._istft(mag * angles, length)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel (B, M, T)`` -> ``wav (B, T * hop)``."""
        return self.griffin_lim(self.magnitude(mel))

    def num_samples(self, num_frames: int) -> int:
        return num_frames * self.hop

    # ------------------------------------------------------------------------------------------------ streaming
    def init_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> GriffinLimState:
        device, dtype = self._default_device_dtype(device, dtype)
        return GriffinLimState(
            torch.zeros(batch_size, self.mel_cfg.n_mels, 0, device=device, dtype=dtype),
            torch.zeros(batch_size, 0, device=device, dtype=dtype),
        )

    def step(self, mel: torch.Tensor, state: GriffinLimState) -> tuple[torch.Tensor, GriffinLimState]:
        """Mel chunk ``(B, M, n)`` -> the samples of every block whose lookahead has arrived."""
        self.magnitude(mel[..., :0])  # shape check only
        state.mel = torch.cat([state.mel, mel.to(state.mel.dtype)], dim=-1)
        state.frames += mel.shape[-1]
        out = [state.tail.new_zeros(state.tail.shape[0], 0)]
        while state.frames - state.next_frame >= self.block_frames + self.lookahead_frames:
            out.append(self._block(state, state.next_frame + self.block_frames, final=False))
        return torch.cat(out, dim=-1), state

    def flush(self, state: GriffinLimState) -> torch.Tensor:
        """Decode the remaining frames (no right context left) and return all remaining samples."""
        if state.frames == state.next_frame:
            return state.tail
        return self._block(state, state.frames, final=True)

    def _block(self, state: GriffinLimState, end: int, final: bool) -> torch.Tensor:
        """Decode frames ``[next_frame, end)`` with context; emit up to ``end * hop`` (all when ``final``)."""
        start = state.next_frame
        w0 = max(state.buf_start, start - self.context_frames)
        w1 = state.frames if final else min(state.frames, end + self.lookahead_frames)
        window = state.mel[..., w0 - state.buf_start : w1 - state.buf_start]  # (B, M, w1 - w0)
        wav = self.griffin_lim(self.magnitude(window), start_frame=w0).to(state.tail.dtype)  # (B, (w1 - w0) * hop)
        seg_end = wav.shape[-1] if final else (end - w0) * self.hop + self.hold_back
        seg = wav[:, (start - w0) * self.hop : seg_end]
        fade = state.tail.shape[-1]
        ramp = torch.arange(1, fade + 1, device=seg.device, dtype=seg.dtype) / (fade + 1)
        seg = torch.cat([state.tail * (1 - ramp) + seg[:, :fade] * ramp, seg[:, fade:]], dim=-1)
        keep = 0 if final else self.hold_back
        state.tail = seg[:, seg.shape[-1] - keep :]
        state.next_frame = end
        drop = max(0, end - self.context_frames) - state.buf_start  # frames no later block needs
        state.mel, state.buf_start = state.mel[..., drop:], state.buf_start + drop
        return seg[:, : seg.shape[-1] - keep]
