"""Recipe entry point: convert the official Vocos mel vocoder files into a voxar vocoder model directory.

Usage: ``python -m voxar.bin.import_vocos --src DIR --out exp/vocoder_vocos/model [--overwrite]``

``--src`` is a local directory with the published ``config.yaml`` and ``pytorch_model.bin`` (e.g. of
``charactr/vocos-mel-24khz``, fetched by the user; nothing is downloaded here). See
:mod:`voxar.models.vocos_import` for what is supported; the result loads with ``Vocoder.from_pretrained``.
"""

from __future__ import annotations

import argparse
import sys

from voxar.errors import VoxarError


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the script."""
    p = argparse.ArgumentParser(prog="import_vocos", description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True, help="directory with the official config.yaml and pytorch_model.bin")
    p.add_argument("--out", required=True, help="voxar model directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the conversion; returns the exit status (1 with a one-line message on bad input)."""
    args = build_parser().parse_args(argv)
    from voxar.log import setup_logging
    from voxar.models.vocos_import import convert_vocos

    setup_logging()
    try:
        convert_vocos(args.src, args.out, overwrite=args.overwrite)
    except VoxarError as e:
        sys.stderr.write(f"import_vocos: error: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
