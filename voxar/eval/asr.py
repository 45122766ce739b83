"""Speech recognition for intelligibility scoring (WER), with PocketSphinx 5 and its packaged US-English model.

PocketSphinx is a small CPU recogniser (a continuous-density HMM acoustic model with the CMU dictionary and a generic
trigram language model, all shipped inside the ``pocketsphinx`` wheel), so WER needs no download and no GPU. It is far
less accurate than modern neural ASR: absolute WERs are high even on clean human speech, which is why ``voxar eval``
always reports the WER of the reference recordings next to the generated one (the "ground-truth ceiling"). Compare
systems by their WER relative to that ceiling, never with WERs from another recogniser.

Decoding settings are PocketSphinx's defaults; its cepstral mean normalisation is ``batch`` (per utterance) and
dither is off, so a transcript does not depend on what was decoded before and repeated runs give identical results.
Audio is resampled to 16 kHz and peak-normalised to -1 dBFS before decoding, so the transcript does not depend on
the playback level.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Sequence

import numpy as np

from voxar.errors import VoxarError

log = logging.getLogger(__name__)

ASR_SAMPLE_RATE = 16000
_INSTALL_HINT = "pip install 'voxar[eval]'"


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def to_pcm16(wav: np.ndarray, sr: int) -> bytes:
    """Mono float ``wav`` ``(T,)`` at ``sr`` Hz -> little-endian int16 bytes at 16 kHz, peak-normalised to -1 dBFS.

    Digital silence stays silence. Raises :class:`voxar.errors.VoxarAudioError` for NaN/inf samples.
    """
    from voxar.audio import check_waveform, peak_normalize, resample

    x = check_waveform(np.asarray(wav), "ASR input")
    if x.ndim != 1:
        raise ValueError(f"ASR input: expected a mono waveform (T,), got shape {tuple(x.shape)}")
    x = resample(x, int(sr), ASR_SAMPLE_RATE)
    x = peak_normalize(x, -1.0)
    return (np.clip(x, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


class PocketSphinxASR:
    """English transcriber: ``PocketSphinxASR().transcribe(wav, sr) -> "lower case words"``.

    One decoder is created per instance (about 0.7 s) and reused; transcripts are independent of decoding order.
    Raises :class:`voxar.errors.VoxarError` with an install hint when the ``pocketsphinx`` package is missing.
    """

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as e:
            raise VoxarError(f"WER needs the pocketsphinx package ({e}); install it with: {_INSTALL_HINT}") from e
        # Default config = the en-us acoustic model, cmudict-en-us.dict and en-us.lm.bin inside the wheel.
        self._decoder = Decoder(loglevel="FATAL")
        self.name = f"pocketsphinx {_package_version('pocketsphinx')} en-us (packaged acoustic model, CMU dict, LM)"

    def transcribe(self, wav: np.ndarray, sr: int) -> str:
        """Decode one utterance ``wav`` ``(T,)`` float in [-1, 1] at ``sr`` Hz; returns its words ('' if none).

        Digital silence (all samples zero after 16-bit quantisation) gives ``''`` without decoding: PocketSphinx
        would otherwise hallucinate a short word on it.
        """
        pcm = to_pcm16(wav, sr)
        if not any(pcm):
            return ""
        dec = self._decoder
        dec.start_utt()
        dec.process_raw(pcm, no_search=False, full_utt=True)
        dec.end_utt()
        hyp = dec.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""


def wer(refs: Sequence[str], hyps: Sequence[str], *, normalize: bool = True) -> dict[str, float | int]:
    """Corpus-level word error rate of ``hyps`` against ``refs`` (same length, paired by index).

    Both sides go through :func:`voxar.eval.textnorm.normalize_for_wer` unless ``normalize=False``. The counts are
    summed over all utterances, so ``wer = (substitutions + deletions + insertions) / ref_words`` weights every word
    equally (not every utterance). Returns ``dict(wer, substitutions, deletions, insertions, hits, ref_words)``; a
    single pair gives that utterance's WER. Raises ``ValueError`` if the lengths differ or the references hold no
    word at all (WER undefined).
    """
    import jiwer

    if isinstance(refs, str) or isinstance(hyps, str):
        raise TypeError("wer() takes sequences of strings; wrap a single pair as wer([ref], [hyp])")
    if len(refs) != len(hyps):
        raise ValueError(f"wer(): {len(refs)} references but {len(hyps)} hypotheses")
    if normalize:
        from voxar.eval.textnorm import normalize_for_wer

        refs = [normalize_for_wer(r) for r in refs]
        hyps = [normalize_for_wer(h) for h in hyps]
    n_ref_words = sum(len(r.split()) for r in refs)
    if n_ref_words == 0:
        raise ValueError("wer(): the references contain no words, WER is undefined")
    out = jiwer.process_words(list(refs), list(hyps))
    sub, dele, ins, hits = int(out.substitutions), int(out.deletions), int(out.insertions), int(out.hits)
    ref_words = sub + dele + hits
    if ref_words != n_ref_words:  # jiwer's counts must add up to the reference length
        raise RuntimeError(f"jiwer counted {ref_words} reference words, expected {n_ref_words}")
    return {
        "wer": (sub + dele + ins) / ref_words,
        "substitutions": sub,
        "deletions": dele,
        "insertions": ins,
        "hits": hits,
        "ref_words": ref_words,
    }
