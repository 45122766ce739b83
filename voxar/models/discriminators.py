"""GAN discriminators of the Vocos/HiFi-GAN recipe: multi-period (MPD) and multi-resolution STFT (MRD).

Shapes: B batch, T samples, F frequency bins, N frames, C channels, P period.

Every discriminator maps a waveform ``(B, T)`` to ``(logits, fmaps)``: ``logits`` is a list (one entry per
sub-discriminator) of ``(B, L_k)`` score maps and ``fmaps`` a list (per sub-discriminator) of the hidden activations
used by the feature-matching loss. To score real and generated audio in one call (one DDP forward), concatenate them
along the batch and cut the outputs with :func:`split_outputs`. Sizes are constructor arguments so tests and the tiny
recipe can use small ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

Outputs = tuple[list[torch.Tensor], list[list[torch.Tensor]]]
LRELU_SLOPE = 0.1


class PeriodDiscriminator(nn.Module):
    """Scores a waveform folded into ``(T / P, P)`` columns with 2-D convolutions that span one column each."""

    def __init__(self, period: int, channels: Sequence[int] = (32, 128, 512, 1024), kernel_size: int = 5) -> None:
        super().__init__()
        self.period = int(period)
        convs = []
        c_in = 1
        for c in channels:
            convs.append(weight_norm(nn.Conv2d(c_in, c, (kernel_size, 1), (3, 1), padding=(kernel_size // 2, 0))))
            c_in = c
        convs.append(weight_norm(nn.Conv2d(c_in, c_in, (kernel_size, 1), 1, padding=(kernel_size // 2, 0))))
        self.convs = nn.ModuleList(convs)
        self.post = weight_norm(nn.Conv2d(c_in, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(B, T)`` -> logits ``(B, L)`` and the activations of each layer."""
        x = wav.unsqueeze(1)  # (B, T) -> (B, 1, T)
        pad = (-x.shape[-1]) % self.period
        if pad:
            x = F.pad(x, (0, pad), mode="reflect" if pad < x.shape[-1] else "constant")
        b, _, t = x.shape
        x = x.view(b, 1, t // self.period, self.period)  # (B, 1, T) -> (B, 1, T / P, P)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmaps.append(x)
        x = self.post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps  # (B, 1, T', P) -> (B, T' * P)


class MultiPeriodDiscriminator(nn.Module):
    """One :class:`PeriodDiscriminator` per period (HiFi-GAN/Vocos use 2, 3, 5, 7, 11)."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), channels: Sequence[int] = (32, 128, 512, 1024)):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, wav: torch.Tensor) -> Outputs:
        logits, fmaps = [], []
        for d in self.discriminators:
            score, fmap = d(wav)
            logits.append(score)
            fmaps.append(fmap)
        return logits, fmaps


class ResolutionDiscriminator(nn.Module):
    """Scores the STFT magnitude ``(B, 1, F, N)`` at one resolution; convolutions stride along frequency."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, channels: int = 32) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = int(n_fft), int(hop_length), int(win_length)
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        c = channels
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, c, (9, 3), padding=(4, 1))),
                weight_norm(nn.Conv2d(c, c, (9, 3), stride=(2, 1), padding=(4, 1))),
                weight_norm(nn.Conv2d(c, c, (9, 3), stride=(2, 1), padding=(4, 1))),
                weight_norm(nn.Conv2d(c, c, (9, 3), stride=(2, 1), padding=(4, 1))),
                weight_norm(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
            ]
        )
        self.post = weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(B, T)`` -> logits ``(B, L)`` and the activations of each layer."""
        spec = torch.stft(
            wav.float(),  # STFT in float32 even under autocast
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            return_complex=True,
        )  # (B, F, N) complex
        x = spec.abs().unsqueeze(1)  # (B, F, N) -> (B, 1, F, N)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmaps.append(x)
        x = self.post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps  # (B, 1, F', N) -> (B, F' * N)


class MultiResolutionDiscriminator(nn.Module):
    """One :class:`ResolutionDiscriminator` per ``(n_fft, hop_length, win_length)``."""

    def __init__(
        self,
        resolutions: Sequence[Sequence[int]] = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048)),
        channels: int = 32,
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(ResolutionDiscriminator(*r, channels=channels) for r in resolutions)

    def forward(self, wav: torch.Tensor) -> Outputs:
        logits, fmaps = [], []
        for d in self.discriminators:
            score, fmap = d(wav)
            logits.append(score)
            fmaps.append(fmap)
        return logits, fmaps


class VocoderDiscriminator(nn.Module):
    """MPD and MRD together (one module, so one optimiser and one DDP wrapper); outputs are MPD's then MRD's."""

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        period_channels: Sequence[int] = (32, 128, 512, 1024),
        resolutions: Sequence[Sequence[int]] = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048)),
        resolution_channels: int = 32,
    ) -> None:
        super().__init__()
        self.mpd = MultiPeriodDiscriminator(periods, period_channels)
        self.mrd = MultiResolutionDiscriminator(resolutions, resolution_channels)

    def forward(self, wav: torch.Tensor) -> Outputs:
        """``(B, T)`` -> ``(logits, fmaps)`` of ``len(periods) + len(resolutions)`` sub-discriminators."""
        logits_p, fmaps_p = self.mpd(wav)
        logits_r, fmaps_r = self.mrd(wav)
        return logits_p + logits_r, fmaps_p + fmaps_r


def split_outputs(outputs: Outputs, n_first: int) -> tuple[Outputs, Outputs]:
    """Cut the outputs of a batch ``cat([a, b])`` into those of ``a`` (the first ``n_first`` items) and ``b``."""
    logits, fmaps = outputs
    first = ([x[:n_first] for x in logits], [[f[:n_first] for f in fm] for fm in fmaps])
    second = ([x[n_first:] for x in logits], [[f[n_first:] for f in fm] for fm in fmaps])
    return first, second
