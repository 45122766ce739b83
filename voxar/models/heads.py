"""Generative heads of the patch LM: one flow head with flow-matching (FM) and mean-flow (MF) modes, and a stop head.

**Convention (method brief 1.1, used throughout voxar): t = 0 is data, t = 1 is noise.**
``z_t = (1 - t) x + t eps`` with ``eps ~ N(0, I)``; the conditional velocity is ``v = dz_t/dt = eps - x``. Sampling
integrates from ``t = 1`` (noise) down to ``t = 0`` (data): ``z <- z - (t_k - t_{k+1}) * velocity``.

:class:`FlowHead` is an adaLN MLP (method brief 2.2) ``u(z, r, t | h, hist)`` over one flattened patch ``z (N, F)``
(``F = P * n_mels``). The condition ``c = proj(h) + emb_t(t) + emb_dt(t - r)`` modulates every block (zero-initialised
shift/scale/gate); ``h`` is the LM hidden state, ``hist`` the previous ``history`` patches (concatenated to ``z`` at
the input). ``r = t`` (``dt = 0``) gives the instantaneous velocity, so both modes share one network:

- **FM**: ``loss = ||u(z_t, t, t | c) - (eps - x)||^2``, logit-normal ``t``; condition dropout replaces ``h`` by a
  learned null embedding (CFG); sampling: Euler or midpoint, N steps, CFG scale ``s``: ``u_unc + s (u_c - u_unc)``.
- **MF** (MeanFlow, method brief 1.2-1.5): ``u(z_t, r, t)`` is the *average* velocity over ``[r, t]``. Target
  ``u_tgt = v~ - (t - r) * du/dt`` with ``du/dt = v~ . d_z u + d_t u``, a JVP of the head with tangent
  ``(v~, 0, 1)`` w.r.t. ``(z, r, t)``; it runs through **the head only** (``h`` and ``hist`` are closure constants,
  so the LM is never under a JVP), and the target is stop-gradient. Guidance is folded into training:
  ``v~ = w v + k u(z, t, t | c) + (1 - w - k) u(z, t, t | null)`` (no-grad passes; ``v~ = v`` for dropped
  conditions and outside the guidance t-interval). Adaptive weighting ``sg(1 / (||D||^2 + c)^p) ||D||^2`` with
  ``||D||^2`` the mean over the valid patch dims. ``(t, r)``: two logit-normal draws, ``t = max``, ``r = min``, and
  ``r = t`` with probability ``1 - ratio`` (ratio ramps ``mf_ratio_start -> mf_ratio_end`` with ``progress``). Samples
  with ``r = t`` skip the JVP (its term is multiplied by 0). Sampling: ``z <- z - (t_k - t_{k+1}) u(z, t_{k+1}, t_k)``
  on the grid ``[1, 0]`` (1 step), ``[1, 0.8, 0]`` (2 steps) or a linspace.
- JVP backends (:func:`jvp_dudt`): ``"func"`` (``torch.func.jvp``), ``"autograd"`` (double-backward) and ``"fd"``
  (central finite difference, step ``fd_eps``; works with any kernel; the test oracle).

The time embeddings take ``t`` in ``[0, 1]`` directly (sinusoids of frequencies 1..``time_max_freq`` rad per unit
t), so ``d/dt`` of the JVP is w.r.t. the same ``t`` the flow uses -- no hidden x1000 factor. The frequencies are low
on purpose: ``du/dt`` enters the MF target, and high-frequency time features (the usual 1..1000) make it huge and
noisy; on the 2-D toy MF diverges with 1..1000, trains poorly with 1..30 and well with 1..3-5.

:class:`StopHead` (MLP on ``h`` -> logit), :func:`stop_loss` (BCE with a positive-class weight), and the length
guards :func:`length_limits` / :func:`stop_now` complete the generation utilities.

Legend: N positions (batch x patches, flattened), F patch dim ``P * n_mels``, D LM hidden width, W head width,
K history patches.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from voxar.errors import VoxarConfigError

log = logging.getLogger(__name__)


NOISE_MODES = ("patch", "utterance")  # HeadConfig.noise


@dataclass
class HeadConfig:
    """Flow head hyperparameters (defaults: ``tiny`` for the 16k mel preset, P = 4). See :data:`HEAD_SIZES`.

    ``cfg_scale`` None means the mode's default (1.5 for FM; 1.0 for MF, whose guidance is trained in).
    ``mf_schedule`` (a decreasing grid from 1 to 0) overrides ``mf_steps``. ``jvp``: ``"func"`` | ``"autograd"`` |
    ``"fd"``. ``history_noise``: std of Gaussian noise on the history patches in training (exposure bias).
    ``batch_mul``: noise draws per LM hidden state in the loss (VibeVoice-style reuse of ``h``).
    ``temperature``: sampling only, the scale of the starting noise (1 = the trained prior; lower is closer to the
    conditional mean: with FM and 1 Euler step, 0 gives exactly the head's estimate of ``E[patch | h]``).
    ``noise``: sampling only, where the starting noise comes from: ``"patch"`` draws it afresh for every patch;
    ``"utterance"`` draws one noise per generation (from the generator's seed, :func:`utterance_noise`) and starts
    every patch from it. With a head that sees no history (``history: 0``) independent draws make neighbouring
    patches disagree (the harmonics of one pitch in one patch, another in the next), so such heads are decoded at
    temperature 0 or with one noise: the same draw maps similar conditions to consistent detail.
    """

    mode: Literal["fm", "mf"] = "fm"
    patch_dim: int = 320
    cond_dim: int = 128
    width: int = 384
    n_blocks: int = 2
    ffn_mult: int = 2
    time_dim: int = 128
    time_max_freq: float = 4.0
    history: int = 1
    cond_drop: float = 0.1
    cfg_scale: float | None = None
    fm_steps: int = 8
    fm_solver: Literal["euler", "midpoint"] = "euler"
    fm_t_mu: float = 0.0
    fm_t_sigma: float = 1.0
    mf_steps: int = 2
    mf_schedule: list[float] | None = None
    mf_t_mu: float = -0.4
    mf_t_sigma: float = 1.0
    mf_ratio_start: float = 0.25
    mf_ratio_end: float = 0.75
    mf_adaptive_p: float = 0.5
    mf_adaptive_c: float = 1e-3
    mf_omega: float = 2.0
    mf_kappa: float = 0.0
    mf_guidance_interval: list[float] = field(default_factory=lambda: [0.0, 1.0])
    jvp: Literal["func", "autograd", "fd"] = "func"
    fd_eps: float = 1e-3
    split_jvp: bool = True
    history_noise: float = 0.0
    batch_mul: int = 1
    temperature: float = 1.0
    noise: Literal["patch", "utterance"] = "patch"

    def __post_init__(self) -> None:
        where = "HeadConfig"
        if self.mode not in ("fm", "mf"):
            raise VoxarConfigError(f"{where}: mode must be 'fm' or 'mf', got {self.mode!r}")
        for key in "patch_dim cond_dim width n_blocks ffn_mult time_dim fm_steps mf_steps batch_mul".split():
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise VoxarConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
        if self.time_dim % 2 or self.history < 0:
            raise VoxarConfigError(f"{where}: time_dim must be even and history >= 0")
        if self.fm_solver not in ("euler", "midpoint"):
            raise VoxarConfigError(f"{where}: fm_solver must be 'euler' or 'midpoint', got {self.fm_solver!r}")
        if self.jvp not in ("func", "autograd", "fd"):
            raise VoxarConfigError(f"{where}: jvp must be 'func', 'autograd' or 'fd', got {self.jvp!r}")
        for key in ("cond_drop", "mf_ratio_start", "mf_ratio_end"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise VoxarConfigError(f"{where}: {key} must be in [0, 1], got {getattr(self, key)}")
        if not 0.0 <= self.temperature <= 2.0:
            raise VoxarConfigError(f"{where}: temperature must be in [0, 2], got {self.temperature!r}")
        if self.noise not in NOISE_MODES:
            raise VoxarConfigError(f"{where}: noise must be 'patch' or 'utterance', got {self.noise!r}")
        if self.mf_schedule is not None:
            s = list(self.mf_schedule)
            if len(s) < 2 or s[0] != 1.0 or s[-1] != 0.0 or any(a <= b for a, b in zip(s, s[1:], strict=False)):
                raise VoxarConfigError(f"{where}: mf_schedule must decrease strictly from 1.0 to 0.0, got {s}")
        if len(self.mf_guidance_interval) != 2:
            raise VoxarConfigError(f"{where}: mf_guidance_interval must be [t_lo, t_hi]")

    @classmethod
    def named(cls, name: str, **overrides: Any) -> HeadConfig:
        """A named size from :data:`HEAD_SIZES` (``tiny``, ``small``) with field overrides."""
        if name not in HEAD_SIZES:
            raise VoxarConfigError(f"unknown head size {name!r}; valid sizes: {', '.join(HEAD_SIZES)}")
        from voxar.config import from_dict

        return from_dict(cls, {**HEAD_SIZES[name], **overrides}, where=f"head size {name}")

    def grid(self, steps: int | None = None) -> list[float]:
        """The sampling time grid from 1 (noise) to 0 (data) for this mode and ``steps`` (None: the default)."""
        if self.mode == "mf":
            if steps is None and self.mf_schedule is not None:
                return list(self.mf_schedule)
            steps = steps or self.mf_steps
            if steps == 2:
                return [1.0, 0.8, 0.0]  # MeanVC's 2-step grid
        else:
            steps = steps or self.fm_steps
        return [1.0 - i / steps for i in range(steps)] + [0.0]


HEAD_SIZES: dict[str, dict[str, Any]] = {
    # width >= patch_dim (320): a narrower MLP cannot carry the noise part of the velocity (measured: the tiny
    # overfit loss stalls near 1.0 at width 128 but reaches ~0.2 at width 384 in 150 steps)
    "tiny": dict(cond_dim=128, width=384, n_blocks=2, history=1),
    "small": dict(cond_dim=512, width=512, n_blocks=4, history=2, fm_steps=10),
}


# ------------------------------------------------------------------------------------------------ helpers
def logit_normal(
    n: int, mu: float, sigma: float, *, generator: torch.Generator | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """``(n,)`` samples of ``sigmoid(N(mu, sigma^2))`` in (0, 1)."""
    return torch.sigmoid(mu + sigma * torch.randn(n, generator=generator, device=device))


def jvp_dudt(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    r: torch.Tensor,
    t: torch.Tensor,
    v: torch.Tensor,
    mode: str = "func",
    eps: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u, du/dt)`` for ``u = fn(z, r, t)`` along the tangent ``(v, 0, 1)``; ``du/dt`` is detached.

    ``u`` keeps its autograd graph (to the parameters and any closure inputs). ``mode``: ``"func"``
    (``torch.func.jvp``, forward-mode AD), ``"autograd"`` (``torch.autograd.functional.jvp``, double-backward) or
    ``"fd"`` (``[u(z + e v, r, t + e) - u(z - e v, r, t - e)] / 2e``). Shapes: ``z``, ``v`` ``(N, F)``; ``r``, ``t``
    ``(N,)``; outputs ``(N, F)``.
    """
    zeros, ones = torch.zeros_like(r), torch.ones_like(t)
    if mode == "func":
        u, dudt = torch.func.jvp(fn, (z, r, t), (v, zeros, ones))
        return u, dudt.detach()
    u = fn(z, r, t)
    if mode == "autograd":
        _, dudt = torch.autograd.functional.jvp(fn, (z.detach(), r.detach(), t.detach()), (v, zeros, ones))
    elif mode == "fd":
        with torch.no_grad():
            dudt = (fn(z + eps * v, r, t + eps) - fn(z - eps * v, r, t - eps)) / (2.0 * eps)
    else:
        raise ValueError(f"jvp mode must be 'func', 'autograd' or 'fd', got {mode!r}")
    return u, dudt.detach()


# HeadConfig fields that only steer sampling: a training run resumes across changes of these (train_tts --resume)
SAMPLING_FIELDS = ("cfg_scale", "fm_steps", "fm_solver", "mf_steps", "mf_schedule", "temperature", "noise")


def utterance_noise(
    generator: torch.Generator | None, n: int, dim: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """The one starting noise ``(n, dim)`` of a generation with ``noise: utterance``: drawn from a fresh generator
    seeded with ``generator``'s initial seed (the global seed without one), so every segment of a request, and the
    same request batched or alone, starts from the same noise."""
    seed = generator.initial_seed() if generator is not None else torch.initial_seed()
    dev = torch.device(device) if device is not None else torch.device("cpu")
    g = torch.Generator(device=dev).manual_seed(int(seed))
    return torch.randn(n, dim, generator=g, device=dev)


def history_from_sequence(patches: torch.Tensor, k: int) -> torch.Tensor:
    """Teacher-forced history: ``(B, M, F)`` -> ``(B, M, k * F)``, row ``i`` = patches ``i-k .. i-1`` (oldest
    first; zeros before the start)."""
    b, m, f = patches.shape
    if k == 0:
        return patches.new_zeros(b, m, 0)
    padded = torch.cat([patches.new_zeros(b, k, f), patches[:, : max(m - 1, 0)]], dim=1)  # (B, k + M - 1, F)
    return torch.cat([padded[:, j : j + m] for j in range(k)], dim=-1)


def history_push(hist: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
    """Generation-time history update: drop the oldest patch of ``hist (N, k*F)``, append ``patch (N, F)``."""
    if hist.shape[-1] == 0:
        return hist
    return torch.cat([hist[:, patch.shape[-1] :], patch], dim=-1)


# ------------------------------------------------------------------------------------------------ flow head
class TimestepEmbedding(nn.Module):
    """``t (N,)`` in [0, 1] -> ``(N, out_dim)``: sinusoids (frequencies 1..max_freq) -> Linear -> SiLU -> Linear."""

    def __init__(self, freq_dim: int, out_dim: int, max_freq: float = 4.0) -> None:
        super().__init__()
        freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), freq_dim // 2))
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(freq_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None].to(self.freqs.dtype) * self.freqs  # (N, 1) * (freq_dim/2,) -> (N, freq_dim/2)
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=-1))


class AdaLNBlock(nn.Module):
    """``y + g * FFN(LN(y) * (1 + sc) + sh)`` with ``(sh, sc, g) = Linear(SiLU(c))`` zero-initialised; ``(N, W)``."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Linear(width, 3 * width)
        self.ffn = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, width))
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def forward(self, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        sh, sc, g = self.ada(F.silu(c)).chunk(3, dim=-1)  # (N, 3W) -> 3 x (N, W)
        return y + g * self.ffn(self.norm(y) * (1 + sc) + sh)


class FlowHead(nn.Module):
    """FM / MF head ``forward(z, t, r, h, hist, drop) -> (N, F)`` (velocity in FM, average velocity in MF).

    Train with :meth:`loss`; sample with :meth:`sample_patch`. See the module docstring for the maths.
    """

    def __init__(self, cfg: HeadConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or HeadConfig()
        w = cfg.width
        if w < cfg.patch_dim:
            log.warning("flow head width %d < patch_dim %d: the MLP is a bottleneck for the velocity", w, cfg.patch_dim)
        self.in_proj = nn.Linear(cfg.patch_dim * (1 + cfg.history), w)
        self.cond_proj = nn.Linear(cfg.cond_dim, w)
        self.null_cond = nn.Parameter(torch.zeros(cfg.cond_dim))
        self.t_emb = TimestepEmbedding(cfg.time_dim, w, cfg.time_max_freq)
        self.dt_emb = TimestepEmbedding(cfg.time_dim, w, cfg.time_max_freq)
        self.blocks = nn.ModuleList(AdaLNBlock(w, cfg.ffn_mult * w) for _ in range(cfg.n_blocks))
        self.final_norm = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(w, 2 * w)
        self.out = nn.Linear(w, cfg.patch_dim)
        nn.init.normal_(self.null_cond, std=0.02)
        # adaLN-zero modulations (blocks start as identities); the output layer is small but not zero, so every
        # part of a small head gets gradient from the first step (a zero output layer stalls them for 100s of steps)
        nn.init.zeros_(self.final_ada.weight)
        nn.init.zeros_(self.final_ada.bias)
        nn.init.normal_(self.out.weight, std=0.02)
        nn.init.zeros_(self.out.bias)

    # ------------------------------------------------------------------------------------------- network
    def forward(
        self,
        z: torch.Tensor,
        t: torch.Tensor,
        r: torch.Tensor,
        h: torch.Tensor,
        hist: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``z (N, F)`` at time ``t (N,)`` with interval start ``r (N,)`` (``r = t``: instantaneous velocity),
        condition ``h (N, D)``, history ``hist (N, K*F)``; ``drop (N,)`` bool swaps ``h`` for the null embedding.
        Returns ``(N, F)``."""
        if self.cfg.history:
            if hist is None or hist.shape[-1] != self.cfg.history * self.cfg.patch_dim:
                got = None if hist is None else tuple(hist.shape)
                raise ValueError(f"flow head expects hist (N, {self.cfg.history * self.cfg.patch_dim}), got {got}")
            z = torch.cat([z, hist.to(z.dtype)], dim=-1)  # (N, F) + (N, K*F) -> (N, (K+1)*F)
        if drop is not None:
            h = torch.where(drop[:, None], self.null_cond.to(h.dtype).expand_as(h), h)
        c = self.cond_proj(h) + self.t_emb(t) + self.dt_emb(t - r)  # (N, W)
        y = self.in_proj(z)
        for block in self.blocks:
            y = block(y, c)
        sh, sc = self.final_ada(F.silu(c)).chunk(2, dim=-1)
        return self.out(self.final_norm(y) * (1 + sc) + sh)

    # ------------------------------------------------------------------------------------------- training
    def loss(
        self,
        x: torch.Tensor,
        h: torch.Tensor,
        hist: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        progress: float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss on target patches ``x (N, F)`` given ``h (N, D)``, ``hist (N, K*F)``.

        ``mask (N, F)`` marks valid dims (frames past the end of an utterance in its last patch are False).
        ``progress`` in [0, 1] ramps the MF ``r != t`` ratio (None: the final ratio). Returns ``(loss, stats)``;
        ``stats["mse"]`` is the unweighted mean squared error (comparable across modes and steps).
        """
        cfg = self.cfg
        if cfg.batch_mul > 1:
            rep = cfg.batch_mul
            x, h = x.repeat(rep, 1), h.repeat(rep, 1)
            hist = hist.repeat(rep, 1) if hist is not None else None
            mask = mask.repeat(rep, 1) if mask is not None else None
        if hist is not None and cfg.history_noise > 0:
            hist = hist + cfg.history_noise * torch.randn(hist.shape, generator=generator, device=hist.device)
        n, dev = x.shape[0], x.device
        mask = torch.ones_like(x) if mask is None else mask.to(x.dtype)
        drop = torch.rand(n, generator=generator, device=dev) < cfg.cond_drop
        eps = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
        if cfg.mode == "fm":
            t = logit_normal(n, cfg.fm_t_mu, cfg.fm_t_sigma, generator=generator, device=dev).to(x.dtype)
            z = (1 - t[:, None]) * x + t[:, None] * eps
            per = _masked_mean((self(z, t, t, h, hist, drop) - (eps - x)) ** 2, mask)
            return per.mean(), {"mse": per.mean().detach()}
        with torch.autocast(dev.type, enabled=False):  # the JVP always runs in fp32 (method brief 1.7)
            hist = hist.float() if hist is not None else None
            return self._mf_loss(x.float(), h.float(), hist, mask.float(), eps.float(), drop, progress, generator)

    def _mf_loss(
        self,
        x: torch.Tensor,
        h: torch.Tensor,
        hist: torch.Tensor | None,
        mask: torch.Tensor,
        eps: torch.Tensor,
        drop: torch.Tensor,
        progress: float | None,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The MeanFlow loss (see :meth:`loss` and the module docstring); ``eps``/``drop`` are drawn by the caller."""
        cfg = self.cfg
        n, dev = x.shape[0], x.device
        a = logit_normal(n, cfg.mf_t_mu, cfg.mf_t_sigma, generator=generator, device=dev).to(x.dtype)
        b = logit_normal(n, cfg.mf_t_mu, cfg.mf_t_sigma, generator=generator, device=dev).to(x.dtype)
        t, r = torch.maximum(a, b), torch.minimum(a, b)
        p = 1.0 if progress is None else min(max(float(progress), 0.0), 1.0)
        ratio = cfg.mf_ratio_start + (cfg.mf_ratio_end - cfg.mf_ratio_start) * p
        r = torch.where(torch.rand(n, generator=generator, device=dev) < ratio, r, t)
        z = (1 - t[:, None]) * x + t[:, None] * eps
        v = eps - x
        if cfg.mf_omega != 1.0 or cfg.mf_kappa != 0.0:  # guidance folded into the target (method brief 1.5)
            lo, hi = cfg.mf_guidance_interval
            guided = ~drop & (t >= lo) & (t <= hi)
            with torch.no_grad():
                u_unc = self(z, t, t, h, hist, torch.ones_like(drop))
                v_g = cfg.mf_omega * v + (1.0 - cfg.mf_omega - cfg.mf_kappa) * u_unc
                if cfg.mf_kappa != 0.0:
                    v_g = v_g + cfg.mf_kappa * self(z, t, t, h, hist, torch.zeros_like(drop))
            v = torch.where(guided[:, None], v_g, v)
        hist = hist if hist is not None else x.new_zeros(n, 0)
        interval = (r < t) if cfg.split_jvp else torch.ones_like(drop)
        preds, targets, masks = [], [], []
        idx = torch.nonzero(interval).squeeze(1)
        if idx.numel():
            h_i, hist_i, drop_i = h[idx], hist[idx], drop[idx]

            def fn(z_: torch.Tensor, r_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
                return self(z_, t_, r_, h_i, hist_i, drop_i)

            u, dudt = jvp_dudt(fn, z[idx], r[idx], t[idx], v[idx], cfg.jvp, cfg.fd_eps)
            preds.append(u)
            targets.append(v[idx] - (t[idx] - r[idx])[:, None] * dudt)
            masks.append(mask[idx])
        idx = torch.nonzero(~interval).squeeze(1)
        if idx.numel():  # r = t: plain flow matching, no JVP needed
            preds.append(self(z[idx], t[idx], t[idx], h[idx], hist[idx], drop[idx]))
            targets.append(v[idx])
            masks.append(mask[idx])
        per = _masked_mean((torch.cat(preds) - torch.cat(targets).detach()) ** 2, torch.cat(masks))
        w = (per.detach() + cfg.mf_adaptive_c) ** (-cfg.mf_adaptive_p)
        return (w * per).mean(), {"mse": per.mean().detach(), "ratio": torch.tensor(ratio)}

    # ------------------------------------------------------------------------------------------- sampling
    @property
    def default_cfg_scale(self) -> float:
        """``cfg.cfg_scale``, else 1.5 in FM mode and 1.0 in MF mode (guidance trained in)."""
        if self.cfg.cfg_scale is not None:
            return self.cfg.cfg_scale
        return 1.5 if self.cfg.mode == "fm" else 1.0

    def velocity(
        self,
        z: torch.Tensor,
        t: torch.Tensor,
        r: torch.Tensor,
        h: torch.Tensor,
        hist: torch.Tensor | None,
        cfg_scale: float = 1.0,
    ) -> torch.Tensor:
        """Guided network output ``u_unc + s (u_c - u_unc)`` (just ``u_c`` when ``s == 1``); shapes as forward."""
        if cfg_scale == 1.0:
            return self(z, t, r, h, hist)
        n = z.shape[0]
        drop = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]).to(z.device)
        hist2 = hist.repeat(2, 1) if hist is not None else None
        both = self(z.repeat(2, 1), t.repeat(2), r.repeat(2), h.repeat(2, 1), hist2, drop)  # (2N, F)
        u_c, u_u = both[:n], both[n:]
        return u_u + cfg_scale * (u_c - u_u)

    def generation_noise(
        self, generator: torch.Generator | None, n: int, device: torch.device | str | None = None
    ) -> torch.Tensor | None:
        """The starting noise ``(n, F)`` every patch of a generation shares (``noise: utterance``,
        :func:`utterance_noise`), or None when each patch draws its own (``noise: patch``)."""
        if self.cfg.noise != "utterance":
            return None
        return utterance_noise(generator, n, self.cfg.patch_dim, device)

    @torch.no_grad()
    def sample_patch(
        self,
        h: torch.Tensor,
        prev: torch.Tensor | None = None,
        steps: int | None = None,
        cfg_scale: float | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample the next patch ``(N, F)`` given ``h (N, D)`` and the history ``prev (N, K*F)``.

        ``steps``: FM Euler/midpoint steps or MF steps (None: the config's); ``cfg_scale`` (None: the mode's
        default); the starting noise is ``noise (N, F)`` if given, else drawn with ``generator``, scaled by
        ``cfg.temperature``. Items are independent: a batch equals its rows sampled one by one with the same noise
        rows.
        """
        cfg = self.cfg
        scale = cfg_scale if cfg_scale is not None else self.default_cfg_scale
        n = h.shape[0]
        if noise is None:
            noise = torch.randn(n, cfg.patch_dim, generator=generator, device=h.device)
        z = noise.to(h.dtype)
        if cfg.temperature != 1.0:
            z = cfg.temperature * z
        grid = cfg.grid(steps)
        for t0, t1 in zip(grid[:-1], grid[1:], strict=True):
            t = torch.full((n,), t0, device=h.device, dtype=z.dtype)
            s = torch.full((n,), t1, device=h.device, dtype=z.dtype)
            if cfg.mode == "mf":
                z = z - (t0 - t1) * self.velocity(z, t, s, h, prev, scale)
            elif cfg.fm_solver == "euler":
                z = z - (t0 - t1) * self.velocity(z, t, t, h, prev, scale)
            else:  # midpoint
                m = torch.full((n,), 0.5 * (t0 + t1), device=h.device, dtype=z.dtype)
                z_mid = z - 0.5 * (t0 - t1) * self.velocity(z, t, t, h, prev, scale)
                z = z - (t0 - t1) * self.velocity(z_mid, m, m, h, prev, scale)
        return z


def _masked_mean(err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row mean of ``err (N, F)`` over the dims where ``mask (N, F)`` is 1 -> ``(N,)``."""
    return (err * mask).sum(dim=-1) / mask.sum(dim=-1).clamp_min(1.0)


# ------------------------------------------------------------------------------------------------ stop head
class StopHead(nn.Module):
    """``h (..., D)`` -> stop logit ``(...)`` (Linear, SiLU, Linear); ``logit > 0``: "this patch is the last"."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or dim
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).squeeze(-1)


def stop_targets(lengths: torch.Tensor, n: int, n_positive: int = 1) -> torch.Tensor:
    """``(B, n)`` float targets: 1 on the last ``n_positive`` valid patches of each item (``lengths (B,)``)."""
    i = torch.arange(n, device=lengths.device)[None, :]
    return ((i < lengths[:, None]) & (i >= lengths[:, None] - n_positive)).float()


def stop_loss(
    logits: torch.Tensor, lengths: torch.Tensor, pos_weight: float = 50.0, n_positive: int = 1
) -> torch.Tensor:
    """Weighted BCE of ``logits (B, N)`` against :func:`stop_targets`, averaged over valid patches.

    ``pos_weight`` multiplies the loss of the (rare) positive patches: one per utterance against ``N - 1``.
    """
    target = stop_targets(lengths, logits.shape[1], n_positive)
    valid = (torch.arange(logits.shape[1], device=logits.device)[None, :] < lengths[:, None]).to(logits.dtype)
    weight = torch.tensor(pos_weight, device=logits.device, dtype=logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), pos_weight=weight, reduction="none")
    return (bce * valid).sum() / valid.sum().clamp_min(1.0)


def length_limits(
    text_lens: torch.Tensor,
    *,
    min_patches: int = 1,
    max_patches: int | None = None,
    per_token: float = 4.0,
    offset: int = 25,
    prompt_patches: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item ``(min_len, max_len)`` ``(B,)`` in patches for generation.

    ``max_len = per_token * text_len + offset - prompt_patches`` (method brief 2.3: ``4 n + 25``), capped at
    ``max_patches`` and never below ``min_len``; ``min_len = max(1, min_patches)`` so generation never produces
    nothing and never runs forever.
    """
    lo = max(1, int(min_patches))
    max_len = torch.ceil(text_lens.to(torch.float32) * per_token).long() + offset - prompt_patches
    if max_patches is not None:
        max_len = max_len.clamp_max(max_patches)
    max_len = max_len.clamp_min(lo)
    return torch.full_like(max_len, lo), max_len


def stop_now(
    stop_logits: torch.Tensor,
    n_done: torch.Tensor | int,
    min_len: torch.Tensor,
    max_len: torch.Tensor,
    threshold: float = 0.5,
) -> torch.Tensor:
    """``(B,)`` bool: stop after the patch just emitted (``n_done`` patches so far, that one included).

    True when ``sigmoid(logit) > threshold`` and ``n_done >= min_len``, or when ``n_done >= max_len``.
    """
    n = torch.as_tensor(n_done, device=stop_logits.device)
    return ((torch.sigmoid(stop_logits) > threshold) & (n >= min_len)) | (n >= max_len)
