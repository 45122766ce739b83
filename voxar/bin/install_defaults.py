"""Recipe entry point: install packed model directories as the package's embedded defaults.

Usage::

    python -m voxar.bin.install_defaults --pack exp/pack --voice data/train/<utt>.wav [--dest voxar/assets] \\
        [--max-mb 30] [--no-fp16]

Copies ``PACK/{vocoder,tts,content,vc}/`` (those present) to ``DEST/models/<kind>/`` and the reference clip to
``DEST/voices/default.wav`` (16 kHz mono, trimmed to at most 6 s), which ``voxar tts`` speaks in when no
``--prompt`` is given. Weights are stored as float16 unless ``--no-fp16`` (halves the size; the loader casts them back
to float32, tensors of at most 1024 values stay float32). The installed models must fit ``--max-mb`` in total (the
package budget) and must load; otherwise nothing is replaced. Each kind is replaced atomically.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger("voxar.install_defaults")
KINDS = ("vocoder", "tts", "content", "vc")
VOICE_SECONDS = 6.0


def to_fp16(path: Path) -> None:
    """Rewrite ``path/model.safetensors`` with float32 tensors of more than 1024 values as float16."""
    import torch
    from safetensors.torch import load_file, save_file

    f = path / "model.safetensors"
    state = load_file(str(f))
    big = {k for k, v in state.items() if v.dtype == torch.float32 and v.numel() > 1024}
    state = {k: (v.half() if k in big else v).contiguous() for k, v in state.items()}
    save_file(state, str(f))


def check_loads(kind: str, path: Path) -> None:
    """Load the model directory the way voxar does (raises VoxarConfigError when it does not load)."""
    if kind == "vocoder":
        from voxar.models.vocoder import Vocoder

        Vocoder.from_pretrained(path)
    elif kind == "tts":
        from voxar.tts import TTS

        TTS.from_pretrained(path, vocoder="griffin-lim")
    elif kind == "content":
        from voxar.models.content import ContentEncoder

        ContentEncoder.from_pretrained(path)
    else:
        from voxar.models.vc import VCModel

        VCModel.from_pretrained(path)


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def install(pack: Path, voice: Path | None, dest: Path, max_mb: float, fp16: bool) -> dict[str, float]:
    from voxar.errors import VoxarConfigError

    kinds = [k for k in KINDS if (pack / k / "model.safetensors").is_file()]
    if not kinds:
        raise VoxarConfigError(f"{pack}: no packed model directory ({', '.join(KINDS)})")
    (dest / "models").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        staged = {}
        for kind in kinds:
            d = Path(tmp) / kind
            shutil.copytree(pack / kind, d)
            if fp16:
                to_fp16(d)
            check_loads(kind, d)
            staged[kind] = d
        sizes = {k: dir_mb(d) for k, d in staged.items()}
        others = sum(dir_mb(dest / "models" / k) for k in KINDS if k not in staged and (dest / "models" / k).is_dir())
        total = sum(sizes.values()) + others
        if total > max_mb:
            raise VoxarConfigError(f"the models take {total:.1f} MB, over the {max_mb:g} MB package budget: {sizes}")
        for kind, d in staged.items():
            target = dest / "models" / kind
            old = Path(tmp) / f"{kind}.old"
            if target.exists():
                target.rename(old)
            d.rename(target)
    if voice is not None:
        import numpy as np

        from voxar.audio import load_audio, save_audio

        wav, sr = load_audio(voice, 16000, require_speech=True)
        (dest / "voices").mkdir(parents=True, exist_ok=True)
        save_audio(dest / "voices" / "default.wav", np.asarray(wav[: int(VOICE_SECONDS * sr)]), sr)
    return sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="install_defaults", description=__doc__.split("\n\n")[0])
    p.add_argument("--pack", required=True, type=Path, help="pack directory from voxar.bin.pack_models")
    p.add_argument("--voice", type=Path, default=None, help="reference clip for the default voice")
    p.add_argument("--dest", type=Path, default=Path(__file__).resolve().parents[1] / "assets")
    p.add_argument("--max-mb", type=float, default=30.0, help="package budget for all models (MB)")
    p.add_argument("--no-fp16", action="store_true", help="keep float32 weights")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from voxar.errors import VoxarError

    try:
        sizes = install(args.pack, args.voice, args.dest, args.max_mb, not args.no_fp16)
    except VoxarError as e:
        print(f"install_defaults: error: {e}", file=sys.stderr)
        return 1
    logger.info("installed %s into %s", ", ".join(f"{k} ({v:.1f} MB)" for k, v in sizes.items()), args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
