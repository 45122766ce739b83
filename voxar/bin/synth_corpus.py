"""Build voxar's synthetic multi-speaker English corpus (espeak-ng + flite + WORLD timbre transforms).

Usage (from a recipe directory such as ``egs/synth``)::

    python -m voxar.bin.synth_corpus --size tiny --nj 2 --data-dir data --wav-dir wav \\
        --report exp/corpus_report.json [--layout libritts --libritts-dir LibriTTS] [--no-sim]

Writes Kaldi dirs ``<data-dir>/{train,dev,test}`` (absolute wav paths), 16 kHz wavs under ``<wav-dir>``, optionally
the LibriTTS tree, and the corpus report (hours, counts, speaker similarity). Exit status 1 with a one-line message
on user errors (missing synthesis binary, bad arguments).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

log = logging.getLogger("voxar.bin.synth_corpus")


def get_parser() -> argparse.ArgumentParser:
    """Command-line arguments."""
    from voxar.corpus.build import SIZES

    p = argparse.ArgumentParser(
        prog="python -m voxar.bin.synth_corpus",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--size", choices=sorted(SIZES), default="tiny", help="corpus size")
    p.add_argument("--seed", type=int, default=0, help="seed for sentences, speakers and prosody")
    p.add_argument("--nj", type=int, default=1, help="parallel synthesis processes")
    p.add_argument("--layout", choices=("kaldi", "libritts"), default="kaldi", help="also write a LibriTTS tree")
    p.add_argument("--data-dir", default="data", help="where the Kaldi dirs train/dev/test go")
    p.add_argument("--wav-dir", default="wav", help="where the 16 kHz wavs go")
    p.add_argument("--libritts-dir", default=None, help="LibriTTS tree root (required with --layout libritts)")
    p.add_argument("--report", default="exp/corpus_report.json", help="corpus report JSON ('' to skip)")
    p.add_argument("--no-sim", action="store_true", help="skip the speaker-similarity part of the report")
    p.add_argument("--report-only", action="store_true", help="only write the report for existing data dirs")
    p.add_argument("--max-utts-per-spk", type=int, default=8, help="utterances per speaker for the similarity")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    from voxar.errors import VoxarError
    from voxar.log import setup_logging

    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        from pathlib import Path

        from voxar.corpus.build import SPLITS, build_corpus

        if not args.report_only:
            if args.layout == "libritts" and not args.libritts_dir:
                raise VoxarError("--layout libritts needs --libritts-dir")
            t0 = time.time()
            summary = build_corpus(
                args.data_dir,
                args.wav_dir,
                size=args.size,
                seed=args.seed,
                nj=args.nj,
                layout=args.layout,
                libritts_dir=args.libritts_dir,
                progress=not args.no_progress,
            )
            log.info("corpus built in %.1f s: %.3f hours", time.time() - t0, summary["total_hours"])
        if args.report:
            from voxar.corpus.report import corpus_report

            dirs = [Path(args.data_dir) / s for s in SPLITS]
            corpus_report(dirs, args.report, max_utts_per_spk=args.max_utts_per_spk, sim=not args.no_sim)
            log.info("report written: %s", args.report)
    except VoxarError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
