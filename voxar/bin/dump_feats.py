"""Recipe entry point: dump log-mel features of a Kaldi data directory.

Usage: ``python -m voxar.bin.dump_feats DATA_DIR OUT_DIR [--preset 16k] [--nj N] [--shard-size 200] [--no-resume]``
(the same as ``voxar data dump``; see :func:`voxar.data.dump.dump_features`).
"""

from __future__ import annotations

import argparse
import logging
import sys

from voxar.errors import VoxarError


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the script."""
    parser = argparse.ArgumentParser(prog="dump_feats", description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", help="Kaldi data directory (wav.scp, text, utt2spk[, segments])")
    parser.add_argument("out_dir", help="output directory for shards, manifest.jsonl, mel.yaml, stats")
    parser.add_argument("--preset", default="16k", help="mel preset: 16k or vocos24k (default: 16k)")
    parser.add_argument("--nj", type=int, default=1, help="parallel worker processes (default: 1)")
    parser.add_argument("--shard-size", type=int, default=200, help="utterances per shard (default: 200)")
    parser.add_argument("--no-resume", action="store_true", help="recompute every shard")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the dump; returns the exit status (1 with a one-line message on bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from voxar.data.dump import dump_features

    try:
        summary = dump_features(
            args.data_dir,
            args.out_dir,
            args.preset,
            nj=args.nj,
            shard_size=args.shard_size,
            resume=not args.no_resume,
            progress=not args.no_progress,
        )
    except VoxarError as e:
        sys.stderr.write(f"dump_feats: error: {e}\n")
        return 1
    sys.stderr.write(f"dump_feats: {summary.utts} utterance(s), {summary.skipped} skipped, {summary.frames} frames\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
