"""What this installation can do: versions, torch devices, optional extras and system tools (``voxar info``)."""

from __future__ import annotations

import importlib.util
import platform
import shutil
from typing import Any

from voxar import __version__

EXTRAS = {
    "live": ["sounddevice"],
    "eval": ["pocketsphinx", "resemblyzer", "jiwer", "speechmos", "pyworld", "matplotlib"],
    "train": ["tensorboard"],
    "vocos": ["vocos", "encodec"],
}
TOOLS = ["espeak-ng", "flite", "sox"]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # broken or shadowed installs count as missing
        return False


def _extra_status(modules: list[str]) -> str:
    missing = [m for m in modules if not _installed(m)]
    return "missing " + ",".join(missing) if missing else "yes"


def environment_info() -> dict[str, Any]:
    """A JSON-safe summary. Checks presence only (``find_spec``): nothing optional is imported."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "voxar": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if cuda else "not available",
        "threads": torch.get_num_threads(),
        "extras": {
            name: "yes"
            if all(_installed(m) for m in mods)
            else "missing " + ",".join(m for m in mods if not _installed(m))
            for name, mods in EXTRAS.items()
        },
        "tools": {tool: shutil.which(tool) or "not found" for tool in TOOLS},
    }
