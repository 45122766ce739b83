"""Recipe entry point: ground-truth-aligned (GTA) mels of a feature dump from a text-pointer TTS model.

Usage::

    python -m voxar.bin.gta_mels --model exp/tts/model --dump dump/train --out dump/train_gta \\
        [--head fm|mf] [--steps S] [--temperature T] [--noise patch|utterance] [--seed S] [--max-utts N] \\
        [--utts FILE] [--shard-size N] [--device cpu|cuda] [--threads T]

For every utterance of ``--dump`` (which needs its phone alignments, ``python -m voxar.bin.align_phones``) the model
speaks the utterance's text along the utterance's own aligned text pointer, without feedback (the model's decoding
mode), in the voice of another utterance of the speaker (the reference encoder reads its whole mel, as ``voxar tts
--prompt`` does): the LM states are those free-running generation computes when its pointer takes the recorded
path (:meth:`voxar.models.lm.PatchLM.forward` with ``feedback=False``), the head samples each patch from them as in
decoding. The output has the recording's frames, so it pairs frame for frame with the recording's audio: a vocoder
fine-tuned on these pairs (``train_vocoder --gta DIR``) learns to turn the TTS model's smooth mels into the
recordings' detail (the Tacotron 2 / HiFi-GAN practice).

``--out`` is a feature dump of the same layout (``manifest.jsonl``, ``gta.NNNNN.safetensors`` shards of raw log-mels
``(n_mels, T)`` keyed by utterance, the source's ``mel.yaml`` and ``stats.safetensors``), readable by
:class:`voxar.data.dataset.MelDataset`. Shards are written atomically and kept on a rerun with the same options
(an interrupted run resumes); ``gta.json`` records the options.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger("voxar.gta_mels")
SHARD = "gta.{:05d}.safetensors"


def _model_and_data(args: argparse.Namespace) -> tuple[Any, Any]:
    """The TTS model (eval, on ``args.device``) and the dump's :class:`~voxar.bin.train_tts.TTSData`."""
    from voxar.bin.train_tts import TTSData, TTSTrainConfig
    from voxar.errors import VoxarConfigError
    from voxar.text import PhonemeTokenizer
    from voxar.tts import TTS

    tts = TTS.from_pretrained(args.model, vocoder="griffin-lim", device=args.device)
    tts.set_temperature(args.temperature)
    tts.set_noise(args.noise)
    cfg = tts.model.cfg
    if tts.model.lm.pointer is None:
        raise VoxarConfigError(f"{args.model}: GTA mels need a text-pointer LM (lm.pointer)")
    kind = "phoneme" if isinstance(tts.tokenizer, PhonemeTokenizer) else "char"
    train_cfg = TTSTrainConfig(
        preset=cfg.preset, tokenizer=kind, lm=cfg.lm, fm_head=cfg.fm_head, mf_head=cfg.mf_head,
        max_utt_frames=cfg.lm.max_patches * cfg.lm.patch_size - 1,
    )  # fmt: skip
    data = TTSData(args.dump, tts.tokenizer, train_cfg)
    if args.utts:
        keep = set(Path(args.utts).read_text(encoding="utf-8").split())
        data.subset([i for i, e in enumerate(data.ds.entries) if str(e["utt"]) in keep])
    return tts, data


def gta_mel(tts: Any, data: Any, i: int, head: Any, steps: int | None, seed: int) -> Any:
    """Raw log-mel ``(n_mels, T)`` of item ``i`` along its aligned pointer (T = the recording's frames)."""
    import numpy as np
    import torch

    lm, dev = tts.model.lm, tts.device
    rng = np.random.default_rng([seed, i])
    mel = data._mel(i)  # (M, T)
    ref = data._other(i, rng)
    ref_mel = data._mel(ref if ref is not None else i)
    ids = torch.tensor([data.ids[i]], dtype=torch.long, device=dev)  # (1, Lt)
    ptr = torch.as_tensor(data.ptrs[i], dtype=torch.long, device=dev)[None]  # (1, N)
    out = lm(
        ids, torch.tensor([ids.shape[1]], device=dev), mel[None].to(dev), torch.tensor([mel.shape[-1]], device=dev),
        ref_mels=ref_mel[None].to(dev), ref_lens=torch.tensor([ref_mel.shape[-1]], device=dev), pointer=ptr,
        feedback=False,
    )  # fmt: skip
    h = out["h"][0]  # (N, D)
    gen = torch.Generator(device=dev).manual_seed(int(seed) * 1_000_003 + i)
    noise = head.generation_noise(gen, 1, dev)  # (1, F) shared by every patch, or None
    k = head.cfg.history
    if k == 0:  # every patch at once
        x = head.sample_patch(h, None, steps, None, gen, None if noise is None else noise.expand(h.shape[0], -1))
    else:  # the head reads its own previous patches: one after the other, as in decoding
        from voxar.models.heads import history_push

        hist, rows = h.new_zeros(1, k * lm.cfg.patch_dim), []
        for j in range(h.shape[0]):
            rows.append(head.sample_patch(h[j : j + 1], hist, steps, None, gen, noise))
            hist = history_push(hist, rows[-1])
        x = torch.cat(rows)  # (N, F)
    return lm.unpatchify(x[None])[0, :, : mel.shape[-1]].float().cpu().contiguous()  # (1, N, F) -> (M, T)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Write the GTA dump; returns counts."""
    import torch
    from safetensors.torch import save_file
    from tqdm import tqdm

    from voxar.data.dump import MANIFEST, MEL_CONFIG

    if args.threads:
        torch.set_num_threads(args.threads)
    tts, data = _model_and_data(args)
    head = tts.model.head(args.head)
    n = min(len(data), args.max_utts or len(data))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = {
        "model": str(Path(args.model).resolve()), "dump": str(Path(args.dump).resolve()), "head": args.head,
        "steps": args.steps, "temperature": head.cfg.temperature, "noise": head.cfg.noise, "seed": args.seed,
        "utterances": n, "shard_size": args.shard_size,
    }  # fmt: skip
    record = out / "gta.json"
    if record.is_file() and json.loads(record.read_text(encoding="utf-8")) != options:
        logger.info("%s: options changed since the last run: every shard is rebuilt", out)
        for old in out.glob("gta.*.safetensors"):
            old.unlink()
    record.write_text(json.dumps(options, indent=1) + "\n", encoding="utf-8")
    for name in (MEL_CONFIG, "stats.safetensors"):
        if (Path(args.dump) / name).is_file():
            shutil.copyfile(Path(args.dump) / name, out / name)
    rows: list[str] = []
    made = kept = 0
    with tqdm(total=n, desc="gta", unit="utt", file=sys.stderr, disable=args.no_progress) as bar:
        for s, lo in enumerate(range(0, n, args.shard_size)):
            items = range(lo, min(n, lo + args.shard_size))
            path = out / SHARD.format(s)
            entries = [data.ds.entries[i] for i in items]
            rows += [json.dumps({**e, "shard": path.name}, ensure_ascii=False) + "\n" for e in entries]
            if path.is_file():
                kept += len(items)
                bar.update(len(items))
                continue
            tensors = {}
            with torch.no_grad():
                for i in items:
                    tensors[str(data.ds.entries[i]["utt"])] = gta_mel(tts, data, i, head, args.steps, args.seed)
                    bar.update(1)
            tmp = path.with_suffix(".tmp")
            save_file(tensors, str(tmp), metadata={"format": "pt"})
            tmp.replace(path)
            made += len(items)
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text("".join(rows), encoding="utf-8")
    tmp.replace(out / MANIFEST)
    logger.info("%d GTA mels written, %d kept from an earlier run -> %s", made, kept, out)
    return {"written": made, "kept": kept}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gta_mels", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="TTS model directory with a text-pointer LM")
    p.add_argument("--dump", required=True, help="feature dump with phone alignments (align_phones)")
    p.add_argument("--out", required=True, help="output dump directory")
    p.add_argument("--head", default="fm", choices=["fm", "mf"], help="generative head (default: fm)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the head's)")
    p.add_argument("--temperature", type=float, default=None, help="sampling noise scale (default: the model's)")
    p.add_argument("--noise", choices=["patch", "utterance"], default=None, help="(default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--max-utts", type=int, default=0, help="the first N utterances only (0: all)")
    p.add_argument("--utts", default=None, help="file of utterance ids to keep (whitespace-separated)")
    p.add_argument("--shard-size", type=int, default=500, help="utterances per shard (default: 500)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    from voxar.errors import VoxarError
    from voxar.log import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging()
    if args.shard_size < 1:
        print("gta_mels: error: --shard-size must be >= 1", file=sys.stderr)
        return 2
    try:
        run(args)
    except VoxarError as e:
        print(f"gta_mels: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
