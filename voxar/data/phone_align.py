"""Phone alignments of a feature dump: which phone each mel frame holds, from a content encoder's CTC posteriors.

The TTS LM's text pointer (``lm.pointer``, :mod:`voxar.models.pointer`) is trained on these: for every speech patch
the index of the phone it holds. A content model directory (a CTC phone recogniser, :mod:`voxar.models.content`; a
copy ships in the package) gives the frame posteriors; **forced alignment** (Viterbi over the CTC graph of the
known phone sequence) places every phone of the transcript, so recognition errors do not matter much.

Frame labels, per mel frame: ``-1`` before the first phone (leading silence), ``0..U-1`` the phones, ``U`` after
the last (trailing silence). CTC marks each phone with a short spike, so the frames between two spikes are split at
the midpoint; the frames before the first spike (after the last) go to the first (last) phone where there is
speech energy and to ``-1`` (``U``) where it is silent.

The alignments of a dump live in ``<dump>/phone_align.safetensors`` (one int16 ``(T,)`` tensor per utterance,
keyed by utterance id; the metadata name the content model and its skip symbols). ``python -m
voxar.bin.align_phones --dump DIR`` writes it.

Legend: T mel frames, Te encoder frames (``T / subsample``), V classes, U phones, N patches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxar.errors import VoxarDataError
from voxar.models.content import DEFAULT_CTC_SKIP

ALIGN_FILE = "phone_align.safetensors"
SILENCE_DB = 35.0  # frames quieter than the utterance's loudest by this much are silence (leading/trailing)


def ctc_viterbi(log_probs: np.ndarray, targets: Sequence[int], blank: int) -> np.ndarray:
    """Best CTC path of ``targets`` through ``log_probs (Te, V)``: per frame the target index it emits, or ``-1``
    (blank). Raises :class:`ValueError` when the targets cannot fit (more frames needed than ``Te``)."""
    te, u = log_probs.shape[0], len(targets)
    s = 2 * u + 1  # extended labels: blank, t0, blank, t1, ..., blank
    labels = np.full(s, blank, dtype=np.int64)
    labels[1::2] = np.asarray(targets, dtype=np.int64)
    need = u + sum(1 for a, b in zip(targets, targets[1:], strict=False) if a == b)
    if need > te:
        raise ValueError(f"{u} phones need {need} frames, only {te}")
    # a state may skip the blank before it when it is a label different from the label two states back
    skip = np.zeros(s, dtype=bool)
    skip[3::2] = labels[3::2] != labels[1:-2:2]
    emit = log_probs[:, labels]  # (Te, S)
    score = np.full(s, -np.inf)
    score[0] = emit[0, 0]
    if u:
        score[1] = emit[0, 1]
    back = np.zeros((te, s), dtype=np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, te):
        one = np.concatenate([[-np.inf], score[:-1]])
        two = np.where(skip, np.concatenate([[-np.inf, -np.inf], score[:-2]]), -np.inf)
        cand = np.stack([score, one, two])  # (3, S)
        back[t] = cand.argmax(0)
        score = cand.max(0) + emit[t]
    state = s - 1 if u == 0 or score[s - 1] >= score[s - 2] else s - 2
    path = np.empty(te, dtype=np.int64)
    for t in range(te - 1, -1, -1):
        path[t] = state
        state -= int(back[t, state])
    return np.where(path % 2 == 1, (path - 1) // 2, -1)


def frame_phones(spikes: np.ndarray, n_phones: int, speech: np.ndarray) -> np.ndarray:
    """Per-frame phone index ``(T,)`` int16 in ``[-1, U]`` from a CTC path at the same rate (``spikes (T,)``,
    target index or -1) and a speech mask ``speech (T,)`` bool (module docstring)."""
    t = spikes.shape[0]
    out = np.full(t, -1, dtype=np.int16)
    hit = np.flatnonzero(spikes >= 0)
    if n_phones == 0 or hit.size == 0:
        return out
    ks = spikes[hit]
    first = np.full(n_phones, -1)
    last = np.full(n_phones, -1)
    first[ks[::-1]] = hit[::-1]  # repeated indices: the last assignment wins
    last[ks] = hit
    # forward-fill the spikes, then give each gap's second half to the next phone
    out[:] = 0
    for k in range(n_phones):
        if first[k] >= 0:
            out[first[k] :] = k
    for k in range(n_phones - 1):
        if last[k] >= 0 and first[k + 1] > last[k] + 1:
            out[(last[k] + first[k + 1] + 1) // 2 : first[k + 1]] = k + 1
    f0, f1 = int(hit[0]), int(hit[-1])
    voiced = np.flatnonzero(speech)
    onset = min(int(voiced[0]), f0) if voiced.size else f0
    offset = max(int(voiced[-1]), f1) if voiced.size else f1
    out[:onset] = -1  # leading silence
    out[offset + 1 :] = n_phones  # trailing silence
    return np.maximum.accumulate(out)


def speech_mask(mel: np.ndarray, silence_db: float = SILENCE_DB) -> np.ndarray:
    """``(T,)`` bool: frames of ``mel (M, T)`` (natural-log mel) within ``silence_db`` of the loudest frame."""
    energy = np.log(np.exp(mel.astype(np.float64)).sum(0) + 1e-10)  # (T,)
    return energy >= energy.max() - silence_db / (10.0 / np.log(10.0))


def patch_pointer(frames: np.ndarray, patch_size: int) -> np.ndarray:
    """Per-patch phone index ``(N,)`` int64 from per-frame ``frames (T,)``: the latest phone each patch reaches;
    the first patch is always ``-1`` (generation starts before the first phone)."""
    t = frames.shape[0]
    n = -(-t // patch_size)
    pad = np.concatenate([frames, np.full(n * patch_size - t, frames[-1] if t else -1)])
    ptr = pad.reshape(n, patch_size).max(1).astype(np.int64)
    if n:
        ptr[0] = -1
    return ptr


class PhoneAligner:
    """Forced phone alignment with a content model directory (default: the packaged one)."""

    def __init__(self, model_dir: str | Path | None = None) -> None:
        from voxar.eval.per import PhoneRecognizer

        self.rec = PhoneRecognizer(model_dir)
        self.model_dir = str(model_dir or "packaged")
        self.skip = list(DEFAULT_CTC_SKIP)  # what PhoneRecognizer.targets drops (and the TTS pointer's skip ids)

    def phones(self, text: str) -> list[int]:
        """The phone ids of ``text`` (the CTC targets)."""
        return self.rec.targets(text)

    def align(self, mel: Any, text: str) -> np.ndarray:
        """Per-frame phone index ``(T,)`` int16 of raw log-mel ``mel (M, T)`` (16 kHz preset) and its transcript."""
        import torch

        mel_t = torch.as_tensor(mel, dtype=torch.float32)
        if mel_t.dim() != 2:
            raise ValueError(f"expected a mel (M, T), got shape {tuple(mel_t.shape)}")
        targets = self.phones(text)
        model = self.rec.model
        with torch.no_grad():
            out = model(mel_t[None], chunk_size=0)
        lp = out.logits[0].float().log_softmax(-1).numpy()  # (Te, V)
        enc = ctc_viterbi(lp, targets, model.blank_id)  # (Te,)
        spikes = np.full(mel_t.shape[1], -1, dtype=np.int64)
        rate = np.repeat(enc, model.subsample)[: mel_t.shape[1]]  # encoder rate -> mel rate
        spikes[: rate.shape[0]] = rate
        return frame_phones(spikes, len(targets), speech_mask(mel_t.numpy()))


def load_alignments(dump_dir: str | Path) -> dict[str, np.ndarray]:
    """``{utt: frames (T,) int16}`` of ``<dump_dir>/phone_align.safetensors``."""
    from safetensors.numpy import load_file

    path = Path(dump_dir) / ALIGN_FILE
    if not path.is_file():
        raise VoxarDataError(
            f"{path}: no phone alignments (lm.pointer needs them: python -m voxar.bin.align_phones --dump {dump_dir})"
        )
    return load_file(str(path))
