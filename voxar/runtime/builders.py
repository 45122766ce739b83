"""Models for benchmarks and tests: a :class:`voxar.tts.TTS` of a named size with random weights, or a trained one.

Speed does not depend on training, so ``voxar bench tts`` times random-weight models of the named sizes when no model
directory is given (it says so in its JSON). Named sizes follow the method brief 6.3 (``egs/synth/conf/tts_*.yaml``):

- ``tiny``: LM d 128 x 2, tiny heads, char tokens; ``tiny`` vocoder (causal);
- ``small``: LM d 512 x 8, small heads (width 512 x 4), phoneme tokens; ``tiny`` causal vocoder (the default
  streaming vocoder: the ``small`` one is too slow for real time on 2 CPU cores, see docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from voxar.errors import VoxarConfigError

TTS_SIZES = ("tiny", "small")


def random_tts(
    size: str = "tiny",
    device: str | torch.device = "cpu",
    vocoder: Any = None,
    seed: int = 0,
    tokenizer: str = "char",
    pointer: bool = False,
) -> Any:
    """A :class:`voxar.tts.TTS` with random weights (seeded) and, unless ``vocoder`` is given, a random causal
    ``tiny`` vocoder (exact streaming). ``tokenizer``: ``char`` (no espeak-ng needed) or ``phoneme``; ``pointer``:
    an LM with the text pointer and dwell input of ``conf/tts_pointer.yaml``, decoding without feedback."""
    from voxar.models.heads import HeadConfig
    from voxar.models.lm import LMConfig
    from voxar.models.vocoder import Vocoder, VocoderConfig
    from voxar.text import CharTokenizer, PhonemeTokenizer
    from voxar.tts import TTS, TTSModel, TTSModelConfig

    if size not in TTS_SIZES:
        raise VoxarConfigError(f"unknown TTS size {size!r}; valid sizes: {', '.join(TTS_SIZES)}")
    if tokenizer not in ("char", "phoneme"):
        raise VoxarConfigError(f"tokenizer must be 'char' or 'phoneme', got {tokenizer!r}")
    tok = CharTokenizer() if tokenizer == "char" else PhonemeTokenizer()
    torch.manual_seed(seed)
    extra: dict[str, Any] = {}
    if pointer:
        from voxar.bin.train_tts import pointer_skip_ids

        extra = dict(pointer=True, pointer_dwell=12, pointer_skip_ids=pointer_skip_ids(tok))
    lm = LMConfig.named(size, vocab_size=tok.vocab_size, **extra)
    head_size = "tiny" if size == "tiny" else "small"
    fm = HeadConfig.named(head_size, cond_dim=lm.d_model, patch_dim=lm.patch_dim)
    mf = HeadConfig.named(head_size, mode="mf", cond_dim=lm.d_model, patch_dim=lm.patch_dim)
    if pointer:  # heads without history, as the pointer models are trained
        fm.history = mf.history = 0
    cfg = TTSModelConfig(preset="16k", lm=lm, fm_head=fm, mf_head=mf, tokenizer=tok.to_dict(), feedback=not pointer)
    model = TTSModel(cfg).eval()
    with torch.no_grad():  # a stop head that rarely fires: random models then run to their length guard
        model.lm.stop_head.net[-1].bias.fill_(-20.0)
    if vocoder is None:
        vocoder = Vocoder(VocoderConfig.named("tiny", causal=True)).eval()
    return TTS(model, tok, vocoder.to(device).eval(), device)


def load_or_build(model_dir: Path | None, size: str, device: str | torch.device, vocoder: Any = None) -> Any:
    """A trained model directory when given (vocoder: ``vocoder`` or the packaged/Griffin-Lim default), else
    :func:`random_tts` of ``size``."""
    if model_dir is not None:
        from voxar.tts import TTS

        return TTS.from_pretrained(model_dir, vocoder=vocoder, device=device)
    from voxar.tts import resolve_vocoder

    return random_tts(size, device, vocoder=None if vocoder is None else resolve_vocoder(vocoder, "16k", device))
