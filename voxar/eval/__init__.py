"""Objective evaluation of generated speech (``voxar eval``).

Each generated utterance is scored against its text and, where one is given, a reference recording:

- **WER** (:mod:`voxar.eval.asr`): PocketSphinx 5 (packaged en-us model) transcribes the audio; reference text and
  hypothesis are both normalised with :func:`voxar.eval.textnorm.normalize_for_wer`; scored with jiwer.
- **SIM** (:mod:`voxar.eval.speaker`): cosine similarity of Resemblyzer speaker embeddings, generated vs reference.
- **DNSMOS** (:mod:`voxar.eval.dnsmos`): Microsoft's non-intrusive DNSMOS P.835 (SIG/BAK/OVRL) and P.808 MOS
  predictors, run by the ``speechmos`` package.
- **MCD** and **log-mel L1** (:mod:`voxar.eval.mcd`): spectral distances to the reference recording.

:func:`voxar.eval.report.evaluate` runs them, including a *ground-truth ceiling* (the same metrics computed on the
reference recordings), and writes ``eval.json``, ``eval_utts.jsonl``, ``eval.md`` and ``mels.png``. Inputs are read by
:mod:`voxar.eval.inputs`. Submodules import their heavy optional dependencies (the ``eval`` extra) only when used, so
importing this package is cheap.
"""
