"""Recipe entry points (``python -m voxar.bin.<step>``) and the little they share."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_json_report(report: dict[str, Any], output: str | Path | None) -> None:
    """Write ``report`` as indented JSON to ``output`` (parent folders created), or to stdout when it is None."""
    import json
    import sys

    text = json.dumps(report, indent=1) + "\n"
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
