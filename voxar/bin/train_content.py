"""Recipe entry point: train the streaming content encoder (chunk-aware conformer, CTC over espeak-ng phones).

Usage::

    python -m voxar.bin.train_content --config egs/synth/conf/content_tiny.yaml --dump dump/train \\
        [--valid-dump dump/dev] [--test-dump dump/test [--test-out per.json]] --exp exp/content_tiny [--resume] \\
        [--max-steps N] [--device cpu|cuda] [--seed S] [--threads N] [--override key=value ...] [--no-progress]
    torchrun --nproc_per_node 2 -m voxar.bin.train_content ...      # DDP (gloo on CPU, nccl on CUDA)

**Targets.** Each manifest ``text`` is phonemised with :class:`~voxar.text.PhonemeTokenizer` (espeak-ng); spaces,
punctuation and stress marks are dropped (``model.ctc_skip``, :func:`voxar.models.content.ctc_targets`). The
phonemisation of a dump is cached in ``exp/phonemes/<dump>-<hash>.json`` (hash of the texts and the tokenizer), so
reruns skip espeak-ng. Utterances that fail, hold no phone or are too short for their targets are left out (warning).

**Training.** CTC loss (mean per target phone), AdamW, warm-up + cosine decay, gradient clipping, EMA, SpecAugment
(frequency/time masks filled with the CMVN mean), dynamic chunks: each batch draws its chunk size and left chunks from
``model.train_chunk_sizes`` / ``model.train_left_chunks`` (0 = full context). The dump's CMVN statistics go into the
model (``set_mel_stats``), so it takes raw log-mels.

**Outputs.** ``exp/``: ``config.yaml``, checkpoints (``last.pt``, atomic, ``keep_last`` kept), ``train_log.jsonl``,
``tb/``, and at each validation and at the end ``model/``, the EMA weights as a content model directory (with
``tokenizer.json``). Validation logs the greedy-CTC phone error rate with the default streaming chunk settings
(``per``; equal to streaming by construction) and with full context (``per_full``). ``--test-dump D`` writes both
for ``D`` to ``--test-out`` (default ``exp/per_<D name>.json``) after training; ``--resume`` on a finished run only
evaluates. SIGINT/SIGTERM saves a checkpoint and exits with 128 + signal; ``--resume`` continues exactly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from voxar.errors import VoxarConfigError, VoxarDataError, VoxarTextError
from voxar.models.content import ContentConfig  # needed at import time: the config dataclass nests it
from voxar.train.trainer import MODEL_DIR, ModelTrainer

logger = logging.getLogger("voxar.train_content")
PHONEME_CACHE = "phonemes"


@dataclass
class ContentTrainConfig:
    """Everything a content-encoder run needs; ``egs/*/conf/content_*.yaml`` maps onto it (unknown keys are errors)."""

    model: ContentConfig = field(default_factory=ContentConfig)
    # optimisation
    lr: float = 2e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup: int = 200
    lr_decay: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    max_steps: int = 2000
    max_frames: int = 4000  # padded mel frames per batch (per process)
    max_utt_frames: int = 2000  # longer utterances are left out
    num_buckets: int = 10
    # SpecAugment (0 masks = off); masks are filled with the CMVN mean
    freq_masks: int = 2
    freq_width: int = 10  # mel bins, at most
    time_masks: int = 2
    time_width: int = 10  # mel frames, at most (and at most 1/5 of the utterance)
    # weights averaging, logging, checkpoints
    ema_decay: float = 0.999
    log_every: int = 20
    valid_every: int = 500
    valid_utts: int = 0  # 0 = the whole validation dump
    save_every: int = 500
    keep_last: int = 2
    amp: bool = True  # bf16 autocast on CUDA (CPU stays fp32)
    tensorboard: bool = True
    seed: int = 1234

    def __post_init__(self) -> None:
        for key in ("max_steps", "max_frames", "max_utt_frames", "log_every", "num_buckets", "keep_last"):
            if getattr(self, key) < 1:
                raise VoxarConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("freq_masks", "freq_width", "time_masks", "time_width", "valid_utts", "warmup"):
            if getattr(self, key) < 0:
                raise VoxarConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.lr <= 0:
            raise VoxarConfigError(f"lr must be positive, got {self.lr}")


# ---------------------------------------------------------------------------------------------------------- data
def phonemize_cached(tokenizer: Any, entries: list[dict[str, Any]], cache_dir: Path, name: str) -> dict[str, Any]:
    """``{utt: tokenizer ids or None}`` of the manifest ``entries`` (None: the text failed), cached as JSON in
    ``cache_dir/<name>-<hash>.json`` keyed by the texts and the tokenizer."""
    texts = {str(e["utt"]): str(e.get("text", "")) for e in entries}
    key = json.dumps([tokenizer.to_dict(), sorted(texts.items())], ensure_ascii=False, sort_keys=True)
    path = cache_dir / f"{name}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:12]}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            logger.warning("%s: unreadable phoneme cache, phonemising again", path)
    utts = list(texts)
    try:
        ids: list[Any] = list(tokenizer.encode_batch([texts[u] for u in utts]))
    except VoxarTextError:  # one bad text spoils the batch: redo them one by one
        ids = []
        for u in utts:
            try:
                ids.append(tokenizer.encode(texts[u]))
            except VoxarTextError as e:
                logger.warning("%s: utterance %s left out: %s", name, u, e)
                ids.append(None)
    out = dict(zip(utts, ids, strict=True))
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return out


class ContentData:
    """A dump's raw log-mels with their CTC phone targets (see the module docstring)."""

    def __init__(
        self, dump_dir: str | Path, tokenizer: Any, cfg: ContentTrainConfig, cache_dir: Path, max_utts: int = 0
    ) -> None:
        from voxar.audio import MelConfig
        from voxar.data.dataset import MelDataset
        from voxar.models.content import ctc_targets

        self.dump_dir = Path(dump_dir)
        self.ds = MelDataset(dump_dir, max_frames=cfg.max_utt_frames)
        if self.ds.mel_config() != MelConfig.preset(cfg.model.preset):
            raise VoxarDataError(f"{dump_dir}: features were not dumped with the {cfg.model.preset!r} mel preset")
        name = self.dump_dir.resolve().name or "dump"
        ids = phonemize_cached(tokenizer, self.ds.entries, cache_dir, name)
        symbols = tokenizer.symbols.symbols
        s = cfg.model.subsample
        keep, self.targets, dropped = [], [], {"text": 0, "short": 0}
        for i, e in enumerate(self.ds.entries):
            raw = ids.get(str(e["utt"]))
            target = ctc_targets(raw, symbols, cfg.model.ctc_skip) if raw else []
            repeats = sum(a == b for a, b in zip(target, target[1:], strict=False))
            if not target:
                dropped["text"] += 1
            elif -(-int(e["frames"]) // s) < len(target) + repeats:  # CTC needs a frame per label + blanks
                dropped["short"] += 1
            else:
                keep.append(i)
                self.targets.append(target)
        if dropped["text"] or dropped["short"]:
            logger.warning(
                "%s: left out %d utterance(s) without phones and %d too short for their targets",
                dump_dir, dropped["text"], dropped["short"],
            )  # fmt: skip
        if not keep:
            raise VoxarDataError(f"{dump_dir}: no usable utterances (text with phones and enough frames)")
        self.ds.entries = [self.ds.entries[i] for i in keep]
        if max_utts:
            self.ds.entries, self.targets = self.ds.entries[:max_utts], self.targets[:max_utts]

    def __len__(self) -> int:
        return len(self.ds)

    @property
    def lengths(self) -> list[int]:
        return self.ds.lengths

    def batch(self, indices: list[int]) -> dict[str, Any]:
        """``mels (B, M, T)`` raw log-mels, ``lengths (B,)``, ``targets (B, U)`` zero-padded, ``target_lengths``."""
        import torch

        from voxar.data.dataset import collate_mels

        mel = collate_mels([self.ds[i] for i in indices])
        tl = torch.tensor([len(self.targets[i]) for i in indices], dtype=torch.long)
        targets = torch.zeros(len(indices), int(tl.max()), dtype=torch.long)
        for b, i in enumerate(indices):
            targets[b, : tl[b]] = torch.tensor(self.targets[i])
        return {"mels": mel["mels"], "lengths": mel["lengths"], "targets": targets, "target_lengths": tl}


def spec_augment(mels: Any, lengths: Any, fill: Any, cfg: ContentTrainConfig, rng: Any) -> Any:
    """Frequency and time masks on raw log-mels ``(B, M, T)`` (in place), filled with ``fill (M,)``."""
    for b in range(mels.shape[0]):
        n = int(lengths[b])
        for _ in range(cfg.freq_masks):
            w = int(rng.integers(0, cfg.freq_width + 1))
            f0 = int(rng.integers(0, mels.shape[1] - w + 1))
            mels[b, f0 : f0 + w, :n] = fill[f0 : f0 + w, None]
        for _ in range(cfg.time_masks):
            w = int(rng.integers(0, min(cfg.time_width, n // 5) + 1))
            t0 = int(rng.integers(0, n - w + 1))
            mels[b, :, t0 : t0 + w] = fill[:, None]
    return mels


def evaluate_per(
    model: Any, data: ContentData, chunk_size: int | None = None, left_chunks: int | None = None, max_frames: int = 6000
) -> dict[str, Any]:
    """Greedy-CTC PER (and mean CTC loss) of ``model`` on ``data`` with the given chunk settings (default: the
    model's streaming defaults; 0 = full context). Returns ``{"per", "ctc", "utts", "phones", "hyps"}``."""
    import torch

    from voxar.models.content import ctc_greedy_decode, phone_error_rate

    order = sorted(range(len(data)), key=lambda i: data.lengths[i])
    device = next(model.parameters()).device
    hyps: dict[int, list[int]] = {}
    loss_sum = 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        start = 0
        while start < len(order):
            n = max(1, max_frames // max(1, data.lengths[order[start]]))
            idx = order[start : start + n]
            while len(idx) > 1 and len(idx) * data.lengths[idx[-1]] > max_frames:
                idx = idx[:-1]
            batch = {k: v.to(device) for k, v in data.batch(idx).items()}
            out = model(batch["mels"], batch["lengths"], chunk_size=chunk_size, left_chunks=left_chunks)
            loss_sum += float(model.ctc_loss(out, batch["targets"], batch["target_lengths"])) * len(idx)
            for i, h in zip(idx, ctc_greedy_decode(out.logits, out.enc_lengths, model.blank_id), strict=True):
                hyps[i] = h
            start += len(idx)
    model.train(was_training)
    refs = [data.targets[i] for i in range(len(data))]
    hyp_list = [hyps[i] for i in range(len(data))]
    return {
        "per": phone_error_rate(hyp_list, refs), "ctc": loss_sum / len(data), "utts": len(data),
        "phones": sum(len(r) for r in refs), "hyps": hyp_list,
    }  # fmt: skip


# --------------------------------------------------------------------------------------------------------- the run
class Trainer(ModelTrainer):
    """State of one run; :meth:`run` is the loop. Built on every rank (rank 0 also logs and writes files)."""

    name, what = "content", "content encoder"

    def __init__(self, cfg: ContentTrainConfig, args: argparse.Namespace) -> None:
        from voxar.data.dataset import load_cmvn
        from voxar.models.content import ContentEncoder
        from voxar.text import PhonemeTokenizer
        from voxar.train.ema import EMA
        from voxar.train.loop import set_seed

        self.start(cfg, args)
        self.tokenizer = PhonemeTokenizer()
        if self.tokenizer.vocab_size != cfg.model.vocab_size:
            raise VoxarConfigError(
                f"model.vocab_size is {cfg.model.vocab_size} but the phoneme tokenizer has "
                f"{self.tokenizer.vocab_size} symbols; set model.vocab_size: {self.tokenizer.vocab_size}"
            )
        ckpt = self.find_checkpoint(("model",))

        self.cache_dir = self.exp / PHONEME_CACHE
        self.train_set = ContentData(args.dump, self.tokenizer, cfg, self.cache_dir)
        set_seed(cfg.seed)  # identical initial weights on every rank
        self.model = ContentEncoder(cfg.model).to(self.device)
        mean, std = load_cmvn(args.dump)
        self.model.set_mel_stats(mean.to(self.device), std.to(self.device))
        self.ema = EMA(self.model, cfg.ema_decay)
        self.init_from()
        self.make_optimizer()
        self.restore(ckpt)
        self.model_ddp = self.model
        if self.info.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model_ddp = DistributedDataParallel(self.model, device_ids=ids)
        self.sampler = self.make_sampler(self.train_set.lengths)
        self.valid_set = None
        if self.info.is_main:
            self.valid_split = "valid" if args.valid_dump else "train_subset"
            max_utts = cfg.valid_utts or (0 if args.valid_dump else 32)
            self.valid_set = ContentData(args.valid_dump or args.dump, self.tokenizer, cfg, self.cache_dir, max_utts)
        self.restore_rng(ckpt)

    def batches(self) -> Any:
        """Endless ``(batch, rng)`` pairs from the current step on (:func:`voxar.train.loop.epoch_batches`), with
        per-step randomness: exact resume."""
        import numpy as np

        from voxar.train.loop import epoch_batches

        for step, indices in epoch_batches(self.sampler, self.step):
            yield self.train_set.batch(indices), np.random.default_rng([self.cfg.seed, self.info.rank, step])

    def train_step(self, item: tuple[dict[str, Any], Any]) -> dict[str, float]:
        """One optimiser step on a batch with its own chunk draw and SpecAugment masks; returns its metrics."""

        from voxar.train.loop import autocast

        batch, rng = item
        cfg = self.cfg
        chunk, left = self.model.sample_chunking(rng)
        spec_augment(batch["mels"], batch["lengths"], self.model.mel_mean.cpu(), cfg, rng)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        self.model_ddp.train()
        with autocast(self.device, cfg.amp):
            out = self.model_ddp(batch["mels"], batch["lengths"], chunk_size=chunk, left_chunks=left)
        loss = self.model.ctc_loss(out, batch["targets"], batch["target_lengths"])
        gnorm = self.optimizer_step(loss)
        return {
            "loss": float(loss.detach()), "grad_norm": gnorm, "lr": self.opt.param_groups[0]["lr"],
            "chunk": float(chunk), "frames": float(batch["lengths"].sum()),
        }  # fmt: skip

    # ----------------------------------------------------------------------------------- validation and files
    def ema_model(self) -> Any:
        from voxar.models.content import ContentEncoder

        model = ContentEncoder(self.cfg.model).to(self.device)
        self.ema.copy_to(model)
        return model.eval()

    def evaluate(self, data: ContentData) -> dict[str, Any]:
        """PER/CTC of the EMA model: default streaming chunks (``per``, ``ctc``) and full context (``per_full``)."""
        model = self.ema_model()
        stream = evaluate_per(model, data)
        full = evaluate_per(model, data, chunk_size=0)
        return {**stream, "per_full": full["per"]}

    def export(self) -> Path:
        """Main rank: write the EMA weights as ``exp/model`` (a content model directory; atomic replace)."""
        return (
            self.ema_model()
            .cpu()
            .save_pretrained(self.exp / MODEL_DIR, overwrite=True, tokenizer=self.tokenizer.to_dict())
        )

    def validate_and_export(self) -> None:
        from voxar.train import distributed as D

        if self.info.is_main:
            res = self.evaluate(self.valid_set)
            self.log.log(self.step, {k: res[k] for k in ("per", "per_full", "ctc")}, split=self.valid_split)
            per, full = res["per"], res["per_full"]
            self.log.write(f"step {self.step}: {self.valid_split} PER {per:.4f} (full context {full:.4f})")
            self.export()
        D.barrier()

    def test(self, dump: str | Path, out: str | Path | None) -> Path:
        """Main rank: PER of the EMA model on ``dump`` written as JSON (with a few decoded examples)."""
        data = ContentData(dump, self.tokenizer, self.cfg, self.cache_dir)
        res = self.evaluate(data)
        model = self.model
        examples = [
            {"utt": data.ds.entries[i]["utt"], "ref": self.tokenizer.decode(data.targets[i]),
             "hyp": self.tokenizer.decode(res["hyps"][i])}
            for i in range(min(5, len(data)))
        ]  # fmt: skip
        report = {
            "dump": str(dump), "model": str(self.exp / MODEL_DIR), "step": self.step, "per": res["per"],
            "per_full": res["per_full"], "ctc": res["ctc"], "utts": res["utts"], "phones": res["phones"],
            "chunk_size": model.chunk_size, "left_chunks": model.left_chunks, "lookahead_frames": model.lookahead,
            "examples": examples,
        }  # fmt: skip
        path = Path(out) if out else self.exp / f"per_{Path(dump).resolve().name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        logger.info("%s: PER %.4f (full context %.4f) over %d utterances -> %s", dump, res["per"], res["per_full"],
                    res["utts"], path)  # fmt: skip
        return path

    # ------------------------------------------------------------------------------------------------ the loop
    def describe(self) -> str:
        return f"{_describe(self.model)}; {len(self.train_set)} utterances"

    def run(self) -> int:
        """Train to ``max_steps`` (or until interrupted), then the optional test; returns the exit status."""
        status = super().run()
        if status == 0 and self.args.test_dump and self.info.is_main:
            self.test(self.args.test_dump, self.args.test_out)
        return status


def _describe(model: Any) -> str:
    """One line: size, chunking and latency of a content encoder (10 ms mel frames)."""
    c, n = model.cfg, sum(p.numel() for p in model.parameters())
    return (
        f"content encoder {n / 1e6:.2f}M params, d {c.d_model} x {c.n_layers} blocks, x{c.subsample} subsampling, "
        f"chunk {model.chunk_size} ({model.chunk_size * c.subsample * 10} ms) x {model.left_chunks} left, "
        f"lookahead {model.lookahead} frames, delay {model.delay}, BNF {model.out_dim}-d"
    )


# ------------------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the script."""
    from voxar.train.loop import add_dump_train_args

    p = argparse.ArgumentParser(prog="train_content", description=__doc__.splitlines()[0])
    add_dump_train_args(p, "ContentTrainConfig")
    p.add_argument("--test-dump", default=None, help="after training, write the PER on this dump as JSON")
    p.add_argument("--test-out", default=None, help="where --test-dump writes (default: exp/per_<dump>.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run training; returns the exit status (1 with a one-line message on bad input)."""
    from voxar.train.loop import train_main

    args = build_parser().parse_args(argv)
    return train_main("train_content", args, ContentTrainConfig, Trainer, ("max_steps", "seed"))


if __name__ == "__main__":
    sys.exit(main())
