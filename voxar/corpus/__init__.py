"""Offline synthetic multi-speaker English corpus (no real corpus can be downloaded here).

- :mod:`voxar.corpus.sentences` (+ :mod:`voxar.corpus.vocab`): seeded grammar-based English sentences;
- :mod:`voxar.corpus.voices`: espeak-ng / flite base voices rendered to clean 16 kHz audio;
- :mod:`voxar.corpus.timbre`: WORLD F0 scaling and vocal-tract-length warping (new speakers from base voices);
- :mod:`voxar.corpus.speakers`: the seeded speaker plan (ids like ``espk-enus-m3-a``);
- :mod:`voxar.corpus.build`: ``build_corpus`` -- Kaldi dirs ``train``/``dev``/``test`` and 16 kHz wavs;
- :mod:`voxar.corpus.libritts`: the same audio in the LibriTTS layout at 24 kHz;
- :mod:`voxar.corpus.report`: hours, counts and speaker distinctness (resemblyzer SIM within vs across speakers).

Entry points: ``python -m voxar.bin.synth_corpus`` and the recipe ``egs/synth/run.sh``. Importing this package
imports nothing heavy; pyworld, resemblyzer and the engines are used only when called.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_corpus", "corpus_report", "make_sentences", "make_speaker_plan"]


def __getattr__(name: str) -> Any:
    if name == "build_corpus":
        from voxar.corpus.build import build_corpus

        return build_corpus
    if name == "corpus_report":
        from voxar.corpus.report import corpus_report

        return corpus_report
    if name == "make_sentences":
        from voxar.corpus.sentences import make_sentences

        return make_sentences
    if name == "make_speaker_plan":
        from voxar.corpus.speakers import make_speaker_plan

        return make_speaker_plan
    raise AttributeError(f"module 'voxar.corpus' has no attribute {name!r}")
