"""Post-training int8 quantization for CPU inference (``voxar tts --quantize int8``).

:func:`quantize_int8` replaces the ``nn.Linear`` layers of a module with dynamically quantized ones (int8 weights,
per-output-channel scales; activations quantized per call; fbgemm/x86 kernels): a quarter of the weight bytes per
matmul, which is what bounds a batch-1 decoding step on a CPU. It is applied to the TTS flow heads only
(:meth:`voxar.tts.TTS.set_quantize`): the FM head runs its MLP 8 times per patch and gains about 2x, while the LM
step is dominated by per-op overhead at this size and gains nothing measurable (figures in docs/benchmarks.md).

Quantized modules are for inference only: they cannot be trained, moved to CUDA or saved as a model directory
(:func:`is_quantized` lets callers refuse). The implementation is torch's eager dynamic quantization
(``torch.ao.quantization.quantize_dynamic``), imported lazily; a torch build without it gives a clear error.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from voxar.errors import VoxarConfigError

QUANTIZE_MODES = ("none", "int8")


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`QUANTIZE_MODES`, else a :class:`VoxarConfigError`."""
    if mode not in QUANTIZE_MODES:
        raise VoxarConfigError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {mode!r}")
    return mode


def quantize_int8(module: nn.Module) -> nn.Module:
    """A copy of ``module`` (on the CPU, in eval mode) whose ``nn.Linear`` layers hold int8 weights.

    Raises :class:`VoxarConfigError` for a module with parameters off the CPU or a torch without dynamic
    quantization kernels.
    """
    devices = {p.device.type for p in module.parameters()}
    if devices - {"cpu"}:
        raise VoxarConfigError(f"int8 quantization is for CPU inference; the model is on {', '.join(devices)}")
    engines = torch.backends.quantized.supported_engines
    if not any(e in engines for e in ("x86", "fbgemm", "qnnpack")):
        raise VoxarConfigError(f"this torch build has no int8 CPU kernels (quantized engines: {engines})")
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao on import and use
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        except ImportError as e:  # pragma: no cover - depends on the torch build
            raise VoxarConfigError(f"int8 quantization needs torch.ao.quantization ({e})") from e
        return quantize_dynamic(module.eval(), {nn.Linear: per_channel_dynamic_qconfig}, inplace=False)


def is_quantized(module: nn.Module) -> bool:
    """True when any submodule of ``module`` is a quantized (packed-weight) layer."""
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in module.modules())
