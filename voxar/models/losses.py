"""Vocoder training losses: multi-resolution STFT, mel L1, adversarial (hinge or least squares), feature matching.

Shapes: B batch, T samples, F frequency bins, N frames. Waveform losses take ``(B, T)`` prediction and target of
the same length and return a scalar; they are computed in float32 (cast inside), so they can be called on the output
of a bf16-autocast generator. Every loss is exactly 0 for identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from voxar.audio import LogMelSpectrogram, MelConfig

AdvKind = Literal["hinge", "lsgan"]


def _check_pair(y_hat: torch.Tensor, y: torch.Tensor) -> None:
    if y_hat.shape != y.shape or y.dim() != 2:
        shapes = f"{tuple(y_hat.shape)} and {tuple(y.shape)}"
        raise ValueError(f"expected prediction and target of the same (B, T) shape, got {shapes}")


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence plus log-magnitude L1, averaged over STFT resolutions ``(n_fft, hop, win)``.

    Spectral convergence is ``|| |Y| - |Y_hat| ||_F / || |Y| ||_F`` over the batch; the log-magnitude term is the mean
    of ``|log |Y| - log |Y_hat||``. Magnitudes are floored at ``sqrt(eps)`` (finite gradients at silence).
    """

    def __init__(
        self,
        resolutions: Sequence[Sequence[int]] = ((512, 128, 512), (1024, 256, 1024), (256, 64, 256)),
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        if not resolutions:
            raise ValueError("MultiResolutionSTFTLoss needs at least one resolution")
        self.resolutions = [tuple(int(v) for v in r) for r in resolutions]
        self.eps = eps
        for i, (_, _, win) in enumerate(self.resolutions):
            self.register_buffer(f"window{i}", torch.hann_window(win), persistent=False)

    def _magnitude(self, x: torch.Tensor, i: int) -> torch.Tensor:
        n_fft, hop, win = self.resolutions[i]
        spec = torch.stft(
            x, n_fft, hop, win, window=getattr(self, f"window{i}"), center=True, return_complex=True
        )  # (B, F, N) complex
        return torch.view_as_real(spec).pow(2).sum(-1).clamp(min=self.eps).sqrt()  # (B, F, N, 2) -> (B, F, N)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` prediction and target -> scalar loss (mean over resolutions of convergence + log-magnitude)."""
        _check_pair(y_hat, y)
        y_hat, y = y_hat.float(), y.float()
        total = y.new_zeros(())
        for i in range(len(self.resolutions)):
            m_hat, m = self._magnitude(y_hat, i), self._magnitude(y, i)
            sc = torch.linalg.vector_norm(m - m_hat) / torch.linalg.vector_norm(m).clamp(min=self.eps)
            mag = F.l1_loss(torch.log(m_hat), torch.log(m))
            total = total + sc + mag
        return total / len(self.resolutions)


class MelL1Loss(nn.Module):
    """Mean absolute difference of log-mel spectrograms (:class:`voxar.audio.LogMelSpectrogram` of ``cfg``)."""

    def __init__(self, cfg: MelConfig | None = None) -> None:
        super().__init__()
        self.mel = LogMelSpectrogram(cfg)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` prediction and target -> scalar loss."""
        _check_pair(y_hat, y)
        return F.l1_loss(self.mel(y_hat.float()), self.mel(y.float()))


def discriminator_loss(
    real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor], kind: AdvKind = "hinge"
) -> torch.Tensor:
    """Adversarial loss of the discriminators, averaged over sub-discriminators.

    ``real``/``fake``: per sub-discriminator logits ``(B, L_k)`` for real and generated audio. Hinge:
    ``relu(1 - D(x)) + relu(1 + D(G(z)))``; least squares: ``(1 - D(x))^2 + D(G(z))^2``.
    """
    total = real[0].new_zeros((), dtype=torch.float32)
    for r, f in zip(real, fake, strict=True):
        r, f = r.float(), f.float()
        if kind == "hinge":
            total = total + F.relu(1 - r).mean() + F.relu(1 + f).mean()
        elif kind == "lsgan":
            total = total + (1 - r).pow(2).mean() + f.pow(2).mean()
        else:
            raise ValueError(f"adversarial loss must be 'hinge' or 'lsgan', got {kind!r}")
    return total / len(real)


def generator_loss(fake: Sequence[torch.Tensor], kind: AdvKind = "hinge") -> torch.Tensor:
    """Adversarial loss of the generator, averaged over sub-discriminators: hinge ``relu(1 - D(G(z)))`` (as Vocos),
    least squares ``(1 - D(G(z)))^2``."""
    total = fake[0].new_zeros((), dtype=torch.float32)
    for f in fake:
        f = f.float()
        if kind == "hinge":
            total = total + F.relu(1 - f).mean()
        elif kind == "lsgan":
            total = total + (1 - f).pow(2).mean()
        else:
            raise ValueError(f"adversarial loss must be 'hinge' or 'lsgan', got {kind!r}")
    return total / len(fake)


def feature_matching_loss(
    fmaps_real: Sequence[Sequence[torch.Tensor]], fmaps_fake: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """L1 between the discriminators' hidden activations on real and generated audio: summed over layers, averaged
    over sub-discriminators. The real activations are treated as constants (detached)."""
    total = fmaps_fake[0][0].new_zeros((), dtype=torch.float32)
    for real, fake in zip(fmaps_real, fmaps_fake, strict=True):
        for r, f in zip(real, fake, strict=True):
            total = total + F.l1_loss(f.float(), r.detach().float())
    return total / len(fmaps_real)
