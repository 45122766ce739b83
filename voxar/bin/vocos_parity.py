"""Recipe entry point: numeric parity of voxar's Vocos import against the official ``vocos`` package.

Usage::

    python -m voxar.bin.vocos_parity [--src DIR] [--seed S] [--frames N] [--stub-missing] [-o parity.json]

``--src`` is a directory with the official ``config.yaml`` + ``pytorch_model.bin`` (e.g. ``charactr/vocos-mel-24khz``
fetched by the user). Without it, the published mel-24khz architecture (512/1536 x 8, ISTFT head n_fft 1024 / hop
256, 13.5M parameters) is built by the official package itself, given seeded random weights (every tensor, layer
scales and biases included, so no term is trivially zero) and written in the distribution layout; both sides then
load the same files. The report gives the max abs difference of the decoded waveforms (official ``decode`` vs
voxar full pass and voxar 4-frame streaming) and, where the official feature extractor runs, of the log-mels.

``--stub-missing``: the official package imports torchaudio, encodec and huggingface_hub at import time, and
torchaudio cannot be imported on CPU-only torch builds. Its decoder path (``VocosBackbone`` + ``ISTFTHead``) uses
none of them, so with this flag the missing modules are replaced by placeholders that raise if called; the feature
comparison is then skipped (voxar's vocos24k log-mel matches librosa's HTK mel, see tests/test_features.py) and the
decoders are compared on voxar's features. Needs ``pip install vocos`` (``--no-deps`` with the flag).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

from voxar.errors import VoxarError

logger = logging.getLogger("voxar.vocos_parity")

# The published charactr/vocos-mel-24khz config.yaml (architecture only; the weights here are random).
MEL_24KHZ_CONFIG: dict[str, Any] = {
    "feature_extractor": {
        "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
        "init_args": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100, "padding": "center"},
    },
    "backbone": {
        "class_path": "vocos.models.VocosBackbone",
        "init_args": {"input_channels": 100, "dim": 512, "intermediate_dim": 1536, "num_layers": 8},
    },
    "head": {
        "class_path": "vocos.heads.ISTFTHead",
        "init_args": {"dim": 512, "n_fft": 1024, "hop_length": 256, "padding": "same"},
    },
}
# modules the official package imports at import time that its decoder never calls
STUBBED = ("torchaudio", "torchaudio.transforms", "torchaudio.functional", "torchaudio.functional.functional",
           "encodec", "huggingface_hub")  # fmt: skip


def _placeholder(name: str) -> Any:
    def fail(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError(f"{name} is a voxar.bin.vocos_parity placeholder (the real module is not importable)")

    return fail


def stub_missing_modules() -> list[str]:
    """Put placeholders in ``sys.modules`` for the official package's import-time dependencies that fail to import;
    returns their names. A placeholder class builds (an empty module) but raises when called; functions raise."""
    import torch

    class _Module(torch.nn.Module):
        def __init__(self, *_a: Any, **_k: Any) -> None:
            super().__init__()

        def forward(self, *_a: Any, **_k: Any) -> Any:
            raise RuntimeError("placeholder module (the real dependency is not importable)")

    stubbed = []
    for root in ("torchaudio", "encodec", "huggingface_hub"):
        try:
            importlib.import_module(root)
            continue
        except Exception:  # torchaudio on CPU-only torch fails with OSError/ImportError/RuntimeError
            for name in [n for n in list(sys.modules) if n == root or n.startswith(root + ".")]:
                del sys.modules[name]
        for name in (n for n in STUBBED if n == root or n.startswith(root + ".")):
            mod = types.ModuleType(name)
            mod.__dict__.update(
                MelSpectrogram=_Module, Spectrogram=_Module, EncodecModel=_Module,
                _hz_to_mel=_placeholder("_hz_to_mel"), _mel_to_hz=_placeholder("_mel_to_hz"),
                hf_hub_download=_placeholder("hf_hub_download"),
            )  # fmt: skip
            sys.modules[name] = mod
            stubbed.append(name)
        for name in (n for n in STUBBED if n.startswith(root + ".")):  # parent.child attribute access
            parent, child = name.rsplit(".", 1)
            setattr(sys.modules[parent], child, sys.modules[name])
    return stubbed


def write_random_official(dst: Path, seed: int) -> int:
    """Build the mel-24khz architecture with the official package, randomise every tensor and write the
    distribution files to ``dst``; returns the number of parameters."""
    import torch
    import yaml
    from vocos import Vocos

    dst.mkdir(parents=True, exist_ok=True)
    (dst / "config.yaml").write_text(yaml.safe_dump(MEL_24KHZ_CONFIG), encoding="utf-8")
    model = Vocos.from_hparams(str(dst / "config.yaml"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):  # layer scale: published init 1/num_layers; make it non-uniform
                p.copy_(0.3 + 0.2 * torch.rand(p.shape, generator=g))
            elif p.dim() == 1:  # biases and norm affines
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / (p[0].numel() ** 0.5))
    torch.save(model.state_dict(), dst / "pytorch_model.bin")
    return sum(p.numel() for p in model.parameters())


def run(src: Path | None, seed: int, frames: int, stub: bool) -> dict[str, Any]:
    """The parity report (see the module docstring)."""
    from voxar.models.vocos_import import parity_with_official

    stubbed = stub_missing_modules() if stub else []
    if stubbed:
        logger.info("placeholders for %s (the official decoder does not use them)", ", ".join(stubbed))
    try:
        import vocos
    except Exception as e:
        hint = "" if stub else " (try --stub-missing)"
        raise VoxarError(f"cannot import the official 'vocos' package: {e}{hint}") from e
    report: dict[str, Any] = {"vocos_version": getattr(vocos, "__version__", "unknown"), "stubbed": stubbed}
    with tempfile.TemporaryDirectory() as tmp:
        if src is None:
            src = Path(tmp) / "vocos-mel-24khz-random"
            report["weights"] = f"random (seed {seed}), published mel-24khz architecture"
            report["parameters"] = write_random_official(src, seed)
        else:
            report["weights"] = str(src)
        report.update(parity_with_official(src, num_frames=frames, seed=seed, features=not stubbed))
    return report


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the script."""
    p = argparse.ArgumentParser(prog="vocos_parity", description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, default=None, help="official Vocos files (default: random mel-24khz weights)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and the test signal")
    p.add_argument("--frames", type=int, default=200, help="mel frames decoded (200 = 2.1 s at 24 kHz)")
    p.add_argument("--stub-missing", action="store_true", help="placeholders for torchaudio/encodec/huggingface_hub")
    p.add_argument("-o", "--output", default=None, help="JSON report (default: stdout)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; returns the exit status (1 with a one-line message on bad input)."""
    args = build_parser().parse_args(argv)
    from voxar.bin import write_json_report
    from voxar.log import setup_logging

    setup_logging()
    try:
        report = run(args.src, args.seed, args.frames, args.stub_missing)
    except VoxarError as e:
        sys.stderr.write(f"vocos_parity: error: {e}\n")
        return 1
    write_json_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
