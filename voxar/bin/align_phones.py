"""Forced phone alignment of a feature dump (what the TTS LM's text pointer trains on; :mod:`voxar.data.phone_align`).

Usage::

    python -m voxar.bin.align_phones --dump dump/train [--model DIR] [--max-utts N]

Writes ``<dump>/phone_align.safetensors`` atomically: per utterance the phone index of every mel frame (-1 leading
silence, 0..U-1 the phones, U trailing silence). ``--model`` is a content model directory with its
``tokenizer.json`` (default: the packaged content encoder). Utterances whose phones do not fit their frames, or whose
text has no phone, are left out with a warning (the TTS trainer then skips them).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger("voxar.align_phones")


def align_dump(dump: str | Path, model: str | Path | None = None, max_utts: int | None = None) -> dict[str, int]:
    """Align every utterance of ``dump``; returns ``{"aligned": n, "skipped": m}``."""
    import numpy as np
    from safetensors.numpy import save_file
    from tqdm import tqdm

    from voxar.data.dataset import MelDataset
    from voxar.data.phone_align import ALIGN_FILE, PhoneAligner
    from voxar.errors import VoxarDataError, VoxarTextError

    ds = MelDataset(dump)
    if ds.mel_config().sample_rate != 16000:
        raise VoxarDataError(f"{dump}: phone alignment needs the 16k mel preset (the content encoder's)")
    aligner = PhoneAligner(model)
    out: dict[str, np.ndarray] = {}
    skipped = 0
    n = min(len(ds), max_utts or len(ds))
    for i in tqdm(range(n), desc="align", unit="utt", disable=None):
        item = ds[i]
        try:
            frames = aligner.align(item["mel"], item.get("text", ""))
        except (ValueError, VoxarTextError) as e:
            logger.warning("%s: left out (%s)", item["utt"], e)
            skipped += 1
            continue
        out[str(item["utt"])] = frames
    path = Path(dump) / ALIGN_FILE
    tmp = path.with_suffix(".tmp")
    meta = {"model": aligner.model_dir, "skip": " ".join(aligner.skip), "utts": str(len(out))}
    save_file(out, str(tmp), metadata=meta)
    tmp.replace(path)
    logger.info("%s: %d utterances aligned, %d left out", path, len(out), skipped)
    return {"aligned": len(out), "skipped": skipped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m voxar.bin.align_phones", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--dump", required=True, help="feature dump directory (voxar data dump; 16k preset)")
    parser.add_argument("--model", default=None, help="content model directory (default: the packaged one)")
    parser.add_argument("--max-utts", type=int, default=None, help="align only the first N utterances")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from voxar.errors import VoxarError

    try:
        align_dump(args.dump, args.model, args.max_utts)
    except VoxarError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
