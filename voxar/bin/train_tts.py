"""Recipe entry point: train the zero-shot TTS model (patch LM + FM and MF heads) on a feature dump.

Usage::

    python -m voxar.bin.train_tts --config egs/synth/conf/tts_tiny.yaml --dump dump/train [--valid-dump dump/dev] \\
        --exp exp/tts_tiny [--resume] [--max-steps N] [--device cpu|cuda] [--seed S] [--threads N] \\
        [--override key=value ...]
    torchrun --nproc_per_node 2 -m voxar.bin.train_tts ...      # DDP (gloo on CPU, nccl on CUDA)

``--dump`` is the output of ``voxar data dump DATA DUMP --preset 16k`` (``manifest.jsonl`` with text and speaker,
mel shards, ``stats.safetensors``); its CMVN statistics normalise the mels (``lm.set_mel_stats``). Batches are
length-bucketed with a padded-frame budget ``max_frames`` (per process).

**Conditioning per batch.** With probability ``prompt_prob`` the batch trains *prompt continuation*: each item's
prompt is another utterance of its speaker (text = prompt transcript + " " + target transcript, prompt mel patches
first). Otherwise it trains the transcript-free mode: the reference encoder reads another utterance of the speaker
(a random crop of at most ``ref_max_frames``), or a random crop of the item itself when its speaker has one
utterance. With probability ``spk_drop`` a batch has no speaker at all (the learned "no speaker" token). Items
without a second utterance of their speaker fall back to the transcript-free mode.

**Loss.** ``fm + mf_weight * mf + stop_weight * stop (+ align_weight * align + ctc_weight * ctc)`` on the same LM
hidden states (``mf_head: null`` trains FM only; ``align`` is the diagonal text-attention prior of
:mod:`voxar.models.align`: it guides the LM to a monotonic text alignment early in training; ``ctc`` asks the states
to name the phones of the target text in order, :meth:`voxar.models.lm.PatchLM.ctc_loss`).
``exp/`` receives ``config.yaml``, ``checkpoint-<step>.pt`` + ``last.pt`` (atomic, ``keep_last`` kept),
``train_log.jsonl``, ``tb/`` and, at each validation and at the end, ``model/``: the EMA weights as a TTS model
directory (:meth:`voxar.tts.TTS.from_pretrained`). SIGINT/SIGTERM saves a checkpoint and exits with 128 + signal;
``--resume`` continues exactly (step, optimiser, EMA, data order, RNG).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from voxar.errors import VoxarConfigError, VoxarDataError
from voxar.models.heads import HeadConfig  # needed at import time: the config dataclass nests them
from voxar.models.lm import LMConfig
from voxar.train.trainer import MODEL_DIR, ModelTrainer
from voxar.tts import default_mf_head

logger = logging.getLogger("voxar.train_tts")


@dataclass
class TTSTrainConfig:
    """Everything a TTS run needs; ``egs/*/conf/tts_*.yaml`` maps onto it (unknown keys are errors)."""

    preset: str = "16k"
    tokenizer: Literal["char", "phoneme"] = "char"
    lm: LMConfig = field(default_factory=LMConfig)
    fm_head: HeadConfig = field(default_factory=lambda: HeadConfig.named("tiny"))
    mf_head: HeadConfig | None = field(default_factory=default_mf_head)
    # optimisation
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup: int = 100
    lr_decay: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    max_steps: int = 1000
    max_frames: int = 3000  # padded target frames per batch (per process)
    max_utt_frames: int = 1500  # longer utterances are left out
    num_buckets: int = 10
    # losses
    mf_weight: float = 1.0
    stop_weight: float = 1.0
    align_weight: float = 0.0  # diagonal prior on the text attention of align_layers (voxar.models.align); 0 = off
    align_layers: list[int] = field(default_factory=lambda: [1])
    align_sigma: float = 0.2
    align_heads: int = 0  # the first align_heads heads of each align layer are alignment heads (0: all)
    ctc_weight: float = 0.0  # CTC of the target's phones from the LM states (needs lm.ctc: true); 0 = off
    sched_sampling: float = 0.0  # probability that a previous-patch input is the model's own prediction (0 = off)
    pointer_weight: float = 1.0  # advance-head loss of the text pointer (lm.pointer: true; needs phone alignments)
    feedback: bool = True  # the model directory's decoding default (false: from the text pointer alone)
    # conditioning
    prompt_prob: float = 0.3
    spk_drop: float = 0.05
    ref_max_frames: int = 300
    ref_min_frames: int = 50
    # weights averaging, logging, checkpoints
    ema_decay: float = 0.999
    log_every: int = 10
    valid_every: int = 500
    valid_utts: int = 16
    save_every: int = 500
    keep_last: int = 3
    amp: bool = True  # bf16 autocast on CUDA (CPU stays fp32)
    tensorboard: bool = True
    seed: int = 1234

    def __post_init__(self) -> None:
        for key in ("max_steps", "max_frames", "log_every", "ref_max_frames", "ref_min_frames", "num_buckets"):
            if getattr(self, key) < 1:
                raise VoxarConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("prompt_prob", "spk_drop"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise VoxarConfigError(f"{key} must be in [0, 1], got {getattr(self, key)}")
        if self.lr <= 0:
            raise VoxarConfigError(f"lr must be positive, got {self.lr}")
        if self.align_weight < 0 or self.align_sigma <= 0 or not 0 <= self.align_heads <= self.lm.n_heads:
            raise VoxarConfigError(
                f"need align_weight >= 0, align_sigma > 0 and align_heads in [0, {self.lm.n_heads}] (0: all)"
            )
        if self.lm.pointer and self.tokenizer != "phoneme":
            raise VoxarConfigError("lm.pointer needs tokenizer: phoneme (its alignments are phone alignments)")
        if not 0.0 <= self.sched_sampling <= 1.0:
            raise VoxarConfigError(f"sched_sampling must be in [0, 1], got {self.sched_sampling}")
        if self.ctc_weight < 0 or (self.ctc_weight > 0 and not self.lm.ctc):
            raise VoxarConfigError(f"ctc_weight must be >= 0 and needs lm.ctc: true, got {self.ctc_weight}")
        if self.align_weight > 0 and (
            not self.align_layers or any(not 0 <= i < self.lm.n_layers for i in self.align_layers)
        ):
            raise VoxarConfigError(
                f"align_layers must be LM layer indices in [0, {self.lm.n_layers}), got {self.align_layers}"
            )

    def loss_kwargs(self) -> dict[str, Any]:
        """The loss weights :meth:`voxar.tts.TTSModel.forward` takes."""
        layers = tuple(self.align_layers) if self.align_weight > 0 else ()
        return dict(
            mf_weight=self.mf_weight, stop_weight=self.stop_weight, align_weight=self.align_weight,
            align_layers=layers, align_sigma=self.align_sigma, align_heads=self.align_heads,
            ctc_weight=self.ctc_weight, sched_sampling=self.sched_sampling, pointer_weight=self.pointer_weight,
        )  # fmt: skip

    def model_config(self, tokenizer: dict[str, Any]) -> Any:
        """The :class:`voxar.tts.TTSModelConfig` of this run (``tokenizer``: ``Tokenizer.to_dict()``)."""
        from voxar.tts import TTSModelConfig

        return TTSModelConfig(self.preset, self.lm, self.fm_head, self.mf_head, tokenizer, self.feedback)


def pointer_skip_ids(tokenizer: Any) -> list[int]:
    """Token ids that are not phones for the text pointer: the specials and the content encoder's CTC skip symbols
    (the phone alignments index the same sequence)."""
    from voxar.models.content import DEFAULT_CTC_SKIP
    from voxar.text.symbols import SPECIALS

    drop = set(DEFAULT_CTC_SKIP) | set(SPECIALS)
    return [i for i, sym in enumerate(tokenizer.symbols.symbols) if sym in drop]


def make_tokenizer(kind: str) -> Any:
    from voxar.text import CharTokenizer, PhonemeTokenizer

    return CharTokenizer() if kind == "char" else PhonemeTokenizer()


# ---------------------------------------------------------------------------------------------------------- data
class TTSData:
    """A dump's mels, tokenised texts and speaker index; builds training batches (see the module docstring)."""

    def __init__(self, dump_dir: str | Path, tokenizer: Any, cfg: TTSTrainConfig, max_utts: int | None = None) -> None:

        from voxar.audio import MelConfig
        from voxar.data.dataset import MelDataset

        self.cfg = cfg
        self.ds = MelDataset(dump_dir, max_frames=cfg.max_utt_frames)
        if self.ds.mel_config() != MelConfig.preset(cfg.preset):
            raise VoxarDataError(f"{dump_dir}: features were not dumped with the {cfg.preset!r} mel preset")
        texts = [e.get("text", "") for e in self.ds.entries]
        keep, ids = [], []
        encoded = self._encode_all(tokenizer, texts, dump_dir)
        for i, enc in enumerate(encoded):
            if enc is not None and int(self.ds.entries[i]["frames"]) >= cfg.lm.patch_size:
                keep.append(i)
                ids.append(enc)
        if not keep:
            raise VoxarDataError(f"{dump_dir}: no usable utterances (text and at least one patch of audio)")
        self.ds.entries = [self.ds.entries[i] for i in keep][: max_utts or None]
        self.ids = ids[: len(self.ds.entries)]
        self.space = tokenizer.symbols.index(" ")
        from voxar.models.content import ctc_targets
        from voxar.tts import silent_symbols

        skip, symbols = sorted(silent_symbols()), tokenizer.symbols.symbols
        self.phones = [ctc_targets(x, symbols, skip) for x in self.ids]  # CTC targets: the sounds, in order
        self.ptrs = self._pointers(dump_dir, tokenizer) if cfg.lm.pointer else None
        self.by_spk: dict[str, list[int]] = {}
        for i, e in enumerate(self.ds.entries):
            self.by_spk.setdefault(str(e.get("spk", "")), []).append(i)

    def _pointers(self, dump_dir: str | Path, tokenizer: Any) -> list[Any]:
        """Per-patch aligned phone index of every utterance (:mod:`voxar.data.phone_align`); utterances without a
        fitting alignment are left out."""
        from voxar.data.phone_align import load_alignments, patch_pointer

        frames = load_alignments(dump_dir)
        drop = set(pointer_skip_ids(tokenizer))
        keep, ptrs = [], []
        for i, e in enumerate(self.ds.entries):
            fr = frames.get(str(e["utt"]))
            n_phones = sum(1 for t in self.ids[i] if t not in drop)
            if fr is None or fr.shape[0] != int(e["frames"]) or int(fr.max(initial=-1)) > n_phones:
                continue
            keep.append(i)
            ptrs.append(patch_pointer(fr, self.cfg.lm.patch_size))
        if not keep:
            raise VoxarDataError(f"{dump_dir}: no utterance has a phone alignment that fits its text and frames")
        if len(keep) < len(self.ds.entries):
            logger.warning("%s: %d utterances without a fitting phone alignment left out", dump_dir,
                           len(self.ds.entries) - len(keep))  # fmt: skip
        self.ds.entries = [self.ds.entries[i] for i in keep]
        self.ids = [self.ids[i] for i in keep]
        self.phones = [self.phones[i] for i in keep]
        return ptrs

    def subset(self, indices: list[int]) -> None:
        """Keep items ``indices`` only: every per-item list and the speaker index follow."""
        self.ds.entries = [self.ds.entries[i] for i in indices]
        self.ids = [self.ids[i] for i in indices]
        self.phones = [self.phones[i] for i in indices]
        if self.ptrs is not None:
            self.ptrs = [self.ptrs[i] for i in indices]
        self.by_spk = {}
        for i, e in enumerate(self.ds.entries):
            self.by_spk.setdefault(str(e.get("spk", "")), []).append(i)

    @staticmethod
    def _encode_all(tokenizer: Any, texts: list[str], where: Any) -> list[list[int] | None]:
        from voxar.errors import VoxarTextError

        try:
            return list(tokenizer.encode_batch(texts))
        except VoxarTextError:
            out: list[list[int] | None] = []
            for t in texts:
                try:
                    out.append(tokenizer.encode(t))
                except VoxarTextError as e:
                    logger.warning("%s: left out an utterance: %s", where, e)
                    out.append(None)
            return out

    def __len__(self) -> int:
        return len(self.ds)

    @property
    def lengths(self) -> list[int]:
        return self.ds.lengths

    def _mel(self, i: int) -> Any:
        return self.ds[i]["mel"]

    def _other(self, i: int, rng: Any) -> int | None:
        """Another utterance of item ``i``'s speaker, or None."""
        same = self.by_spk[str(self.ds.entries[i].get("spk", ""))]
        if len(same) < 2:
            return None
        rest = [j for j in same if j != i]
        return rest[int(rng.integers(len(rest)))]

    def _crop(self, mel: Any, rng: Any) -> Any:
        t, c = mel.shape[-1], self.cfg
        n = min(t, int(rng.integers(c.ref_min_frames, c.ref_max_frames + 1)))
        start = int(rng.integers(t - n + 1))
        return mel[:, start : start + n]

    def batch(self, indices: list[int], rng: Any, mode: str | None = None) -> dict[str, Any]:
        """Tensors for one training step: ``text_ids (B, Lt)``, ``text_lens``, ``mels (B, M, T)``, ``mel_lens``,
        and ``ref_mels``/``ref_lens`` and (continuation) ``prompt_mels``/``prompt_lens``, or neither; with
        ``ctc_weight > 0`` also ``ctc_targets (B, S)`` / ``ctc_lens (B,)`` (the target text without silent symbols).

        ``rng`` (a numpy Generator) draws the conditioning ``mode`` (``"none"``, ``"prompt"``, ``"ref"``) unless
        it is given, and the reference utterances and crops.
        """
        import torch

        cfg = self.cfg
        draw = rng.random()
        others = [self._other(i, rng) for i in indices]
        if mode is None:
            mode = "ref"
            if draw < cfg.spk_drop:
                mode = "none"
            elif draw < cfg.spk_drop + cfg.prompt_prob and all(o is not None for o in others):
                mode = "prompt"
        texts = []
        for i, o in zip(indices, others, strict=True):
            texts.append(self.ids[o] + [self.space] + self.ids[i] if mode == "prompt" else self.ids[i])
        text_lens = torch.tensor([len(t) for t in texts], dtype=torch.long)
        text_ids = torch.zeros(len(texts), int(text_lens.max()), dtype=torch.long)
        for b, t in enumerate(texts):
            text_ids[b, : len(t)] = torch.tensor(t)
        target = _collate([self._mel(i) for i in indices])
        out = {"text_ids": text_ids, "text_lens": text_lens, "mels": target["mels"], "mel_lens": target["lengths"]}
        if cfg.ctc_weight > 0:  # the target's phones (never the prompt's: h covers the target patches only)
            phones = [self.phones[i] for i in indices]
            out["ctc_lens"] = torch.tensor([len(p) for p in phones], dtype=torch.long)
            out["ctc_targets"] = torch.zeros(len(phones), max(1, int(out["ctc_lens"].max())), dtype=torch.long)
            for b, p in enumerate(phones):
                out["ctc_targets"][b, : len(p)] = torch.tensor(p, dtype=torch.long)
        if self.ptrs is not None:
            n = -(-int(out["mel_lens"].max()) // self.cfg.lm.patch_size)
            out["pointer"] = torch.full((len(indices), n), -1, dtype=torch.long)
            for b, i in enumerate(indices):
                p = torch.as_tensor(self.ptrs[i])
                out["pointer"][b, : len(p)] = p
                out["pointer"][b, len(p) :] = p[-1]
            if mode == "prompt":
                out["text_start"] = torch.tensor([len(self.ids[o]) + 1 for o in others], dtype=torch.long)
        if mode == "none":
            return out
        if mode == "prompt":
            prompts = _collate([self._mel(o) for o in others])
            out.update(prompt_mels=prompts["mels"], prompt_lens=prompts["lengths"])
            refs = prompts
        else:
            src = [self._mel(o) if o is not None else self._mel(i) for i, o in zip(indices, others, strict=True)]
            refs = _collate([self._crop(m, rng) for m in src])
        out.update(ref_mels=refs["mels"], ref_lens=refs["lengths"])
        return out


def _collate(mels: list[Any]) -> dict[str, Any]:
    """Raw log-mels ``[(M, T_i)]`` -> ``mels (B, M, T_max)`` (zero-padded) and ``lengths (B,)``."""
    from voxar.data.dataset import collate_mels

    return collate_mels([{"utt": str(i), "mel": m} for i, m in enumerate(mels)])


# --------------------------------------------------------------------------------------------------------- the run
def resize_head_history(weight: Any, patch_dim: int, history: int) -> Any:
    """A flow head's input projection ``(W, F * (1 + K_old))`` (columns: the noisy patch, then the history
    oldest first) resized to ``K = history`` patches: the newest patches keep their columns; added older ones get
    zero columns, so a larger history starts as the same function, and a smaller one simply stops seeing them."""
    import torch

    width, cols = weight.shape
    if cols % patch_dim:
        raise VoxarConfigError(f"flow head input projection: {cols} columns is not a multiple of patch_dim {patch_dim}")
    old = cols // patch_dim - 1
    if old == history:
        return weight
    z, hist = weight[:, :patch_dim], weight[:, patch_dim:]
    keep = min(old, history) * patch_dim
    kept = hist[:, hist.shape[1] - keep :] if keep else hist[:, :0]
    pad = weight.new_zeros(width, history * patch_dim - keep)
    logger.info("flow head history %d -> %d patches", old, history)
    return torch.cat([z, pad, kept], dim=1)  # (W, F) + (W, added older) + (W, kept newest)


class Trainer(ModelTrainer):
    """State of one run; :meth:`run` is the loop. Built on every rank (rank 0 also logs and writes files)."""

    name, what = "tts", "TTS model"

    def __init__(self, cfg: TTSTrainConfig, args: argparse.Namespace) -> None:
        from voxar.data.dataset import load_cmvn
        from voxar.train.ema import EMA
        from voxar.train.loop import set_seed
        from voxar.tts import TTSModel

        self.start(cfg, args)
        self.tokenizer = make_tokenizer(cfg.tokenizer)
        if cfg.lm.pointer:
            cfg.lm.pointer_skip_ids = pointer_skip_ids(self.tokenizer)
        if self.tokenizer.vocab_size != cfg.lm.vocab_size:
            raise VoxarConfigError(
                f"lm.vocab_size is {cfg.lm.vocab_size} but the {cfg.tokenizer} tokenizer has "
                f"{self.tokenizer.vocab_size} symbols; set lm.vocab_size: {self.tokenizer.vocab_size}"
            )
        self.model_cfg = cfg.model_config(self.tokenizer.to_dict())
        from voxar.models.heads import SAMPLING_FIELDS

        sampling = tuple(f"{h}.{f}" for h in ("fm_head", "mf_head") for f in SAMPLING_FIELDS)
        ckpt = self.find_checkpoint(("preset", "tokenizer", "lm", "fm_head", "mf_head"), ignore=sampling)

        self.train_set = TTSData(args.dump, self.tokenizer, cfg)
        set_seed(cfg.seed)  # identical initial weights on every rank
        self.model = TTSModel(self.model_cfg).to(self.device)
        mean, std = load_cmvn(args.dump)
        self.model.lm.set_mel_stats(mean.to(self.device), std.to(self.device))
        self.ema = EMA(self.model, cfg.ema_decay)
        self.init_from()
        self.make_optimizer()
        self.restore(ckpt)
        self.model_ddp = self._wrap()
        self.sampler = self.make_sampler(self.train_set.lengths)
        self.valid_set = None
        if self.info.is_main:
            self.valid_split = "valid" if args.valid_dump else "train_subset"
            self.valid_set = TTSData(args.valid_dump or args.dump, self.tokenizer, cfg, max_utts=cfg.valid_utts)
        self.restore_rng(ckpt)

    def adapt_state_dict(self, state: dict[str, Any]) -> dict[str, Any]:
        """``--init-from`` a model whose flow heads saw another number of history patches: resize their input
        projections (:func:`resize_head_history`); a CTC head or text pointer this run adds (``lm.ctc``,
        ``lm.pointer``) that the source lacks starts from its fresh initialisation."""
        own = self.model.state_dict()
        for key in [k for k in own if k.startswith(("lm.ctc_head.", "lm.pointer."))]:
            if key not in state:
                logger.info("--init-from: %s is new in this run (fresh initialisation)", key)
                state[key] = own[key].detach().clone()
        for name in ("fm_head", "mf_head"):
            head_cfg = getattr(self.model_cfg, name)
            key = f"{name}.in_proj.weight"
            if head_cfg is not None and key in state:
                state[key] = resize_head_history(state[key], head_cfg.patch_dim, head_cfg.history)
        return state

    def _wrap(self) -> Any:
        """DDP (with unused-parameter detection: a batch does not use every conditioning path) or the bare model."""
        if not self.info.distributed:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=True)

    def batches(self) -> Any:
        """Endless batches from the current step on (:func:`voxar.train.loop.epoch_batches`: exact resume)."""
        import numpy as np

        from voxar.train.loop import epoch_batches

        for step, indices in epoch_batches(self.sampler, self.step):
            yield self.train_set.batch(indices, np.random.default_rng([self.cfg.seed, self.info.rank, step]))

    # ------------------------------------------------------------------------------------------------ one step
    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimiser step; returns the step's loss values."""
        from voxar.train.loop import autocast

        cfg = self.cfg
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        progress = self.step / max(1, cfg.max_steps)
        with autocast(self.device, cfg.amp):
            loss, stats = self.model_ddp(**batch, progress=progress, **cfg.loss_kwargs())
        gnorm = self.optimizer_step(loss)
        metrics = {k: float(v) for k, v in stats.items()}
        metrics.update(grad_norm=gnorm, lr=self.opt.param_groups[0]["lr"], frames=float(batch["mel_lens"].sum()))
        return metrics

    # ----------------------------------------------------------------------------------- validation and files
    def ema_model(self) -> Any:
        from voxar.tts import TTSModel

        model = TTSModel(self.model_cfg).to(self.device)
        self.ema.copy_to(model)
        return model.eval()

    def validate(self) -> dict[str, float]:
        """Main rank: teacher-forced losses of the EMA model (fixed noise, reference mode) on the valid set."""
        import numpy as np
        import torch

        model = self.ema_model()
        totals: dict[str, float] = {}
        n = len(self.valid_set)
        batch_size = 4
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            for start in range(0, n, batch_size):
                rng = np.random.default_rng([self.cfg.seed, start])
                batch = self.valid_set.batch(list(range(start, min(n, start + batch_size))), rng, mode="ref")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                _, stats = model(**batch, **{**self.cfg.loss_kwargs(), "sched_sampling": 0.0})  # teacher-forced
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + float(v)
        n_batches = -(-n // batch_size)
        return {k: v / n_batches for k, v in totals.items()}

    def export(self) -> Path:
        """Main rank: write the EMA weights as ``exp/model`` (a TTS model directory; atomic replace)."""
        import json

        from voxar.models.modeldir import save_model_dir
        from voxar.tts import KIND, TOKENIZER_FILE

        tok = json.dumps(self.tokenizer.to_dict(), ensure_ascii=False, indent=1)
        return save_model_dir(
            self.ema_model().cpu(), self.model_cfg, KIND, self.exp / MODEL_DIR, extra_files={TOKENIZER_FILE: tok},
            overwrite=True,
        )  # fmt: skip

    def model_config(self) -> Any:
        return self.model_cfg

    def describe(self) -> str:
        n_spk = len(self.train_set.by_spk)
        return f"{super().describe()}, {len(self.train_set)} utterances ({n_spk} speakers)"


# ------------------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the script."""
    from voxar.train.loop import add_dump_train_args

    p = argparse.ArgumentParser(prog="train_tts", description=__doc__.splitlines()[0])
    add_dump_train_args(p, "TTSTrainConfig")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run training; returns the exit status (1 with a one-line message on bad input)."""
    from voxar.train.loop import train_main

    return train_main("train_tts", build_parser().parse_args(argv), TTSTrainConfig, Trainer, ("max_steps", "seed"))


if __name__ == "__main__":
    sys.exit(main())
