"""voxar: streaming zero-shot text-to-speech and voice conversion.

Importing voxar needs only the core dependencies (torch, numpy, soundfile, soxr, librosa, safetensors, pyyaml, typer,
tqdm). Optional extras (``live``, ``eval``, ``train``, ``vocos``) are imported lazily where they are used.
"""

__version__ = "0.1.0"

from voxar.errors import VoxarAudioError, VoxarError, VoxarTextError  # noqa: E402

__all__ = ["VoxarAudioError", "VoxarError", "VoxarTextError", "__version__"]
