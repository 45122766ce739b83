"""Training metrics: a JSONL log, TensorBoard (when installed) and a tqdm progress bar, all on the main rank only.

``exp/<tag>/train_log.jsonl`` gets one JSON object per :meth:`TrainLogger.log` call, e.g.
``{"step": 100, "split": "train", "time": 12.3, "loss": 1.23, "lr": 0.001}``; it is appended to on resume, so it
holds the whole history. TensorBoard event files go to ``exp/<tag>/tb`` (``torch.utils.tensorboard`` is imported
lazily; without the ``tensorboard`` package a warning is logged once and training goes on without it).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

JSONL = "train_log.jsonl"
TB_DIR = "tb"


class TrainLogger:
    """Metrics sink for one training run.

    ``enabled=False`` (non-main ranks) makes every method a no-op. ``total_steps``/``initial_step`` size the progress
    bar (``progress=False`` hides it). Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        exp_dir: str | Path,
        *,
        enabled: bool = True,
        tensorboard: bool = True,
        progress: bool = True,
        total_steps: int | None = None,
        initial_step: int = 0,
        desc: str = "train",
    ) -> None:
        self.exp_dir = Path(exp_dir)
        self.enabled = enabled
        self.start = time.monotonic()
        self.writer: Any = None
        self.bar: Any = None
        self._jsonl = None
        if not enabled:
            return
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.exp_dir / JSONL, "a", encoding="utf-8")  # closed in close()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard is an optional extra
            except ImportError:
                logger.warning("tensorboard is not installed; logging to %s only", self.exp_dir / JSONL)
            else:
                self.writer = SummaryWriter(log_dir=str(self.exp_dir / TB_DIR), purge_step=initial_step or None)
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total_steps, initial=initial_step, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=True
            )

    def log(self, step: int, metrics: dict[str, float], *, split: str = "train") -> None:
        """Record scalar ``metrics`` at ``step`` under ``split`` (``"train"``, ``"valid"``, ...)."""
        if not self.enabled:
            return
        values = {k: _scalar(v) for k, v in metrics.items()}
        record = {"step": int(step), "split": split, "time": round(time.monotonic() - self.start, 3), **values}
        assert self._jsonl is not None
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self.writer is not None:
            for k, v in values.items():
                if v is not None:
                    self.writer.add_scalar(f"{split}/{k}", v, step)
        if split != "train":
            shown = " ".join(f"{k}={v:.4g}" for k, v in values.items() if v is not None)
            self.write(f"step {step} {split}: {shown}")

    def log_audio(self, step: int, tag: str, wav: torch.Tensor, sample_rate: int) -> None:
        """Add a waveform ``(T,)`` to TensorBoard (no-op without TensorBoard)."""
        if self.enabled and self.writer is not None:
            self.writer.add_audio(tag, wav.detach().float().cpu().clamp(-1, 1).reshape(1, -1), step, sample_rate)

    def progress(self, n: int = 1, **postfix: float) -> None:
        """Advance the progress bar by ``n`` steps and show ``postfix`` values (e.g. the current loss)."""
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
            self.bar.update(n)

    def write(self, message: str) -> None:
        """Log ``message`` at INFO without breaking the progress bar."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.clear()
        logger.info(message)
        if self.bar is not None:
            self.bar.refresh()

    def close(self) -> None:
        """Flush and close every sink."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None

    def __enter__(self) -> TrainLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _scalar(v: Any) -> float | None:
    """A finite float (None for NaN/inf, which JSON cannot hold)."""
    f = float(v.item()) if torch.is_tensor(v) else float(v)
    return f if math.isfinite(f) else None


def read_log(path: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """Records of a ``train_log.jsonl`` (of one ``split`` if given), in file order."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                if split is None or rec.get("split") == split:
                    out.append(rec)
    return out
