"""Logging setup for the CLI and recipe entry points: everything goes to stderr, so stdout stays free for audio/JSON."""

from __future__ import annotations

import logging
import sys


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (not the stream at setup), so a replaced or closed stderr
    (test runners, embedding applications) never receives records meant for its successor."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; ignore
        pass


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Configure the root logger on stderr. ``verbose`` 0 → INFO, 1+ → DEBUG; ``quiet`` → WARNING."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 0 else logging.INFO)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    # third-party chatter stays quiet unless asked for
    for name in ("numba", "matplotlib", "urllib3", "PIL"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
