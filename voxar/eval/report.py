"""Score a set of generated utterances, with a ground-truth ceiling, and write ``eval.json``/``eval.md``/``mels.png``.

:func:`evaluate` runs every enabled metric on each :class:`voxar.eval.inputs.Item` and, with ``ceiling=True``, the
same metrics on the reference recordings in the same run, so each generated figure sits next to what real speech
scores with the same tools (see :data:`DEFINITIONS`, also written into ``eval.json``). All audio is loaded as mono
16 kHz (soxr) first. A per-utterance failure (unreadable or silent audio) is recorded in that utterance's ``errors``
and leaves its metric out of the means; a metric whose package is missing fails at the start with
:class:`voxar.errors.VoxarError`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxar.errors import VoxarAudioError
from voxar.eval.inputs import InputProblem, Item

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
DNSMOS_KEYS = ("ovrl", "sig", "bak", "p808")

DEFINITIONS: dict[str, str] = {
    "wer": "Word error rate of the ASR transcript against the input text, after normalize_for_wer on both "
    "(lower-case, numbers spelled out, punctuation removed). 'wer' is corpus-level: (S + D + I) / reference words "
    "summed over all utterances; 'mean_utt_wer' averages per-utterance WERs. Ceiling: the same ASR on the reference "
    "recordings. PocketSphinx is weak; judge the generated WER against the ceiling.",
    "sim": "Speaker similarity: cosine of Resemblyzer embeddings of the generated audio and the reference recording "
    "of the same utterance (needs a reference). Ceiling: cosine between the reference recording of the utterance and "
    "the reference recording of another utterance of the same speaker (the next one, cyclically, among the evaluated "
    "utterances with references), i.e. how similar two genuine recordings of one speaker look to this encoder; needs "
    "speaker ids and two or more referenced utterances per speaker. The ceiling compares different sentences while "
    "the generated SIM compares the same sentence, so a generated SIM slightly above the ceiling is possible.",
    "per": "Phone error rate: edit distance between the phones a voxar content encoder (greedy CTC, full context) "
    "recognises in the audio and the phones of the text (its espeak-ng tokenizer without stress, spaces and "
    "punctuation), summed over utterances and divided by the reference phones. Finer than WER and able to read the "
    "espeak-ng voices; trained on the synth corpus, so judge it against its ceiling (the recordings).",
    "dnsmos": "DNSMOS P.835 SIG/BAK/OVRL and P.808 MOS (1-5, higher is better), non-intrusive, averaged over "
    "utterances. Ceiling: DNSMOS of the reference recordings.",
    "mcd": "Mel-cepstral distortion in dB (lower is better) between generated and reference audio: WORLD CheapTrick "
    "envelope at 16 kHz, 5 ms frames, mel-cepstrum order 24 with all-pass alpha 0.42, c0 excluded, DTW alignment, "
    "aligned pairs where both frames are silent (40 dB below the utterance's loudest frame) dropped, "
    "10/ln10*sqrt(2*sum d^2) averaged over the path. No ceiling (0 by definition).",
    "logmel_l1": "Mean absolute difference of natural-log mel spectrograms (voxar 16k preset: 80 mels, 10 ms hop) "
    "of generated and reference audio without alignment; only computed when the frame counts match within one frame "
    "(same timing, e.g. resynthesis or voice conversion), otherwise null. No ceiling (0 by definition).",
}


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _summary(values: Sequence[float]) -> dict[str, Any]:
    """``{mean, std, n}`` of a list of floats (mean/std None when empty)."""
    return {
        "mean": _mean(values),
        "std": float(np.std(values)) if len(values) else None,
        "n": len(values),
    }


def _try(rec: dict[str, Any], metric: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a VoxarAudioError (silent/unusable audio) is recorded in ``rec['errors']`` and gives None."""
    try:
        return fn()
    except VoxarAudioError as e:
        rec["errors"].append({"metric": metric, "error": str(e)})
        log.warning("%s: %s: %s", rec["utt"], metric, e)
        return None


class _Tools:
    """The scoring back-ends needed by the enabled metrics, loaded up front (fail fast on a missing package)."""

    def __init__(
        self, *, wer: bool, sim: bool, dnsmos: bool, mcd: bool, per: bool = False, per_model: Any = None
    ) -> None:
        self.names: dict[str, str] = {}
        self.asr = self.encoder = self.phones = None
        if per:
            from voxar.eval.per import PhoneRecognizer

            self.phones = PhoneRecognizer(per_model)
            self.names["per"] = self.phones.name
        if wer:
            from voxar.eval.asr import PocketSphinxASR

            self.asr = PocketSphinxASR()
            self.names["asr"] = self.asr.name
            self.names["wer"] = (
                f"{self.asr.name} transcripts; voxar.eval.textnorm.normalize_for_wer on text and transcript; "
                f"{_version_name('jiwer')} process_words"
            )
        if sim:
            from voxar.eval.speaker import SpeakerEncoder

            self.encoder = SpeakerEncoder("cpu")
            self.names["sim"] = self.encoder.name
        if dnsmos:
            from voxar.eval.dnsmos import dnsmos_tool_name

            self.names["dnsmos"] = dnsmos_tool_name()
        if mcd:
            from voxar.eval.mcd import mcd_tool_name

            self.names["mcd"] = mcd_tool_name()
            self.names["logmel_l1"] = "voxar.audio.log_mel, preset 16k"


def _version_name(package: str) -> str:
    import importlib.metadata

    try:
        return f"{package} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return package


def _score_item(
    it: Item,
    tools: _Tools,
    *,
    ceiling: bool,
    wer: bool,
    sim: bool,
    dnsmos: bool,
    mcd: bool,
    want_mels: bool,
    per: bool = False,
) -> tuple[dict[str, Any], np.ndarray | None, tuple | None]:
    """Per-utterance record; also the reference embedding (for the SIM ceiling) and ``(ref_mel, gen_mel)``."""
    from voxar.audio import load_audio, log_mel

    rec: dict[str, Any] = {
        "utt": it.utt,
        "wav": str(it.wav),
        "ref": None if it.ref is None else str(it.ref),
        "spk": it.spk,
        "text": it.text,
        "errors": [],
    }
    gen = _try(rec, "load", lambda: load_audio(it.wav, SAMPLE_RATE)[0])
    if gen is None:
        return rec, None, None
    # scoring recordings against themselves (ground-truth runs: ``--ref-dir`` = the input) reuses each result
    same = it.ref is not None and Path(it.ref).resolve() == Path(it.wav).resolve()
    ref = None if it.ref is None else gen if same else _try(rec, "load_ref", lambda: load_audio(it.ref, SAMPLE_RATE)[0])
    rec["duration_s"] = gen.size / SAMPLE_RATE
    rec["ref_duration_s"] = None if ref is None else ref.size / SAMPLE_RATE
    ref_emb = None
    if wer:
        from voxar.eval.asr import wer as wer_fn

        rec["hyp"] = _try(rec, "wer", lambda: tools.asr.transcribe(gen, SAMPLE_RATE))
        rec["wer"] = None if rec["hyp"] is None else wer_fn([it.text], [rec["hyp"]])
        if ceiling and ref is not None:
            rec["ref_hyp"] = (
                rec["hyp"] if same else _try(rec, "wer_ceiling", lambda: tools.asr.transcribe(ref, SAMPLE_RATE))
            )
            rec["ref_wer"] = None if rec["ref_hyp"] is None else wer_fn([it.text], [rec["ref_hyp"]])
    if per:
        rec["per"] = _try(rec, "per", lambda: tools.phones.score(it.text, gen, SAMPLE_RATE))
        if ceiling and ref is not None:
            rec["ref_per"] = (
                rec["per"] if same else _try(rec, "per_ceiling", lambda: tools.phones.score(it.text, ref, SAMPLE_RATE))
            )
    if sim and ref is not None:
        from voxar.eval.speaker import cosine

        gen_emb = _try(rec, "sim", lambda: tools.encoder.embed(gen, SAMPLE_RATE))
        ref_emb = gen_emb if same else _try(rec, "sim_ref", lambda: tools.encoder.embed(ref, SAMPLE_RATE))
        rec["sim"] = None if gen_emb is None or ref_emb is None else cosine(gen_emb, ref_emb)
    if dnsmos:
        from voxar.eval.dnsmos import dnsmos as dnsmos_fn

        rec["dnsmos"] = _try(rec, "dnsmos", lambda: dnsmos_fn(gen, SAMPLE_RATE))
        if ceiling and ref is not None:
            rec["ref_dnsmos"] = (
                rec["dnsmos"] if same else _try(rec, "dnsmos_ceiling", lambda: dnsmos_fn(ref, SAMPLE_RATE))
            )
    if mcd and ref is not None:
        from voxar.eval.mcd import logmel_l1
        from voxar.eval.mcd import mcd as mcd_fn

        rec["mcd"] = _try(rec, "mcd", lambda: mcd_fn(ref, gen, SAMPLE_RATE))
        rec["logmel_l1"] = _try(rec, "logmel_l1", lambda: logmel_l1(ref, gen, SAMPLE_RATE))
    mels = None
    if want_mels:
        from voxar.audio import MelConfig

        cfg = MelConfig.preset("16k")
        if gen.size > cfg.n_fft // 2:
            ref_mel = log_mel(ref, cfg) if ref is not None and ref.size > cfg.n_fft // 2 else None
            mels = (ref_mel, log_mel(gen, cfg))  # each (n_mels, frames)
    return rec, ref_emb, mels


def _sim_ceiling(recs: list[dict[str, Any]], ref_embs: dict[str, np.ndarray]) -> None:
    """Set ``rec['sim_ceiling']``: cosine of this utterance's reference with the next same-speaker reference."""
    from voxar.eval.speaker import cosine

    by_spk: dict[str, list[str]] = {}
    for rec in recs:
        if rec["spk"] is not None and rec["utt"] in ref_embs:
            by_spk.setdefault(rec["spk"], []).append(rec["utt"])
    partner: dict[str, str] = {}
    for utts in by_spk.values():
        if len(utts) >= 2:
            for k, utt in enumerate(utts):
                partner[utt] = utts[(k + 1) % len(utts)]
    for rec in recs:
        other = partner.get(rec["utt"])
        if other is not None:
            rec["sim_ceiling_partner"] = other
            rec["sim_ceiling"] = cosine(ref_embs[rec["utt"]], ref_embs[other])


def _wer_aggregate(recs: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """Corpus-level WER summed over the utterances that have ``rec[key]`` (per-utterance WER dicts)."""
    per = [r[key] for r in recs if r.get(key) is not None]
    if not per:
        return None
    counts = {k: sum(p[k] for p in per) for k in ("substitutions", "deletions", "insertions", "hits", "ref_words")}
    errors = counts["substitutions"] + counts["deletions"] + counts["insertions"]
    return {
        "wer": errors / counts["ref_words"],
        **counts,
        "mean_utt_wer": _mean([p["wer"] for p in per]),
        "n": len(per),
    }


def _per_aggregate(recs: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """Corpus-level PER: edit distances summed over the utterances that have ``rec[key]``, over their phones."""
    per = [r[key] for r in recs if r.get(key) is not None]
    if not per:
        return None
    errors, phones = sum(p["errors"] for p in per), sum(p["ref_phones"] for p in per)
    return {"per": errors / max(phones, 1), "errors": errors, "ref_phones": phones, "n": len(per)}


def _aggregate(
    recs: list[dict[str, Any]], *, wer: bool, sim: bool, dnsmos: bool, mcd: bool, ceiling: bool, per: bool = False
) -> dict:
    metrics: dict[str, Any] = {}

    def values(key: str, sub: str | None = None) -> list[float]:
        out = []
        for r in recs:
            v = r.get(key)
            if v is not None and sub is not None:
                v = v.get(sub)
            if v is not None:
                out.append(float(v))
        return out

    if wer:
        metrics["wer"] = {
            "generated": _wer_aggregate(recs, "wer"),
            "ceiling": _wer_aggregate(recs, "ref_wer") if ceiling else None,
        }
    if per:
        metrics["per"] = {
            "generated": _per_aggregate(recs, "per"),
            "ceiling": _per_aggregate(recs, "ref_per") if ceiling else None,
        }
    if sim:
        metrics["sim"] = {
            "generated": _summary(values("sim")),
            "ceiling": _summary(values("sim_ceiling")) if ceiling else None,
        }
    if dnsmos:
        for k in DNSMOS_KEYS:
            metrics[f"dnsmos_{k}"] = {
                "generated": _summary(values("dnsmos", k)),
                "ceiling": _summary(values("ref_dnsmos", k)) if ceiling else None,
            }
    if mcd:
        metrics["mcd"] = {"generated": _summary(values("mcd")), "ceiling": None}
        metrics["logmel_l1"] = {"generated": _summary(values("logmel_l1")), "ceiling": None}
    return metrics


def _with_tools(metrics: dict[str, Any], tools: _Tools) -> dict[str, Any]:
    """Put the producing tool's name into every metric entry (``dnsmos_*`` entries share the DNSMOS tool)."""
    for key, entry in metrics.items():
        entry["tool"] = tools.names["dnsmos" if key.startswith("dnsmos_") else key]
    return metrics


_ROWS = (  # (metric key, label, value key, scale, format)
    ("wer", "WER % (corpus) ↓", "wer", 100.0, "{:.1f}"),
    ("per", "PER % (corpus) ↓", "per", 100.0, "{:.1f}"),
    ("sim", "SIM (cosine) ↑", "mean", 1.0, "{:.3f}"),
    ("dnsmos_ovrl", "DNSMOS OVRL ↑", "mean", 1.0, "{:.2f}"),
    ("dnsmos_sig", "DNSMOS SIG ↑", "mean", 1.0, "{:.2f}"),
    ("dnsmos_bak", "DNSMOS BAK ↑", "mean", 1.0, "{:.2f}"),
    ("dnsmos_p808", "DNSMOS P.808 ↑", "mean", 1.0, "{:.2f}"),
    ("mcd", "MCD dB (DTW) ↓", "mean", 1.0, "{:.2f}"),
    ("logmel_l1", "log-mel L1 (aligned) ↓", "mean", 1.0, "{:.3f}"),
)


def markdown_table(result: dict[str, Any]) -> str:
    """The short markdown summary of an :func:`evaluate` result: metric, generated, ground-truth ceiling, n."""
    lines = ["| metric | generated | ground truth ceiling | n |", "|---|---|---|---|"]

    def cell(entry: dict[str, Any] | None, key: str, scale: float, fmt: str) -> tuple[str, int]:
        if entry is None or entry.get(key) is None:
            return "–", 0 if entry is None else int(entry.get("n", 0))
        return fmt.format(entry[key] * scale), int(entry["n"])

    for metric, label, key, scale, fmt in _ROWS:
        m = result["metrics"].get(metric)
        if m is None:
            continue
        gen, n_gen = cell(m["generated"], key, scale, fmt)
        ceil, n_ceil = cell(m["ceiling"], key, scale, fmt)
        n = f"{n_gen}" if m["ceiling"] is None or n_ceil == n_gen else f"{n_gen} / {n_ceil}"
        lines.append(f"| {label} | {gen} | {ceil} | {n} |")
    return "\n".join(lines)


def _markdown(result: dict[str, Any]) -> str:
    out = [
        "# voxar eval",
        "",
        f"{result['n_scored']} of {result['n_items']} utterances scored ({result['created']}).",
        "",
        markdown_table(result),
        "",
        "n: utterances behind the figure (generated / ceiling when they differ). Ceiling = the same metric on the "
        "reference recordings; SIM ceiling = reference vs another reference of the same speaker. Definitions are in "
        "eval.json (`definitions`).",
        "",
        "Tools:",
        "",
        *(f"- {k}: {v}" for k, v in result["tools"].items()),
    ]
    if result["input_problems"] or result["utterance_errors"]:
        out += ["", f"Input problems: {len(result['input_problems'])}; utterance errors: "
                f"{len(result['utterance_errors'])} (see eval.json)."]  # fmt: skip
    return "\n".join(out) + "\n"


def evaluate(
    items: Sequence[Item],
    *,
    wer: bool = True,
    sim: bool = True,
    dnsmos: bool = True,
    mcd: bool = True,
    ceiling: bool = True,
    outdir: str | Path,
    plots: int = 4,
    progress: bool = True,
    problems: Sequence[InputProblem] = (),
    per: bool = False,
    per_model: str | Path | None = None,
) -> dict[str, Any]:
    """Score ``items`` and write the report files into ``outdir``; returns the ``eval.json`` content.

    Writes ``eval.json`` (aggregates, tools, definitions, problems), ``eval_utts.jsonl`` (one JSON record per
    utterance), ``eval.md`` (short table) and, when ``plots > 0``, ``mels.png`` (reference vs generated log-mel of the
    first ``plots`` utterances). ``problems`` (from :func:`voxar.eval.inputs.read_inputs`) are copied into the JSON.
    A tqdm bar goes to stderr when ``progress``. ``per``: also the phone error rate (:mod:`voxar.eval.per`) with
    the content model ``per_model`` (default: the packaged one).
    """
    from tqdm import tqdm

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tools = _Tools(wer=wer, sim=sim, dnsmos=dnsmos, mcd=mcd, per=per, per_model=per_model)
    recs: list[dict[str, Any]] = []
    ref_embs: dict[str, np.ndarray] = {}
    mel_entries: list[tuple[str, np.ndarray | None, np.ndarray]] = []
    for it in tqdm(items, desc="voxar eval", unit="utt", file=sys.stderr, disable=not progress):
        rec, ref_emb, mels = _score_item(
            it,
            tools,
            ceiling=ceiling,
            wer=wer,
            sim=sim,
            dnsmos=dnsmos,
            mcd=mcd,
            want_mels=len(mel_entries) < plots,
            per=per,
        )
        recs.append(rec)
        if ref_emb is not None:
            ref_embs[it.utt] = ref_emb
        if mels is not None:
            mel_entries.append((it.utt, mels[0], mels[1]))
    if sim and ceiling:
        _sim_ceiling(recs, ref_embs)

    import voxar

    enabled = {"wer": wer, "per": per, "sim": sim, "dnsmos": dnsmos, "mcd": mcd, "logmel_l1": mcd}
    result: dict[str, Any] = {
        "voxar_version": voxar.__version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "n_items": len(items),
        "n_scored": sum(1 for r in recs if "duration_s" in r),
        "sample_rate": SAMPLE_RATE,
        "ceiling": ceiling,
        "tools": tools.names,
        "metrics": _with_tools(
            _aggregate(recs, wer=wer, sim=sim, dnsmos=dnsmos, mcd=mcd, ceiling=ceiling, per=per), tools
        ),
        "definitions": {k: v for k, v in DEFINITIONS.items() if enabled[k]},
        "input_problems": [str(p) for p in problems],
        "utterance_errors": [{"utt": r["utt"], **e} for r in recs for e in r["errors"]],
        "files": {"utterances": "eval_utts.jsonl", "markdown": "eval.md", "mels": None},
    }
    with open(outdir / "eval_utts.jsonl", "w", encoding="utf-8") as f:
        for rec in recs:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    if plots > 0 and mel_entries:
        from voxar.eval.plots import plot_mel_pairs

        plot_mel_pairs(mel_entries, outdir / "mels.png")
        result["files"]["mels"] = "mels.png"
    (outdir / "eval.md").write_text(_markdown(result), encoding="utf-8")
    with open(outdir / "eval.json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return result
