"""Side-by-side log-mel spectrogram figure (reference vs generated) for ``voxar eval``'s ``mels.png``.

Drawn with matplotlib's object API on an Agg canvas (``Figure`` + ``FigureCanvasAgg``): the global pyplot backend is
never touched, so this works headless and does not disturb an interactive session. matplotlib is imported lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from voxar.errors import VoxarError

log = logging.getLogger(__name__)


def plot_mel_pairs(
    entries: Sequence[tuple[str, np.ndarray | None, np.ndarray]],
    path: str | Path,
    *,
    hop_seconds: float = 0.01,
    dpi: int = 100,
) -> Path:
    """Write a PNG with one row per entry: reference log-mel (left) and generated log-mel (right).

    ``entries`` holds ``(utt, ref_mel, gen_mel)`` with mels ``(n_mels, frames)`` (natural log); ``ref_mel`` may be
    None (the panel then says so). Both panels of a row share one colour scale and one time axis in seconds
    (``hop_seconds`` per frame), so durations can be compared. Returns ``path``. Raises ``ValueError`` for no
    entries, :class:`voxar.errors.VoxarError` without matplotlib.
    """
    if not entries:
        raise ValueError("plot_mel_pairs(): nothing to plot")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise VoxarError(f"plots need matplotlib ({e}); install it with: pip install 'voxar[eval]'") from e
    rows = len(entries)
    fig = Figure(figsize=(12, 2.4 * rows), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 2, squeeze=False)
    for r, (utt, ref, gen) in enumerate(entries):
        present = [m for m in (ref, gen) if m is not None]
        vmin = min(float(np.min(m)) for m in present)
        vmax = max(float(np.max(m)) for m in present)
        seconds = max(m.shape[1] for m in present) * hop_seconds  # both panels of a row share the time axis
        for c, (label, mel) in enumerate((("reference", ref), ("generated", gen))):
            ax = axes[r, c]
            ax.set_title(f"{utt}: {label}", fontsize=9)
            if mel is None:
                ax.text(0.5, 0.5, "no reference audio", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            extent = (0.0, mel.shape[1] * hop_seconds, 0.0, float(mel.shape[0]))
            im = ax.imshow(mel, origin="lower", aspect="auto", extent=extent, vmin=vmin, vmax=vmax, cmap="magma")
            ax.set_xlim(0.0, seconds)
            ax.set_ylabel("mel band", fontsize=8)
            if r == rows - 1:
                ax.set_xlabel("time (s)", fontsize=8)
            ax.tick_params(labelsize=7)
        fig.colorbar(im, ax=axes[r, :], label="log magnitude", shrink=0.9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
