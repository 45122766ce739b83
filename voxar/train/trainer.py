"""The shared skeleton of voxar's single-model trainers (content encoder, TTS, VC).

A subclass builds its data and model in ``__init__`` with the helpers below, in this order::

    self.start(cfg, args)                          # exp dir, DDP process group, device, plain config
    ckpt = self.find_checkpoint(("model",))        # --resume policy; None for a fresh run
    ... datasets, set_seed, self.model, self.ema ...
    self.init_from()                               # --init-from warm start (fresh runs only)
    self.make_optimizer()                          # AdamW (no decay on biases, norms, embeddings) + LR schedule
    self.restore(ckpt)                             # step, weights, EMA, optimiser and schedule of the checkpoint
    ... DDP wrapper, self.sampler = self.make_sampler(lengths), validation set ...
    self.restore_rng(ckpt)                         # last: exact resume of the random streams

and provides ``batches()``, ``train_step(batch)`` (ending in :meth:`optimizer_step`), ``ema_model()``,
``export()``, ``validate()`` (or its own ``validate_and_export``) and ``describe()``. :meth:`run` is the loop
(:func:`voxar.train.loop.run_steps`): logging, TensorBoard, progress, periodic validation, atomic checkpoints and a
final checkpoint on SIGINT/SIGTERM. The vocoder's GAN trainer (two optimisers) keeps its own loop.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from voxar.errors import VoxarError

logger = logging.getLogger("voxar.train")
MODEL_DIR = "model"


class ModelTrainer:
    """Base of one run (see the module docstring). ``name`` keys the optimiser and schedule in checkpoints and
    labels the progress bar; ``what`` names the exported model in the final message."""

    name = "model"
    what = "model"

    # ------------------------------------------------------------------------------------------------ set-up
    def start(self, cfg: Any, args: argparse.Namespace) -> None:
        """Bind the config and arguments; join the process group; pick the device."""
        from voxar.config import to_dict
        from voxar.train import distributed as D

        self.cfg, self.args = cfg, args
        self.exp = Path(args.exp)
        self.info = D.init_distributed(device=args.device)
        self.device = D.device_for(self.info, args.device)
        self.plain_cfg = to_dict(cfg)
        self.step = 0
        self.bad_steps = 0  # consecutive skipped updates (non-finite gradient norm)

    def find_checkpoint(self, compare_keys: tuple[str, ...], ignore: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The checkpoint to resume (``exp/last.pt`` or the newest one), checked against this run's config on
        ``compare_keys`` (except the dotted keys in ``ignore``); an experiment with checkpoints but no ``--resume`` is
        an error (nothing is overwritten)."""
        from voxar.train import checkpoint as ckpt_mod

        existing = ckpt_mod.find_resume(self.exp)
        if existing is not None and not self.args.resume:
            raise VoxarError(f"{self.exp}: already holds checkpoints; pass --resume to continue, or use a new --exp")
        self.resume_path = existing
        if existing is None:
            return None
        return ckpt_mod.load_checkpoint(
            existing, expect_config=self.plain_cfg, compare_keys=compare_keys, ignore_keys=ignore
        )

    def init_from(self) -> None:
        """Warm start a fresh run from ``--init-from`` (call after building ``self.model``): load model weights from
        a model directory (``model.safetensors``) or a training checkpoint (its EMA weights when present), pass them
        through :meth:`adapt_state_dict`, and restart the EMA from them; the source's mel statistics come along.
        Optimiser, schedule and step start afresh. Ignored when a checkpoint is being resumed (the run's own state
        wins); mismatched weights are an error."""
        from voxar.models.modeldir import check_state_dict
        from voxar.train.ema import EMA

        source = getattr(self.args, "init_from", None)
        if source is None or self.resume_path is not None:
            if source is not None:
                logger.info("--init-from %s ignored: resuming %s", source, self.resume_path)
            return
        state = self.adapt_state_dict(load_init_weights(source))
        check_state_dict(self.model, state, where=f"--init-from {source}")
        self.model.load_state_dict(state, strict=True)
        self.ema = EMA(self.model, self.cfg.ema_decay)
        logger.info("initialised the weights from %s", source)

    def adapt_state_dict(self, state: dict[str, Any]) -> dict[str, Any]:
        """Hook for :meth:`init_from`: reshape weights from an older layout of this model (default: unchanged)."""
        return state

    def make_optimizer(self) -> None:
        """AdamW over ``self.model`` (weight decay on matrices except embeddings) and the warm-up + decay schedule
        of ``cfg`` (``lr``, ``betas``, ``weight_decay``, ``warmup``, ``lr_decay``, ``min_lr_ratio``, ``max_steps``)."""
        import torch

        from voxar.train.schedule import lr_lambda

        cfg = self.cfg
        named = list(self.model.named_parameters())
        decay = [p for n, p in named if p.dim() >= 2 and "emb" not in n]
        no_decay = [p for n, p in named if not (p.dim() >= 2 and "emb" not in n)]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        self.opt = torch.optim.AdamW(groups, cfg.lr, betas=cfg.betas)
        sched = dict(warmup=cfg.warmup, decay=cfg.lr_decay, min_ratio=cfg.min_lr_ratio, max_steps=cfg.max_steps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(**sched))

    def restore(self, ckpt: dict[str, Any] | None) -> None:
        """Load step, weights, EMA, optimiser and schedule from ``ckpt`` (no-op for a fresh run)."""
        from voxar.train import checkpoint as ckpt_mod

        if ckpt is None:
            return
        self.step, _ = ckpt_mod.restore_checkpoint(
            ckpt, model=self.model, ema=self.ema, optimizers={self.name: self.opt}, schedulers={self.name: self.sched},
            rng=False, where=str(self.resume_path),
        )  # fmt: skip
        logger.info("resuming from %s at step %d", self.resume_path, self.step)
        if self.ema.decay != self.cfg.ema_decay:  # the config wins over the checkpoint's EMA decay
            logger.info("EMA decay %g (checkpoint: %g)", self.cfg.ema_decay, self.ema.decay)
            self.ema.decay = float(self.cfg.ema_decay)

    def restore_rng(self, ckpt: dict[str, Any] | None) -> None:
        """Restore this rank's random streams from ``ckpt`` (call last in ``__init__``)."""
        from voxar.train import checkpoint as ckpt_mod

        if ckpt is not None:
            ckpt_mod.restore_rng_states(ckpt.get("rng") or {}, self.info.rank, self.info.world_size)

    def make_sampler(self, lengths: list[int]) -> Any:
        """Length-bucketed dynamic batches of at most ``cfg.max_frames`` padded frames, sharded over the ranks."""
        from voxar.data.sampler import DynamicBatchSampler

        cfg = self.cfg
        return DynamicBatchSampler(
            lengths, max_frames=cfg.max_frames, num_buckets=cfg.num_buckets, seed=cfg.seed,
            num_replicas=self.info.world_size, rank=self.info.rank,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------------ one step
    def optimizer_step(self, loss: Any, model: Any = None, opt: Any = None, sched: Any = None) -> float:
        """Backward, clip to ``cfg.grad_clip``, step (skipped on a non-finite gradient norm -- computed after DDP's
        all-reduce, so every rank agrees; 10 in a row is an error), advance the schedule and the EMA. ``model``,
        ``opt``, ``sched`` default to ``self.model``, ``self.opt``, ``self.sched``. Returns the gradient norm."""
        import torch

        model = self.model if model is None else model
        opt = self.opt if opt is None else opt
        sched = self.sched if sched is None else sched
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
        if torch.isfinite(gnorm):
            opt.step()
            self.bad_steps = 0
        else:
            self.bad_steps += 1
            logger.warning("step %d: non-finite gradient norm, update skipped", self.step)
            if self.bad_steps >= 10:
                raise VoxarError(f"training diverged: 10 consecutive non-finite gradients at step {self.step}")
        sched.step()
        self.ema.update(model)
        return float(gnorm)

    # ----------------------------------------------------------------------------------- validation and files
    def model_config(self) -> Any:
        """The model's config dataclass, stored in checkpoints (default ``cfg.model``)."""
        return self.cfg.model

    def save(self) -> None:
        """Checkpoint at the current step (a collective in DDP: every rank calls it)."""
        from voxar.config import to_dict
        from voxar.train import checkpoint as ckpt_mod
        from voxar.train import distributed as D

        rng = ckpt_mod.gather_rng_states()
        if self.info.is_main:
            ckpt = ckpt_mod.make_checkpoint(
                step=self.step, epoch=self.step // len(self.sampler), model=self.model, ema=self.ema,
                optimizers={self.name: self.opt}, schedulers={self.name: self.sched}, config=self.plain_cfg,
                model_config=to_dict(self.model_config()), rng=rng,
            )  # fmt: skip
            ckpt_mod.save_checkpoint(self.exp, ckpt, keep_last=self.cfg.keep_last)
        D.barrier()
        self.saved_step = self.step

    def validate(self) -> dict[str, float]:
        """Main rank: validation metrics of the EMA model."""
        raise NotImplementedError

    def validate_and_export(self) -> None:
        """Main rank logs :meth:`validate` and exports the EMA model; the others wait."""
        from voxar.train import distributed as D

        if self.info.is_main:
            self.log.log(self.step, self.validate(), split=self.valid_split)
            self.export()
        D.barrier()

    # ------------------------------------------------------------------------------------------------ the loop
    def describe(self) -> str:
        """One line on the model and data, logged at the start."""
        return f"{self.name} {sum(p.numel() for p in self.model.parameters()) / 1e6:.2f}M parameters"

    def run(self) -> int:
        """Train to ``max_steps`` (or until interrupted); returns the exit status."""
        from voxar.config import save_config
        from voxar.train.logger import TrainLogger
        from voxar.train.loop import run_steps

        cfg = self.cfg
        if self.info.is_main:
            self.exp.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.exp / "config.yaml")
            logger.info(
                "%s; %d batches/epoch of <= %d frames x %d process(es), device %s",
                self.describe(), len(self.sampler), cfg.max_frames, self.info.world_size, self.device,
            )  # fmt: skip
        self.saved_step = self.step if self.step > 0 else -1
        self.log = TrainLogger(
            self.exp, enabled=self.info.is_main, tensorboard=cfg.tensorboard, progress=not self.args.no_progress,
            total_steps=cfg.max_steps, initial_step=self.step, desc=self.name,
        )  # fmt: skip
        with self.log:
            return run_steps(
                self, self.batches(), max_steps=cfg.max_steps, log_every=cfg.log_every, valid_every=cfg.valid_every,
                save_every=cfg.save_every, is_main=self.info.is_main,
                done_message=f"EMA {self.what} in {self.exp / MODEL_DIR}",
            )  # fmt: skip


def load_init_weights(source: str | Path) -> dict[str, Any]:
    """Model weights from a model directory (``model.safetensors``) or a training checkpoint ``.pt`` (the EMA
    shadow when the checkpoint has one, else the raw weights). Never unpickles arbitrary objects."""
    path = Path(source)
    if path.is_dir():
        from safetensors.torch import load_file

        from voxar.models.modeldir import WEIGHTS_FILE

        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise VoxarError(f"{path}: no {WEIGHTS_FILE} to initialise from")
        return dict(load_file(str(weights), device="cpu"))
    from voxar.train import checkpoint as ckpt_mod

    ckpt = ckpt_mod.load_checkpoint(path)
    ema = ckpt.get("ema")
    if isinstance(ema, dict) and isinstance(ema.get("shadow"), dict):
        return dict(ema["shadow"])
    return dict(ckpt["model"])
