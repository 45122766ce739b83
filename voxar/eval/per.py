"""Phone error rate (PER) of speech with a voxar content encoder (CTC phone recogniser).

PocketSphinx's word error rate is coarse (one wrong phone loses the word) and it cannot read espeak-ng's voices at
all (WER ~0.9 on their recordings), so it says little about a model that is partly intelligible. The content encoder
(:class:`voxar.models.content.ContentEncoder`, trained by the recipes on the synth corpus; a copy is packaged) reads
every voice of that corpus, phone by phone: :class:`PhoneRecognizer` decodes the audio (full context, greedy CTC)
and compares the phones with those of the text (the encoder's own espeak-ng tokenizer, without stress marks, spaces
and punctuation). Like every learned scorer it is judged against its ceiling: the same recogniser on the
recordings.

Legend: M mel bins, T frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from voxar.errors import VoxarConfigError

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "models" / "content"


class PhoneRecognizer:
    """Greedy-CTC phone recognition with a content model directory (default: the packaged one)."""

    def __init__(self, model_dir: str | Path | None = None) -> None:
        import torch

        from voxar.models.content import ContentEncoder
        from voxar.text import load_tokenizer

        path = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
        tok_file = path / "tokenizer.json"
        if not tok_file.is_file():
            raise VoxarConfigError(f"{path}: not a content model directory with a tokenizer.json (PER needs both)")
        self.model = ContentEncoder.from_pretrained(path)
        self.tokenizer = load_tokenizer(tok_file)
        self.symbols = self.tokenizer.symbols.symbols
        self.sample_rate = 16000
        self.name = f"voxar content encoder {path.name} (greedy CTC, full context, {path})"
        self._torch = torch

    def phones(self, wav: np.ndarray, sr: int) -> list[int]:
        """Recognised phone ids of ``wav (L,)`` (float, mono) at ``sr`` Hz (must be 16 kHz)."""
        from voxar.audio import MelConfig, log_mel
        from voxar.models.content import ctc_greedy_decode

        if sr != self.sample_rate:
            raise ValueError(f"PhoneRecognizer takes {self.sample_rate} Hz audio, got {sr}")
        torch = self._torch
        mel = torch.from_numpy(log_mel(np.asarray(wav, dtype=np.float32), MelConfig.preset("16k")))[None]  # (1, M, T)
        with torch.no_grad():
            out = self.model(mel, chunk_size=0)
        return ctc_greedy_decode(out.logits, out.enc_lengths, self.model.blank_id)[0]

    def targets(self, text: str) -> list[int]:
        """The phone ids of ``text`` (what a perfect rendering would be recognised as)."""
        from voxar.models.content import ctc_targets

        return ctc_targets(self.tokenizer.encode(text), self.symbols)

    def score(self, text: str, wav: np.ndarray, sr: int) -> dict[str, Any]:
        """``{"per", "errors", "ref_phones", "hyp"}`` of one utterance (``hyp``: the recognised phones as text)."""
        from voxar.models.content import edit_distance

        ref, hyp = self.targets(text), self.phones(wav, sr)
        errors = edit_distance(hyp, ref)
        return {
            "per": errors / max(len(ref), 1),
            "errors": errors,
            "ref_phones": len(ref),
            "hyp": " ".join(self.symbols[i] for i in hyp),
        }
