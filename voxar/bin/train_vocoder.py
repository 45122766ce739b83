"""Recipe entry point: train a Vocos-style vocoder on a Kaldi data directory (plain PyTorch, DDP under torchrun).

Usage::

    python -m voxar.bin.train_vocoder --config egs/synth/conf/vocoder_tiny.yaml --data data/train \\
        [--valid data/dev] --exp exp/vocoder_tiny [--resume | --init-from DIR|CKPT] [--max-steps N] [--batch-size B] \\
        [--device cpu|cuda] [--num-workers W] [--seed S] [--threads N] [--override key=value ...]
    torchrun --nproc_per_node 2 -m voxar.bin.train_vocoder ...      # DDP (gloo on CPU, nccl on CUDA)

Each step crops ``segment_seconds`` of audio per item, computes its log-mel (the vocoder's preset), resynthesises it
and minimises ``mel_weight * mel-L1 + mrstft_weight * MR-STFT``; from ``gan_start_step`` on (None: never) a
multi-period + multi-resolution discriminator adds ``adv_weight * hinge + fm_weight * feature matching`` (Vocos).
``batch_size`` is per process. ``exp/`` receives ``config.yaml``, ``checkpoint-<step>.pt`` + ``last.pt`` (atomic,
``keep_last`` kept), ``train_log.jsonl``, ``tb/`` and, at each validation and at the end, ``model/`` -- the EMA
generator as a voxar model directory (``Vocoder.from_pretrained``). SIGINT/SIGTERM saves a checkpoint and exits
with status 128 + signal; ``--resume`` then continues exactly (step, optimisers, EMA, data order, RNG).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from voxar.models.vocoder import VocoderConfig  # needed at import time: the config dataclass nests it
from voxar.train.trainer import MODEL_DIR, ModelTrainer

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("voxar.train_vocoder")
DISC_KEY = "discriminator"
STFT_RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (256, 64, 256))  # (n_fft, hop, win) of the MR-STFT loss
DISC_RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))  # of the resolution discriminator


@dataclass
class VocoderTrainConfig:
    """Everything a vocoder run needs; ``egs/*/conf/vocoder_*.yaml`` maps onto it (unknown keys are errors)."""

    model: VocoderConfig = field(default_factory=VocoderConfig)
    # optimisation (AdamW for the generator and the discriminators)
    lr: float = 1e-3
    disc_lr: float | None = None  # None: same as lr
    betas: tuple[float, float] = (0.8, 0.9)
    weight_decay: float = 0.01
    warmup: int = 100
    lr_decay: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    max_steps: int = 1000
    batch_size: int = 8
    segment_seconds: float = 0.64
    # losses
    mel_weight: float = 45.0
    mrstft_weight: float = 1.0
    stft_resolutions: list[list[int]] = field(default_factory=lambda: [list(r) for r in STFT_RESOLUTIONS])
    gan_start_step: int | None = None  # None: no GAN (tiny); 0: GAN from the start
    adv_loss: Literal["hinge", "lsgan"] = "hinge"
    adv_weight: float = 1.0
    fm_weight: float = 2.0
    gta_prob: float = 0.5  # with --gta: share of training crops whose input is the GTA mel, not the recording's
    disc_periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    disc_period_channels: list[int] = field(default_factory=lambda: [32, 128, 512, 1024])
    disc_resolutions: list[list[int]] = field(default_factory=lambda: [list(r) for r in DISC_RESOLUTIONS])
    disc_resolution_channels: int = 32
    # weights averaging, logging, checkpoints
    ema_decay: float = 0.999
    log_every: int = 10
    valid_every: int = 500
    valid_utts: int = 4
    valid_max_seconds: float = 4.0
    save_every: int = 500
    keep_last: int = 3
    amp: bool = True  # bf16 autocast on CUDA (CPU stays fp32)
    num_workers: int = 0
    cache_audio: bool = True
    tensorboard: bool = True
    seed: int = 1234

    def __post_init__(self) -> None:
        from voxar.errors import VoxarConfigError

        for key in ("max_steps", "batch_size", "log_every"):
            if getattr(self, key) < 1:
                raise VoxarConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.segment_seconds <= 0 or self.lr <= 0:
            raise VoxarConfigError("segment_seconds and lr must be positive")
        if not 0.0 <= self.gta_prob <= 1.0:
            raise VoxarConfigError(f"gta_prob must be in [0, 1], got {self.gta_prob}")
        if self.gan_start_step is not None and self.gan_start_step < 0:
            raise VoxarConfigError(f"gan_start_step must be >= 0 or null, got {self.gan_start_step}")


# --------------------------------------------------------------------------------------------------------- the run


class Trainer(ModelTrainer):
    """State of one run; :meth:`run` is the loop. Built on every rank (rank 0 also logs and writes files). The GAN
    run has two optimisers, so it keeps its own set-up, checkpoints and loop; it shares validation and export."""

    def __init__(self, cfg: VocoderTrainConfig, args: argparse.Namespace) -> None:
        import torch

        from voxar.data.segments import AudioSegmentDataset, GTASegmentDataset, SegmentBatchSampler
        from voxar.models.discriminators import VocoderDiscriminator
        from voxar.models.losses import MelL1Loss, MultiResolutionSTFTLoss
        from voxar.models.vocoder import Vocoder
        from voxar.train import checkpoint as ckpt_mod
        from voxar.train import distributed as D
        from voxar.train.ema import EMA
        from voxar.train.loop import set_seed
        from voxar.train.schedule import lr_lambda

        self.start(cfg, args)
        ckpt = self.find_checkpoint(("model",))
        existing = self.resume_path

        set_seed(cfg.seed)  # identical initial weights on every rank
        self.gen = Vocoder(cfg.model).to(self.device)
        self.ema = EMA(self.gen, cfg.ema_decay)
        self.model = self.gen  # what ModelTrainer.init_from warm-starts (the discriminators always start afresh)
        self.init_from()
        self.opt_g = torch.optim.AdamW(self.gen.parameters(), cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        sched = dict(warmup=cfg.warmup, decay=cfg.lr_decay, min_ratio=cfg.min_lr_ratio)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, lr_lambda(max_steps=cfg.max_steps, **sched))
        self.disc = self.opt_d = self.sched_d = None
        if cfg.gan_start_step is not None:
            self.disc = VocoderDiscriminator(
                cfg.disc_periods, cfg.disc_period_channels, cfg.disc_resolutions, cfg.disc_resolution_channels
            ).to(self.device)
            d_lr = cfg.disc_lr if cfg.disc_lr is not None else cfg.lr
            self.opt_d = torch.optim.AdamW(self.disc.parameters(), d_lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
            d_steps = max(1, cfg.max_steps - cfg.gan_start_step)
            self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, lr_lambda(max_steps=d_steps, **sched))
        mel_cfg = cfg.model.mel_config()
        self.mel_loss = MelL1Loss(mel_cfg).to(self.device)  # its .mel also computes the generator's input
        self.stft_loss = MultiResolutionSTFTLoss(cfg.stft_resolutions).to(self.device)

        self.step = 0
        if ckpt is not None:
            self.step, _ = ckpt_mod.restore_checkpoint(
                ckpt,
                model=self.gen,
                ema=self.ema,
                optimizers={"gen": self.opt_g},
                schedulers={"gen": self.sched_g},
                rng=False,
                where=str(existing),
            )
            self._restore_disc(ckpt)
            logger.info("resuming from %s at step %d", existing, self.step)
        self.gen_ddp = D.wrap_ddp(self.gen, self.info, self.device)
        self.disc_ddp = D.wrap_ddp(self.disc, self.info, self.device) if self.disc is not None else None

        self.sample_rate = mel_cfg.sample_rate
        hop = mel_cfg.hop_length
        self.segment = max(1, round(cfg.segment_seconds * self.sample_rate / hop)) * hop
        if getattr(args, "gta", None):
            self.train_set = GTASegmentDataset(
                args.data, args.gta, self.sample_rate, self.segment, hop, gta_prob=cfg.gta_prob,
                log_floor=mel_cfg.log_floor, seed=cfg.seed, cache=cfg.cache_audio,
            )  # fmt: skip
            if self.train_set.gta.mel_config() != mel_cfg:
                from voxar.errors import VoxarConfigError

                raise VoxarConfigError(f"{args.gta}: GTA mels were computed with another mel config than the vocoder's")
            logger.info("GTA mels from %s for %.0f %% of the crops", args.gta, 100 * cfg.gta_prob)
        else:
            self.train_set = AudioSegmentDataset(
                args.data, self.sample_rate, self.segment, seed=cfg.seed, cache=cfg.cache_audio
            )
        self.sampler = SegmentBatchSampler(
            len(self.train_set),
            cfg.batch_size,
            seed=cfg.seed,
            rank=self.info.rank,
            world_size=self.info.world_size,
            start_step=self.step,
        )
        self.valid_set = None
        if self.info.is_main:
            valid_dir = args.valid or args.data
            self.valid_split = "valid" if args.valid else "train_resynth"
            self.valid_set = AudioSegmentDataset(
                valid_dir, self.sample_rate, self.segment, seed=cfg.seed, cache=True, max_utts=cfg.valid_utts
            )
        if ckpt is not None:
            ckpt_mod.restore_rng_states(ckpt.get("rng") or {}, self.info.rank, self.info.world_size)

    def _restore_disc(self, ckpt: dict[str, Any]) -> None:
        saved = (ckpt.get("extra") or {}).get(DISC_KEY)
        if self.disc is None:
            return
        if saved is None:
            logger.info("checkpoint has no discriminator: it starts from scratch")
            return
        from voxar.errors import VoxarConfigError

        try:
            self.disc.load_state_dict(saved)
            self.opt_d.load_state_dict(ckpt["optimizers"]["disc"])
            self.sched_d.load_state_dict(ckpt["schedulers"]["disc"])
        except (RuntimeError, ValueError, KeyError) as e:
            msg = str(e).splitlines()[0]
            raise VoxarConfigError(f"checkpoint discriminator does not match the config ({msg})") from e

    # ------------------------------------------------------------------------------------------------ one step
    def train_step(self, batch: torch.Tensor | list[torch.Tensor]) -> dict[str, float]:
        """One optimiser step on a batch ``wav (B, T)``, or with ``--gta`` ``[wav (B, T), gta (B, n_mels, 1 + T //
        hop), use (B,)]`` (items with ``use`` take the GTA mel as input); returns the step's loss values."""
        import torch

        from voxar.models.discriminators import split_outputs
        from voxar.models.losses import discriminator_loss, feature_matching_loss, generator_loss
        from voxar.train.distributed import unwrap
        from voxar.train.loop import autocast

        cfg = self.cfg
        gta = None
        if isinstance(batch, (list, tuple)):
            wav, gta, use = (t.to(self.device, non_blocking=True) for t in batch)
        else:
            wav = batch.to(self.device, non_blocking=True)
        with torch.no_grad():
            mel = self.mel_loss.mel(wav)  # (B, T) -> (B, n_mels, 1 + T // hop)
            if gta is not None:
                mel = torch.where(use[:, None, None], gta.to(mel.dtype), mel)
        with autocast(self.device, cfg.amp):
            out = self.gen_ddp(mel)  # (B, n_mels, N) -> (B, L), L >= T
        n = min(out.shape[-1], wav.shape[-1])
        y_hat, y = out[:, :n].float(), wav[:, :n]
        metrics: dict[str, float] = {}
        gan = self.disc is not None and self.step >= cfg.gan_start_step

        if gan:  # discriminator step on real vs detached fake, one forward for both
            with autocast(self.device, cfg.amp):
                real, fake = split_outputs(self.disc_ddp(torch.cat([y, y_hat.detach()])), y.shape[0])
            loss_d = discriminator_loss(real[0], fake[0], cfg.adv_loss)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.grad_clip)
            self.opt_d.step()
            self.sched_d.step()
            metrics["disc"] = loss_d.item()

        loss_mel = self.mel_loss(y_hat, y)
        loss_stft = self.stft_loss(y_hat, y)
        loss = cfg.mel_weight * loss_mel + cfg.mrstft_weight * loss_stft
        metrics.update(mel=loss_mel.item(), mrstft=loss_stft.item())
        if gan:  # generator's adversarial terms through the bare discriminator (its gradients are discarded)
            disc = unwrap(self.disc)
            disc.requires_grad_(False)
            with torch.no_grad(), autocast(self.device, cfg.amp):
                _, fmaps_real = disc(y)
            with autocast(self.device, cfg.amp):
                logits_fake, fmaps_fake = disc(y_hat)
            loss_adv = generator_loss(logits_fake, cfg.adv_loss)
            loss_fm = feature_matching_loss(fmaps_real, fmaps_fake)
            disc.requires_grad_(True)
            loss = loss + cfg.adv_weight * loss_adv + cfg.fm_weight * loss_fm
            metrics.update(adv=loss_adv.item(), fm=loss_fm.item())

        gnorm = self.optimizer_step(loss, self.gen, self.opt_g, self.sched_g)
        metrics.update(loss=loss.item(), grad_norm=gnorm, lr=self.opt_g.param_groups[0]["lr"])
        return metrics

    # ----------------------------------------------------------------------------------- validation and files
    def validate(self) -> dict[str, float]:
        """Main rank: mel L1 of the EMA (and raw) generator's resynthesis of the validation utterances."""
        import torch

        from voxar.models.vocoder import Vocoder

        ema_model = Vocoder(self.cfg.model).to(self.device)
        self.ema.copy_to(ema_model)
        totals = {"mel_l1": 0.0, "mel_l1_raw": 0.0}
        max_len = int(self.cfg.valid_max_seconds * self.sample_rate)
        self.gen.eval()
        with torch.no_grad():
            for i in range(len(self.valid_set)):
                wav = torch.from_numpy(self.valid_set.utterance(i)[:max_len]).to(self.device)[None]  # (1, T)
                if wav.shape[-1] <= self.cfg.model.n_fft:
                    wav = torch.nn.functional.pad(wav, (0, self.cfg.model.n_fft + 1 - wav.shape[-1]))
                mel = self.mel_loss.mel(wav)  # (1, n_mels, N)
                for key, model in (("mel_l1", ema_model.eval()), ("mel_l1_raw", self.gen)):
                    out = model(mel).float()
                    n = min(out.shape[-1], wav.shape[-1])
                    totals[key] += self.mel_loss(out[:, :n], wav[:, :n]).item()
                    if key == "mel_l1" and i == 0:
                        self.log.log_audio(self.step, "resynth/0", out[0, :n], self.sample_rate)
        self.gen.train()
        return {k: v / len(self.valid_set) for k, v in totals.items()}

    def export(self) -> Path:
        """Main rank: write the EMA generator as ``exp/model`` (atomic replace)."""
        from voxar.models.vocoder import Vocoder

        model = Vocoder(self.cfg.model)
        self.ema.copy_to(model)
        return model.save_pretrained(self.exp / MODEL_DIR, overwrite=True)

    def save(self) -> None:
        """Checkpoint at the current step (a collective in DDP: every rank calls it)."""
        from voxar.train import checkpoint as ckpt_mod
        from voxar.train import distributed as D

        rng = ckpt_mod.gather_rng_states()
        if self.info.is_main:
            from voxar.config import to_dict

            extra = {DISC_KEY: self.disc.state_dict()} if self.disc is not None else {}
            opts = {"gen": self.opt_g, **({"disc": self.opt_d} if self.opt_d is not None else {})}
            scheds = {"gen": self.sched_g, **({"disc": self.sched_d} if self.sched_d is not None else {})}
            ckpt = ckpt_mod.make_checkpoint(
                step=self.step,
                epoch=self.step // self.sampler.steps_per_epoch,
                model=self.gen,
                ema=self.ema,
                optimizers=opts,
                schedulers=scheds,
                config=self.plain_cfg,
                model_config=to_dict(self.cfg.model),
                rng=rng,
                extra=extra,
            )
            ckpt_mod.save_checkpoint(self.exp, ckpt, keep_last=self.cfg.keep_last)
        D.barrier()
        self.saved_step = self.step

    # ------------------------------------------------------------------------------------------------ the loop
    def run(self) -> int:
        """Train to ``max_steps`` (or until interrupted); returns the exit status."""
        import torch

        from voxar.config import save_config
        from voxar.train.logger import TrainLogger
        from voxar.train.loop import run_steps

        cfg = self.cfg
        if self.info.is_main:
            self.exp.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.exp / "config.yaml")
            n_params = sum(p.numel() for p in self.gen.parameters())
            logger.info(
                "vocoder %.2fM parameters, %d utterances, segment %d samples, batch %d x %d process(es), device %s",
                n_params / 1e6,
                len(self.train_set),
                self.segment,
                cfg.batch_size,
                self.info.world_size,
                self.device,
            )
        loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_sampler=self.sampler,
            num_workers=cfg.num_workers,
            persistent_workers=cfg.num_workers > 0,
            pin_memory=self.device.type == "cuda",
        )
        self.saved_step = self.step if self.step > 0 else -1
        self.log = TrainLogger(
            self.exp,
            enabled=self.info.is_main,
            tensorboard=cfg.tensorboard,
            progress=not self.args.no_progress,
            total_steps=cfg.max_steps,
            initial_step=self.step,
            desc="vocoder",
        )
        with self.log:
            return run_steps(
                self,
                iter(loader),
                max_steps=cfg.max_steps,
                log_every=cfg.log_every,
                valid_every=cfg.valid_every,
                save_every=cfg.save_every,
                is_main=self.info.is_main,
                done_message=f"EMA vocoder in {self.exp / MODEL_DIR}",
            )


# ------------------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the script."""
    p = argparse.ArgumentParser(prog="train_vocoder", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="YAML mapping onto VocoderTrainConfig")
    p.add_argument("--data", required=True, help="training Kaldi data directory")
    p.add_argument("--valid", default=None, help="validation Kaldi data directory (default: a few training utts)")
    p.add_argument("--exp", required=True, help="experiment directory (checkpoints, logs, model/)")
    p.add_argument("--resume", action="store_true", help="continue from exp/last.pt when it exists")
    p.add_argument(
        "--init-from", default=None, metavar="DIR|CKPT",
        help="warm start the generator from a vocoder model directory or a checkpoint's EMA weights (fresh "
        "discriminators, optimisers and step), e.g. to add the GAN stage to a vocoder trained without it",
    )  # fmt: skip
    p.add_argument(
        "--gta", default=None, metavar="DIR",
        help="ground-truth-aligned mels of --data's utterances (python -m voxar.bin.gta_mels): the share gta_prob "
        "of the crops trains on them instead of the recordings' mels (fine-tuning for a TTS model's outputs)",
    )  # fmt: skip
    p.add_argument("--max-steps", type=int, default=None, help="override max_steps")
    p.add_argument("--batch-size", type=int, default=None, help="override batch_size (per process)")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--num-workers", type=int, default=None, help="override num_workers (DataLoader processes)")
    p.add_argument("--seed", type=int, default=None, help="override seed")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE", help="dotted config overrides")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per process (torch.set_num_threads)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run training; returns the exit status (1 with a one-line message on bad input)."""
    from voxar.train.loop import train_main

    return train_main(
        "train_vocoder",
        build_parser().parse_args(argv),
        VocoderTrainConfig,
        Trainer,
        ("max_steps", "batch_size", "num_workers", "seed"),
    )


if __name__ == "__main__":
    sys.exit(main())
