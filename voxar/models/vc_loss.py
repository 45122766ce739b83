"""Training objective of the voice-conversion DiT (:class:`voxar.models.vc.VCModel`): mean flow or flow matching.

**Teacher forcing, every chunk at once.** The clean target mel (CMVN-normalised, cut into chunks of C frames and
zero-padded) runs through the clean stream; its keys/values are the *past* of every noisy chunk, masked by the same
rule (:func:`~voxar.models.vc_blocks.past_band`) and computed by the same functions
(:meth:`VCModel.clean_stream`, :meth:`VCModel.noisy_stream`) as in streaming, so training and inference see
identical attention patterns (the doubled sequence [clean ; noisy] of MeanVC without its mask mismatch).

**Mean flow** (method brief 1.2-1.5; t = 0 data, t = 1 noise). Every chunk draws its own ``(t, r)``: two
logit-normal values, ``t = max``, ``r = min``; an item trains intervals ``r < t`` with probability ``ratio`` (ramped
with ``progress``), else ``r = t``. ``z = (1 - t) x + t eps``, ``v = eps - x``; guidance is folded into the target
(``v <- omega v + (1 - omega) u(z, t, t | null)``, a no-grad pass with the content and speaker conditions of the
noisy tokens replaced by learned null embeddings; the clean past is kept), except for dropped items (condition drop
``cond_drop``) and outside the guidance interval. ``u_tgt = v - (t - r) du/dt``, with ``du/dt`` a JVP of the whole
noisy stream along ``(v, 0, 1)`` (the clean keys/values and conditions are closure constants), run only for the
interval items. Per frame ``D = mean_M (u - sg(u_tgt))^2`` and the loss is ``sum sg((D + c)^-p) D`` over valid
frames / their count. ``mode: fm`` trains ``||u(z, t, t) - v||^2`` (no JVP, no guidance in the target).

Legend: B batch, T frames, n chunks, C frames per chunk, M mel bins, Dc content dim, D width, P past frames.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from voxar.errors import VoxarError
from voxar.models.heads import jvp_dudt, logit_normal
from voxar.models.refenc import length_mask
from voxar.models.vc_blocks import past_band

if TYPE_CHECKING:
    from voxar.models.vc import VCModel
    from voxar.models.vc_config import TargetCond


def to_chunks(x: torch.Tensor, chunk: int) -> torch.Tensor:
    """``(B, F, T)`` -> zero-padded chunks ``(B, n, C, F)`` with ``n = ceil(T / C)``."""
    t_len = x.shape[-1]
    n = -(-t_len // chunk)
    x = F.pad(x, (0, n * chunk - t_len)).transpose(1, 2)  # (B, F, n*C) -> (B, n*C, F)
    return x.reshape(x.shape[0], n, chunk, x.shape[-1])


def teacher_forced_inputs(
    model: VCModel, mel: torch.Tensor, bnf: torch.Tensor, target: TargetCond, mel_lens: torch.Tensor | None = None
) -> dict[str, Any]:
    """Chunked clean targets ``x (B, n, C, M)``, conditions ``cond (B, n, C, D)``, ``frame_ok (B, n, C)``, rotary
    tables, and the clean stream's ``pasts`` (per layer keys/values ``(B, H, P, Dh)``) with ``allowed (B, n, P)``."""
    model.check_mel(mel, "target mel")
    model.check_bnf(bnf)
    b, _, t_len = mel.shape
    if bnf.shape[-1] != t_len:
        raise VoxarError(f"bnf has {bnf.shape[-1]} frames but the mel has {t_len} (one content frame per mel frame)")
    c = model.cfg.chunk_size
    n = -(-t_len // c)
    lens = torch.full((b,), t_len, device=mel.device) if mel_lens is None else mel_lens.to(mel.device)
    frame_ok = length_mask(lens, n * c).view(b, n, c)
    x = to_chunks(model.normalize(mel), c) * frame_ok[..., None].to(mel.dtype)
    cond = model.frame_cond(to_chunks(bnf, c).flatten(1, 2), target).view(b, n, c, -1)
    rope = model.chunk_rope(0, n, mel.device)
    band = past_band(n, n - 1, model.cfg.lookback, mel.device).repeat_interleave(c, dim=1)  # (n, P)
    allowed = band[None] & frame_ok[:, : n - 1].reshape(b, 1, (n - 1) * c)  # (B, n, P)
    kv = model.clean_stream(x, cond, model.modulations(model.clean_condition(target.spk)), rope, allowed, frame_ok)
    pasts = [(k[:, :, : n - 1].flatten(2, 3), v[:, :, : n - 1].flatten(2, 3)) for k, v in kv]  # (B, H, P, Dh)
    return dict(x=x, cond=cond, frame_ok=frame_ok, rope=rope, pasts=pasts, allowed=allowed)


def teacher_forced(
    model: VCModel,
    mel: torch.Tensor,
    bnf: torch.Tensor,
    target: TargetCond,
    z: torch.Tensor,
    t: torch.Tensor,
    r: torch.Tensor,
    mel_lens: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training path's network output for every chunk at once: clean raw mel ``(B, M, T)``, content
    ``(B, Dc, T)``, noisy normalised mel ``z (B, M, T)``, times ``t``, ``r (B, n)`` -> ``u (B, M, T)``."""
    b, m, t_len = mel.shape
    parts = teacher_forced_inputs(model, mel, bnf, target, mel_lens)
    zc = to_chunks(z, model.cfg.chunk_size)
    mods = model.modulations(model.noisy_condition(t.to(zc.dtype), r.to(zc.dtype), target.spk))
    u = model.noisy_stream(zc, mods, parts["cond"], parts["pasts"], parts["allowed"], parts["frame_ok"], parts["rope"])
    return u.reshape(b, -1, m)[:, :t_len].transpose(1, 2)  # (B, n, C, M) -> (B, T, M) -> (B, M, T)


def vc_loss(
    model: VCModel,
    mel: torch.Tensor,
    bnf: torch.Tensor,
    ref_mel: torch.Tensor,
    mel_lens: torch.Tensor | None = None,
    ref_lens: torch.Tensor | None = None,
    progress: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """See :meth:`voxar.models.vc.VCModel.loss` and the module docstring."""
    cfg = model.cfg
    target = model.prepare_target(ref_mel, ref_lens)
    parts = teacher_forced_inputs(model, mel, bnf, target, mel_lens)
    x, frame_ok = parts["x"], parts["frame_ok"]
    b, n = x.shape[:2]
    dev, dt = x.device, x.dtype
    drop = torch.rand(b, generator=generator, device=dev) < cfg.cond_drop
    eps = torch.randn(x.shape, generator=generator, device=dev, dtype=dt)
    cond_n = torch.where(drop[:, None, None, None], model.null_cond.to(dt), parts["cond"])
    spk_n = torch.where(drop[:, None], model.null_spk.to(dt), target.spk)

    def net(rows: torch.Tensor | None, spk: torch.Tensor, cond: torch.Tensor) -> Callable[..., torch.Tensor]:
        """``fn(z, r, t) -> u`` over the batch rows ``rows`` (None: all), conditions as closure constants."""
        sel = (lambda a: a) if rows is None else (lambda a: a[rows])
        pasts = [(sel(k), sel(v)) for k, v in parts["pasts"]]
        spk, cond, allowed, ok = sel(spk), sel(cond), sel(parts["allowed"]), sel(frame_ok)

        def fn(z_: torch.Tensor, r_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
            mods = model.modulations(model.noisy_condition(t_, r_, spk))
            return model.noisy_stream(z_, mods, cond, pasts, allowed, ok, parts["rope"])

        return fn

    def frame_mse(u: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return ((u - tgt.detach()) ** 2).mean(dim=-1)  # (N, n, C, M) -> (N, n, C)

    if cfg.mode == "fm":
        t = logit_normal(b * n, cfg.fm_t_mu, cfg.fm_t_sigma, generator=generator, device=dev).view(b, n).to(dt)
        t4 = t[:, :, None, None]
        z = (1 - t4) * x + t4 * eps
        per = frame_mse(net(None, spk_n, cond_n)(z, t, t), eps - x)
        okf = frame_ok.to(dt)
        mse = (per * okf).sum() / okf.sum()
        return mse, {"mse": mse.detach()}

    a = logit_normal(b * n, cfg.mf_t_mu, cfg.mf_t_sigma, generator=generator, device=dev).view(b, n)
    a2 = logit_normal(b * n, cfg.mf_t_mu, cfg.mf_t_sigma, generator=generator, device=dev).view(b, n)
    t, r = torch.maximum(a, a2).to(dt), torch.minimum(a, a2).to(dt)
    p = 1.0 if progress is None else min(max(float(progress), 0.0), 1.0)
    ratio = cfg.mf_ratio_start + (cfg.mf_ratio_end - cfg.mf_ratio_start) * p
    interval = torch.rand(b, generator=generator, device=dev) < ratio  # items trained on r < t (with the JVP)
    r = torch.where(interval[:, None], r, t)
    t4 = t[:, :, None, None]
    z = (1 - t4) * x + t4 * eps
    v = eps - x
    if cfg.mf_omega != 1.0:
        lo, hi = cfg.mf_guidance_interval
        guided = ~drop[:, None] & (t >= lo) & (t <= hi)  # (B, n)
        with torch.no_grad():
            null_spk = model.null_spk.to(dt).expand_as(target.spk)
            u_unc = net(None, null_spk, model.null_cond.to(dt).expand_as(parts["cond"]))(z, t, t)
        v = torch.where(guided[:, :, None, None], cfg.mf_omega * v + (1.0 - cfg.mf_omega) * u_unc, v)
    pers, oks = [], []
    idx = torch.nonzero(interval).squeeze(1)
    if idx.numel():
        u, dudt = jvp_dudt(net(idx, spk_n, cond_n), z[idx], r[idx], t[idx], v[idx], cfg.jvp, cfg.fd_eps)
        pers.append(frame_mse(u, v[idx] - (t[idx] - r[idx])[:, :, None, None] * dudt))
        oks.append(frame_ok[idx])
    idx = torch.nonzero(~interval).squeeze(1)
    if idx.numel():  # r = t: plain flow matching, the JVP term would be multiplied by 0
        pers.append(frame_mse(net(idx, spk_n, cond_n)(z[idx], t[idx], t[idx]), v[idx]))
        oks.append(frame_ok[idx])
    per, okf = torch.cat(pers), torch.cat(oks).to(dt)
    w = (per.detach() + cfg.mf_adaptive_c) ** (-cfg.mf_adaptive_p)
    loss = (w * per * okf).sum() / okf.sum()
    return loss, {"mse": ((per * okf).sum() / okf.sum()).detach(), "ratio": torch.tensor(ratio)}


__all__ = ["teacher_forced", "teacher_forced_inputs", "to_chunks", "vc_loss"]
