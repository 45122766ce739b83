"""Recipe entry point: average the weights of the last N checkpoints of an experiment (icefall-style).

Usage::

    python -m voxar.bin.average_checkpoints --exp exp/vocoder_small --last 5 --out exp/vocoder_small/model_avg5
    python -m voxar.bin.average_checkpoints --exp exp/vocoder_small --last 5 --out avg.pt [--use-ema]

``--out`` ending in ``.pt`` writes ``{model, step, averaged_from, model_class, model_config, config}`` (loadable with
``torch.load(weights_only=True)``); any other path becomes a voxar model directory written by the model's
``save_pretrained`` (the model is rebuilt from the class and config recorded in the checkpoints).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from voxar.errors import VoxarError

logger = logging.getLogger("voxar.average_checkpoints")


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the script."""
    p = argparse.ArgumentParser(prog="average_checkpoints", description=__doc__.splitlines()[0])
    p.add_argument("--exp", required=True, help="experiment directory holding checkpoint-<step>.pt files")
    p.add_argument("--last", type=int, default=5, help="average the N newest numbered checkpoints (default: 5)")
    p.add_argument("--out", required=True, help="output: a .pt file or a model directory")
    p.add_argument("--use-ema", action="store_true", help="average the EMA weights instead of the raw model")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return p


def average(exp: str | Path, last: int, out: str | Path, *, use_ema: bool = False, overwrite: bool = False) -> Path:
    """Average the ``last`` newest checkpoints of ``exp`` into ``out`` (see the module docstring); returns ``out``."""
    from voxar.train import checkpoint as C

    exp, out = Path(exp), Path(out)
    if last < 1:
        raise VoxarError(f"--last must be >= 1, got {last}")
    paths = C.list_checkpoints(exp)[-last:]
    if not paths:
        raise VoxarError(f"{exp}: no checkpoint-<step>.pt files to average")
    if len(paths) < last:
        logger.warning("%s: only %d checkpoint(s) available, averaging those", exp, len(paths))
    if out.exists() and not overwrite:
        raise VoxarError(f"{out}: already exists (pass --overwrite to replace it)")
    state = C.average_checkpoints(paths, key="ema" if use_ema else "model")
    newest = C.load_checkpoint(paths[-1])
    if out.suffix == ".pt":
        C.atomic_save(
            {
                "model": state,
                "step": int(newest["step"]),
                "averaged_from": [p.name for p in paths],
                "model_class": newest.get("model_class"),
                "model_config": newest.get("model_config"),
                "config": newest.get("config") or {},
            },
            out,
        )
    else:
        model = C.build_model(newest, state)
        if not hasattr(model, "save_pretrained"):
            raise VoxarError(f"{newest.get('model_class')}: has no save_pretrained; use an --out ending in .pt")
        model.save_pretrained(out, overwrite=overwrite)
    logger.info("averaged %s -> %s", ", ".join(p.name for p in paths), out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the averaging; returns the exit status (1 with a one-line message on bad input)."""
    args = build_parser().parse_args(argv)
    from voxar.log import setup_logging

    setup_logging()
    try:
        average(args.exp, args.last, args.out, use_ema=args.use_ema, overwrite=args.overwrite)
    except VoxarError as e:
        sys.stderr.write(f"average_checkpoints: error: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
