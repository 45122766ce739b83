"""The trainable zero-shot TTS bundle: :class:`TTSModel` (patch LM + FM/MF flow heads) and its
:class:`TTSModelConfig` (what a TTS model directory's ``config.yaml`` holds). :meth:`TTSModel.forward` is the training
loss; inference lives in :class:`voxar.tts.TTS`, which re-exports both names.

Legend: B batch, Lt text tokens, M mel bins, T frames, N patches, F = P * M values per patch, D LM width.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from voxar.errors import VoxarConfigError
from voxar.models.heads import FlowHead, HeadConfig
from voxar.models.lm import LMConfig, PatchLM


def default_mf_head() -> HeadConfig:
    """The default MF head: the ``tiny`` size in mean-flow mode."""
    return HeadConfig.named("tiny", mode="mf")


@dataclass
class TTSModelConfig:
    """What a TTS model directory's ``config.yaml`` holds. ``tokenizer`` is :meth:`Tokenizer.to_dict`."""

    preset: str = "16k"
    lm: LMConfig = field(default_factory=LMConfig)
    fm_head: HeadConfig = field(default_factory=lambda: HeadConfig.named("tiny"))
    mf_head: HeadConfig | None = field(default_factory=default_mf_head)
    tokenizer: dict[str, Any] = field(default_factory=dict)
    feedback: bool = True  # decoding default: read generated patches back (False: text-pointer LMs only)
    # head that offline synthesis uses when none is named (streaming defaults to mf): the one the model's evaluation
    # found best ("mf" needs mf_head)
    default_head: str = "fm"

    def __post_init__(self) -> None:
        from voxar.audio import MelConfig

        if not self.feedback and not self.lm.pointer:
            raise VoxarConfigError("TTS config: feedback: false needs a text-pointer LM (lm.pointer: true)")
        if self.default_head not in ("fm", "mf"):
            raise VoxarConfigError(f"TTS config: default_head must be 'fm' or 'mf', got {self.default_head!r}")
        if self.default_head == "mf" and self.mf_head is None:
            raise VoxarConfigError("TTS config: default_head: mf needs an mf_head")

        mel = MelConfig.preset(self.preset)
        if mel.n_mels != self.lm.n_mels:
            raise VoxarConfigError(
                f"TTS config: preset {self.preset!r} has {mel.n_mels} mel bins, lm.n_mels is {self.lm.n_mels}"
            )
        for name, head in (("fm_head", self.fm_head), ("mf_head", self.mf_head)):
            if head is None:
                continue
            if head.mode != name[:2]:
                raise VoxarConfigError(f"TTS config: {name}.mode must be {name[:2]!r}, got {head.mode!r}")
            if head.patch_dim != self.lm.patch_dim or head.cond_dim != self.lm.d_model:
                raise VoxarConfigError(
                    f"TTS config: {name} needs patch_dim {self.lm.patch_dim} (lm patch_size * n_mels) and cond_dim "
                    f"{self.lm.d_model} (lm d_model), got {head.patch_dim} and {head.cond_dim}"
                )


class TTSModel(nn.Module):
    """The trainable bundle: ``lm`` (:class:`PatchLM`), ``fm_head`` and optional ``mf_head`` (:class:`FlowHead`).

    :meth:`forward` is the training loss, so one DDP wrapper covers everything.
    """

    def __init__(self, cfg: TTSModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.lm = PatchLM(cfg.lm)
        self.lm.feedback = cfg.feedback
        self.fm_head = FlowHead(cfg.fm_head)
        self.mf_head = FlowHead(cfg.mf_head) if cfg.mf_head is not None else None

    def heads(self) -> dict[str, FlowHead]:
        """The available heads by name (``"fm"``, ``"mf"``)."""
        return {"fm": self.fm_head, **({"mf": self.mf_head} if self.mf_head is not None else {})}

    def head(self, name: str) -> FlowHead:
        heads = self.heads()
        if name not in heads:
            raise VoxarConfigError(f"this TTS model has no {name!r} head; available: {', '.join(heads)}")
        return heads[name]

    def forward(
        self,
        text_ids: torch.Tensor,
        text_lens: torch.Tensor,
        mels: torch.Tensor,
        mel_lens: torch.Tensor,
        *,
        ref_mels: torch.Tensor | None = None,
        ref_lens: torch.Tensor | None = None,
        prompt_mels: torch.Tensor | None = None,
        prompt_lens: torch.Tensor | None = None,
        progress: float | None = None,
        mf_weight: float = 1.0,
        stop_weight: float = 1.0,
        align_weight: float = 0.0,
        align_layers: tuple[int, ...] = (),
        align_sigma: float = 0.2,
        align_heads: int = 0,
        ctc_weight: float = 0.0,
        ctc_targets: torch.Tensor | None = None,
        ctc_lens: torch.Tensor | None = None,
        sched_sampling: float = 0.0,
        pointer: torch.Tensor | None = None,
        text_start: torch.Tensor | None = None,
        pointer_weight: float = 1.0,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss ``fm + mf_weight * mf + stop_weight * stop + align_weight * align + ctc_weight * ctc`` and
        its parts (detached).

        ``text_ids (B, Lt)``, ``mels (B, M, T)`` raw log-mel targets, ``ref_mels (B, M, T_ref)`` the speaker
        reference, ``prompt_mels (B, M, T_p)`` for prompt-continuation batches (the text then starts with the
        prompt's transcript). ``progress`` in [0, 1] drives the MF ratio ramp. ``align_layers`` (with
        ``align_sigma``, ``align_heads``) adds the diagonal text-attention prior of :mod:`voxar.models.align`.
        ``ctc_targets (B, S)`` / ``ctc_lens (B,)``: the target text's phones for :meth:`PatchLM.ctc_loss` (with
        ``ctc_weight > 0``). ``sched_sampling`` p > 0: scheduled sampling against exposure bias -- a first pass
        without gradient predicts every target patch (one MF step, or one FM step from zero noise without an MF head:
        what generation feeds back), and each previous-patch input is that prediction with probability p
        (:meth:`PatchLM.forward`'s ``input_patches``). ``pointer (B, N)`` / ``text_start (B,)``: the aligned text
        pointer of LMs with ``lm.pointer`` (:mod:`voxar.models.pointer`); its advance loss counts ``pointer_weight``.
        """
        heads = self.heads()
        k = max(h.cfg.history for h in heads.values())
        cond = dict(ref_mels=ref_mels, ref_lens=ref_lens, prompt_mels=prompt_mels, prompt_lens=prompt_lens)
        if pointer is not None:
            cond.update(pointer=pointer, text_start=text_start)
        inputs = None
        if sched_sampling > 0:
            inputs = self._own_predictions(text_ids, text_lens, mels, mel_lens, sched_sampling, k, cond)
        out = self.lm(
            text_ids, text_lens, mels, mel_lens, **cond, n_history=k, align_layers=align_layers,
            align_sigma=align_sigma, align_heads=align_heads, input_patches=inputs,
        )  # fmt: skip
        m = out["mask"]
        x, h, hist, tmask = out["targets"][m], out["h"][m], out["history"][m], out["target_mask"][m]
        f = self.cfg.lm.patch_dim
        stop = self.lm.stop_loss(out)
        loss = stop_weight * stop
        stats = {"stop": stop.detach()}
        if "align" in out:
            loss = loss + align_weight * out["align"]
            stats["align"] = out["align"].detach()
        if pointer is not None:
            adv = self.lm.pointer_loss(out, pointer)
            loss = loss + pointer_weight * adv
            stats["pointer"] = adv.detach()
        if ctc_weight > 0:
            if ctc_targets is None or ctc_lens is None:
                raise ValueError("ctc_weight > 0 needs ctc_targets and ctc_lens")
            ctc = self.lm.ctc_loss(out, ctc_targets, ctc_lens)
            loss = loss + ctc_weight * ctc
            stats["ctc"] = ctc.detach()
        for name, head in heads.items():
            kh = head.cfg.history
            hist_h = hist[:, hist.shape[1] - kh * f :]  # the newest kh patches (history is oldest first)
            part, st = head.loss(x, h, hist_h, tmask, progress=progress)
            loss = loss + (mf_weight if name == "mf" else 1.0) * part
            stats[name] = part.detach()
            stats[f"{name}_mse"] = st["mse"]
        stats["loss"] = loss.detach()
        return loss, stats

    @torch.no_grad()
    def _own_predictions(
        self,
        text_ids: torch.Tensor,
        text_lens: torch.Tensor,
        mels: torch.Tensor,
        mel_lens: torch.Tensor,
        p: float,
        k: int,
        cond: dict[str, Any],
    ) -> torch.Tensor:
        """Scheduled-sampling inputs ``(B, N, F)``: each target patch replaced, with probability ``p``, by the
        model's teacher-forced one-step prediction of it (see :meth:`forward`)."""
        out = self.lm(text_ids, text_lens, mels, mel_lens, **cond, n_history=k)
        tgt, h, hist = out["targets"], out["h"], out["history"]  # (B, N, F), (B, N, D), (B, N, K*F)
        b, n, f = tgt.shape
        head = self.mf_head if self.mf_head is not None else self.fm_head
        kh = head.cfg.history
        hist_h = hist.reshape(b * n, -1)[:, hist.shape[2] - kh * f :] if kh else None
        noise = torch.randn(b * n, f, device=tgt.device, dtype=h.dtype)
        if head.cfg.mode == "fm":
            noise = torch.zeros_like(noise)  # one FM step from zero noise: the conditional mean
        pred = head.sample_patch(h.reshape(b * n, -1), hist_h, 1, noise=noise).reshape(b, n, f)
        use = torch.rand(b, n, 1, device=tgt.device) < p
        return torch.where(use, pred.to(tgt.dtype), tgt)
