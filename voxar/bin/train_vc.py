"""Recipe entry point: train the MeanVC-style voice-conversion model (chunk-wise AR mean-flow DiT) on a feature dump.

Usage::

    python -m voxar.bin.train_vc --config egs/synth/conf/vc_tiny.yaml --dump dump/train [--valid-dump dump/dev] \\
        --content-model exp/content_tiny/model --exp exp/vc_tiny [--resume] [--max-steps N] [--device cpu|cuda] \\
        [--seed S] [--threads N] [--override key=value ...]
    torchrun --nproc_per_node 2 -m voxar.bin.train_vc ...      # DDP (gloo on CPU, nccl on CUDA)

``--dump`` is the output of ``voxar data dump DATA DUMP --preset 16k`` (``manifest.jsonl`` with speakers, mel shards,
``stats.safetensors``, whose CMVN statistics normalise the mels: ``model.set_mel_stats``). Batches are length-bucketed
with a padded-frame budget ``max_frames`` (per process, counted after segment cropping).

**Training item.** An utterance's mel is the target. Its content features come from the frozen content encoder
(``--content-model``, :meth:`voxar.models.content.ContentEncoder.from_pretrained`), run on the whole utterance
under ``no_grad`` with the chunk settings it streams with (``content_chunk_size`` None: its default), on the fly
each step (no cache to invalidate; the tiny encoder costs little next to the VC model's JVP). With ``segment_frames``
> 0 a random segment of that many frames is then cut from the mel and its content. The reference is made of *other*
utterances of the same speaker, concatenated in random order and randomly cropped to ``ref_min_frames ..
ref_max_frames`` frames, so the target never leaks into its own reference (a speaker with a single utterance falls
back to a crop of the item itself; the number of such items is logged).

**Speaker augmentation** (``spk_warp`` > 0). Each training item gets a random frequency warp ``alpha = exp(u)``,
``u ~ U(-spk_warp, spk_warp)``, applied to its target mel *and* its reference (:func:`warp_mels`: mel bin ``k``
reads bin ``k / alpha``, which moves formants and harmonics together, like a shorter or longer vocal tract), while
its content features come from the unwarped mel. Every item is then a new voice that only the reference reveals: it
multiplies the corpus's speakers and teaches the model to take the timbre from the reference, not from the content.

**Files.** ``exp/`` receives ``config.yaml``, ``checkpoint-<step>.pt`` + ``last.pt`` (atomic, ``keep_last`` kept),
``train_log.jsonl``, ``tb/`` and, at each validation and at the end, ``model/``: the EMA weights as a VC model
directory (:meth:`voxar.models.vc.VCModel.from_pretrained`). Validation logs the teacher-forced losses (fixed noise),
``tf1_l1``: the mel L1 of one MF step from noise with the true clean past (method brief 5.3's sanity metric), and
``recon_l1``: the L1 between a target mel and its free-running conversion from its own content with a reference of
other utterances of its speaker; ``mean_l1`` is the L1 of the CMVN mean (the "knows nothing" point estimate; a
*sample* of a model that ignores its conditions would score about sqrt(2) times that). SIGINT/SIGTERM
saves a checkpoint and exits with 128 + signal; ``--resume`` continues exactly (step, optimiser, EMA, data, RNG).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from voxar.errors import VoxarConfigError, VoxarDataError
from voxar.models.vc_config import VCConfig  # needed at import time: the config dataclass nests it
from voxar.train.trainer import MODEL_DIR, ModelTrainer

logger = logging.getLogger("voxar.train_vc")


@dataclass
class VCTrainConfig:
    """Everything a VC run needs; ``egs/*/conf/vc_*.yaml`` maps onto it (unknown keys are errors)."""

    preset: str = "16k"
    model: VCConfig = field(default_factory=VCConfig)
    content_chunk_size: int | None = None  # content encoder chunk (encoder frames); None: its streaming default
    # optimisation
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup: int = 100
    lr_decay: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    max_steps: int = 1000
    max_frames: int = 2000  # padded target frames per batch (per process)
    max_utt_frames: int = 1500  # longer utterances are left out
    segment_frames: int = 0  # > 0: train on random segments of this many frames
    num_buckets: int = 10
    # reference
    ref_min_frames: int = 100
    ref_max_frames: int = 400
    spk_warp: float = 0.0  # speaker augmentation: max |log alpha| of the per-item frequency warp (0 = off)
    # weights averaging, logging, checkpoints
    ema_decay: float = 0.999
    log_every: int = 10
    valid_every: int = 500
    valid_utts: int = 16
    valid_convert: int = 4  # validation utterances converted for recon_l1
    save_every: int = 500
    keep_last: int = 3
    tensorboard: bool = True
    seed: int = 1234

    def __post_init__(self) -> None:
        for key in ("max_steps", "max_frames", "max_utt_frames", "log_every", "ref_min_frames", "num_buckets"):
            if getattr(self, key) < 1:
                raise VoxarConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.ref_max_frames < self.ref_min_frames:
            raise VoxarConfigError(f"ref_max_frames {self.ref_max_frames} < ref_min_frames {self.ref_min_frames}")
        if self.segment_frames < 0 or self.valid_convert < 0 or not 0 <= self.spk_warp <= 0.5:
            raise VoxarConfigError("segment_frames and valid_convert must be >= 0 and spk_warp in [0, 0.5]")
        if self.lr <= 0:
            raise VoxarConfigError(f"lr must be positive, got {self.lr}")
        if self.model.preset != self.preset:
            raise VoxarConfigError(f"model.preset {self.model.preset!r} differs from preset {self.preset!r}")


# ---------------------------------------------------------------------------------------------------------- data
class VCData:
    """A dump's mels and speaker index; builds training batches (see the module docstring)."""

    def __init__(self, dump_dir: str | Path, cfg: VCTrainConfig, max_utts: int | None = None) -> None:
        from voxar.audio import MelConfig
        from voxar.data.dataset import MelDataset

        self.cfg = cfg
        self.ds = MelDataset(dump_dir, max_frames=cfg.max_utt_frames)
        if self.ds.mel_config() != MelConfig.preset(cfg.preset):
            raise VoxarDataError(f"{dump_dir}: features were not dumped with the {cfg.preset!r} mel preset")
        self.ds.entries = [e for e in self.ds.entries if int(e["frames"]) >= cfg.model.chunk_size][: max_utts or None]
        if not self.ds.entries:
            raise VoxarDataError(f"{dump_dir}: no usable utterances (at least one chunk of audio)")
        self.by_spk: dict[str, list[int]] = {}
        for i, e in enumerate(self.ds.entries):
            self.by_spk.setdefault(str(e.get("spk", "")), []).append(i)
        self.lonely = sum(len(v) for v in self.by_spk.values() if len(v) < 2)
        if self.lonely:
            logger.warning("%s: %d utterance(s) have no other utterance of their speaker: their reference is "
                           "a crop of themselves (target leak)", dump_dir, self.lonely)  # fmt: skip

    def __len__(self) -> int:
        return len(self.ds)

    @property
    def lengths(self) -> list[int]:
        """Frames per item as batched (after segment cropping)."""
        seg = self.cfg.segment_frames
        return [min(n, seg) if seg else n for n in self.ds.lengths]

    def mel(self, i: int) -> torch.Tensor:
        return self.ds[i]["mel"]

    def reference(self, i: int, rng: Any) -> torch.Tensor:
        """``(M, R)``: other utterances of item ``i``'s speaker, concatenated in random order and cropped."""
        cfg = self.cfg
        n = int(rng.integers(cfg.ref_min_frames, cfg.ref_max_frames + 1))
        others = [j for j in self.by_spk[str(self.ds.entries[i].get("spk", ""))] if j != i]
        if not others:
            src = self.mel(i)
        else:
            parts, total = [], 0
            for j in rng.permutation(others):
                parts.append(self.mel(int(j)))
                total += parts[-1].shape[-1]
                if total >= n:
                    break
            src = torch.cat(parts, dim=-1)
        n = min(n, src.shape[-1])
        start = int(rng.integers(src.shape[-1] - n + 1))
        return src[:, start : start + n]

    def batch(self, indices: list[int], rng: Any, augment: bool = False) -> dict[str, torch.Tensor]:
        """``mels (B, M, T)`` + ``mel_lens`` (whole utterances), ``starts (B,)`` of the segments to train on,
        ``ref_mels (B, M, R)`` + ``ref_lens`` and ``warp (B,)`` (the speaker-augmentation factors: 1 unless
        ``augment`` and ``spk_warp`` > 0); ``rng`` is a numpy Generator."""
        from voxar.data.dataset import collate_mels

        target = collate_mels([{"utt": str(i), "mel": self.mel(i)} for i in indices])
        refs = collate_mels([{"utt": str(i), "mel": self.reference(i, rng)} for i in indices])
        seg = self.cfg.segment_frames
        starts = [int(rng.integers(max(1, n - seg + 1))) if seg else 0 for n in target["lengths"].tolist()]
        w = self.cfg.spk_warp if augment else 0.0
        warp = torch.from_numpy(np.exp(rng.uniform(-w, w, len(indices)))).float() if w else torch.ones(len(indices))
        return {
            "mels": target["mels"], "mel_lens": target["lengths"], "starts": torch.tensor(starts, dtype=torch.long),
            "ref_mels": refs["mels"], "ref_lens": refs["lengths"], "warp": warp,
        }  # fmt: skip


def warp_mels(mels: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Frequency-warp log-mels ``(B, M, T)`` by ``alpha (B,)``: output bin ``k`` linearly interpolates input bin
    ``k / alpha`` (clamped to the top bin); ``alpha = 1`` is the identity."""
    m = mels.shape[1]
    src = (torch.arange(m, device=mels.device, dtype=mels.dtype)[None, :] / alpha[:, None].to(mels)).clamp(0, m - 1)
    lo = src.floor().long()  # (B, M)
    hi = (lo + 1).clamp_max(m - 1)
    frac = (src - lo.to(src.dtype))[:, :, None]  # (B, M, 1)
    t = mels.shape[-1]
    low = torch.gather(mels, 1, lo[:, :, None].expand(-1, -1, t))
    high = torch.gather(mels, 1, hi[:, :, None].expand(-1, -1, t))
    return low * (1 - frac) + high * frac


def crop_segments(
    mels: torch.Tensor, bnf: torch.Tensor, lens: torch.Tensor, starts: torch.Tensor, seg: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut ``seg`` frames from ``starts (B,)`` out of ``mels (B, M, T)`` and ``bnf (B, Dc, T)`` (shorter items keep
    what they have; padding is zero) -> ``(mels, bnf, lens)`` of at most ``seg`` frames."""
    if seg <= 0:
        return mels, bnf, lens
    new_lens = (lens - starts).clamp(min=1, max=seg)
    t = int(new_lens.max())
    idx = (starts[:, None] + torch.arange(t, device=mels.device)[None]).clamp_max(mels.shape[-1] - 1)  # (B, t)
    valid = (torch.arange(t, device=mels.device)[None] < new_lens[:, None])[:, None]  # (B, 1, t)
    mels = torch.gather(mels, 2, idx[:, None].expand(-1, mels.shape[1], -1)) * valid
    bnf = torch.gather(bnf, 2, idx[:, None].expand(-1, bnf.shape[1], -1)) * valid
    return mels, bnf, new_lens


class _Loss(nn.Module):
    """``forward(**batch) -> model.loss(**batch)``: the module DDP wraps (gradients sync through ``forward``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, **kwargs: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.model.loss(**kwargs)


# --------------------------------------------------------------------------------------------------------- the run
class Trainer(ModelTrainer):
    """State of one run; :meth:`run` is the loop. Built on every rank (rank 0 also logs and writes files)."""

    name, what = "vc", "VC model"

    def __init__(self, cfg: VCTrainConfig, args: argparse.Namespace) -> None:
        from voxar.data.dataset import load_cmvn
        from voxar.models.vc import VCModel
        from voxar.train.ema import EMA
        from voxar.train.loop import set_seed

        if not args.content_model:
            raise VoxarConfigError("--content-model is required (a trained content encoder model directory)")
        self.start(cfg, args)
        self.content = self._load_content(args.content_model)
        ckpt = self.find_checkpoint(("preset", "model"))

        self.train_set = VCData(args.dump, cfg)
        set_seed(cfg.seed)  # identical initial weights on every rank
        self.model = VCModel(cfg.model).to(self.device)
        mean, std = load_cmvn(args.dump)
        self.model.set_mel_stats(mean.to(self.device), std.to(self.device))
        self.ema = EMA(self.model, cfg.ema_decay)
        self.init_from()
        self.make_optimizer()
        self.restore(ckpt)
        self.loss_module = self._wrap(_Loss(self.model))
        self.sampler = self.make_sampler(self.train_set.lengths)
        self.valid_set = None
        if self.info.is_main:
            self.valid_split = "valid" if args.valid_dump else "train_subset"
            self.valid_set = VCData(args.valid_dump or args.dump, cfg, max_utts=cfg.valid_utts)
        self.restore_rng(ckpt)

    def _load_content(self, path: str) -> Any:
        """The frozen content encoder (eval mode, no gradients); its feature size must match the model's."""
        from voxar.models.content import ContentEncoder

        content = ContentEncoder.from_pretrained(path, device=self.device, preset=self.cfg.preset)
        content.set_features(self.cfg.model.content_features)
        if content.out_dim != self.cfg.model.content_dim:
            raise VoxarConfigError(
                f"{path}: the content encoder gives {content.out_dim}-d {content.features.upper()} features but "
                f"model.content_dim is "
                f"{self.cfg.model.content_dim}; set model.content_dim: {content.out_dim}"
            )
        for p in content.parameters():
            p.requires_grad_(False)
        return content.eval()

    def _wrap(self, module: nn.Module) -> nn.Module:
        """DDP or the bare module (every parameter is in every step's graph: the null embeddings enter through
        ``torch.where``, so no unused-parameter search is needed)."""
        if not self.info.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def batches(self) -> Any:
        """Endless batches from the current step on (:func:`voxar.train.loop.epoch_batches`: exact resume)."""

        from voxar.train.loop import epoch_batches

        for step, indices in epoch_batches(self.sampler, self.step):
            rng = np.random.default_rng([self.cfg.seed, self.info.rank, step])
            yield self.train_set.batch(indices, rng, augment=True)

    @torch.no_grad()
    def content_of(self, mels: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Content features ``(B, Dc, T)`` of raw mels ``(B, M, T)`` from the frozen content encoder."""
        return self.content(mels, lens, chunk_size=self.cfg.content_chunk_size).bnf.float()

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A data batch on the device -> the keyword arguments of :meth:`VCModel.loss`."""
        b = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        bnf = self.content_of(b["mels"], b["mel_lens"])  # content of the unwarped mel
        mels, refs = b["mels"], b["ref_mels"]
        if bool((b["warp"] != 1).any()):
            mels, refs = warp_mels(mels, b["warp"]), warp_mels(refs, b["warp"])
        mels, bnf, lens = crop_segments(mels, bnf, b["mel_lens"], b["starts"], self.cfg.segment_frames)
        return {"mel": mels, "bnf": bnf, "ref_mel": refs, "mel_lens": lens, "ref_lens": b["ref_lens"]}

    # ------------------------------------------------------------------------------------------------ one step
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimiser step; returns the step's loss values."""
        kwargs = self.prepare(batch)  # fp32 throughout: the JVP covers the whole noisy stream (method brief 1.7)
        loss, stats = self.loss_module(**kwargs, progress=self.step / max(1, self.cfg.max_steps))
        gnorm = self.optimizer_step(loss)
        metrics = {"loss": float(loss.detach())}
        metrics.update({k: float(v) for k, v in stats.items()})
        metrics.update(grad_norm=gnorm, lr=self.opt.param_groups[0]["lr"], frames=float(kwargs["mel_lens"].sum()))
        return metrics

    # ----------------------------------------------------------------------------------- validation and files
    def ema_model(self) -> Any:
        from voxar.models.vc import VCModel

        model = VCModel(self.cfg.model).to(self.device)
        self.ema.copy_to(model)
        return model.eval()

    def validate(self) -> dict[str, float]:
        """Main rank: teacher-forced losses of the EMA model (fixed noise and references), ``tf1_l1``,
        ``recon_l1`` and the ``mean_l1`` baseline (see the module docstring)."""

        from voxar.models.refenc import length_mask
        from voxar.models.vc_loss import teacher_forced

        model = self.ema_model()
        data = self.valid_set
        totals: dict[str, float] = {}
        n, batch_size, n_batches = len(data), 4, 0
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)
            for start in range(0, n, batch_size):
                rng = np.random.default_rng([self.cfg.seed, start])
                batch = self.prepare(data.batch(list(range(start, min(n, start + batch_size))), rng))
                loss, stats = model.loss(**batch)
                # one MF step from pure noise with the true clean past: x = z1 - u(z1, r=0, t=1)
                mel, lens = batch["mel"], batch["mel_lens"]
                z = torch.randn(mel.shape, device=mel.device)
                t = mel.new_ones(mel.shape[0], -(-mel.shape[-1] // model.cfg.chunk_size))
                target = model.prepare_target(batch["ref_mel"], batch["ref_lens"])
                est = model.denormalize(z - teacher_forced(model, mel, batch["bnf"], target, z, t, 0 * t, lens))
                ok = length_mask(lens, mel.shape[-1])[:, None].to(mel.dtype)  # (B, 1, T)
                stats["tf1_l1"] = ((est - mel).abs() * ok).sum() / (ok.sum() * mel.shape[1])
                for k, v in {"loss": loss, **stats}.items():
                    totals[k] = totals.get(k, 0.0) + float(v)
                n_batches += 1
            out = {k: v / n_batches for k, v in totals.items()}
            l1, base = [], []
            for i in range(min(n, self.cfg.valid_convert)):
                rng = np.random.default_rng([self.cfg.seed, 7, i])
                mel = data.mel(i)[None].to(self.device)
                ref = data.reference(i, rng)[None].to(self.device)
                bnf = self.content_of(mel, torch.tensor([mel.shape[-1]], device=self.device))
                conv = model.convert(bnf, ref, seed=i)
                l1.append(float((conv - mel).abs().mean()))
                base.append(float((model.mel_mean[:, None] - mel[0]).abs().mean()))
        if l1:
            out.update(recon_l1=sum(l1) / len(l1), mean_l1=sum(base) / len(base))
        return out

    def export(self) -> Path:
        """Main rank: write the EMA weights as ``exp/model`` (a VC model directory; atomic replace)."""
        return self.ema_model().cpu().save_pretrained(self.exp / MODEL_DIR, overwrite=True)

    def describe(self) -> str:
        from voxar.models.vc import describe

        return f"{describe(self.model)}; {len(self.train_set)} utterances ({len(self.train_set.by_spk)} speakers)"


# ------------------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the script."""
    from voxar.train.loop import add_dump_train_args

    p = argparse.ArgumentParser(prog="train_vc", description=__doc__.splitlines()[0])
    add_dump_train_args(p, "VCTrainConfig")
    p.add_argument("--content-model", required=True, help="content encoder model directory (train_content)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run training; returns the exit status (1 with a one-line message on bad input)."""
    from voxar.train.loop import train_main

    return train_main("train_vc", build_parser().parse_args(argv), VCTrainConfig, Trainer, ("max_steps", "seed"))


if __name__ == "__main__":
    sys.exit(main())
