"""Corpus report: size per split and how distinct the speakers are to a speaker encoder.

:func:`corpus_report` reads Kaldi data dirs and writes one JSON file with, per split, hours, utterances, speakers
(and which speakers are unseen in ``train``), and, with ``sim``, speaker distinctness measured with
:class:`voxar.eval.speaker.SpeakerEncoder` (resemblyzer d-vectors, L2-normalised, so a dot product is a cosine):

- ``within``: mean cosine over pairs of *different* utterances of the *same* speaker;
- ``across``: mean cosine over pairs of utterances of *different* speakers;

each computed on up to ``max_utts_per_spk`` utterances per speaker (a seeded sample, pooled over all given dirs),
with the corpus targets ``across <= 0.80`` and ``within >= 0.88`` and whether they pass. The most similar speaker
pairs are listed too, to find voices that need spreading out.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TARGET_ACROSS_MAX = 0.80
TARGET_WITHIN_MIN = 0.88


def split_stats(data_dir: str | Path) -> dict:
    """Hours, utterance and speaker counts of one Kaldi data dir (durations from utt2dur, else audio headers)."""
    from voxar.data.kaldi import read_data_dir

    kd = read_data_dir(data_dir)
    if kd.utt2dur is not None and set(kd.utt2dur) >= set(kd.utt2spk):
        seconds = sum(kd.utt2dur[u] for u in kd.utt2spk)
    else:
        from voxar.audio import duration

        seconds = sum(duration(kd.wav_path(u)) for u in kd.utt2spk)
    speakers = sorted(set(kd.utt2spk.values()))
    return {
        "dir": str(data_dir),
        "utterances": len(kd.utt2spk),
        "speakers": len(speakers),
        "hours": round(seconds / 3600.0, 4),
        "mean_utt_seconds": round(seconds / max(1, len(kd.utt2spk)), 3),
        "speaker_ids": speakers,
    }


def pick_utterances(spk2paths: dict[str, list[Path]], max_per_spk: int, seed: int = 0) -> dict[str, list[Path]]:
    """Up to ``max_per_spk`` paths per speaker, a seeded sample (sorted; independent of dict order)."""
    out: dict[str, list[Path]] = {}
    for spk in sorted(spk2paths):
        paths = sorted(spk2paths[spk])
        rng = random.Random(f"{seed}:{spk}")
        out[spk] = sorted(rng.sample(paths, min(max_per_spk, len(paths))))
    return out


def similarity_stats(emb: np.ndarray, labels: list[str], top: int = 5) -> dict:
    """Within/across-speaker cosine statistics of L2-normalised embeddings ``emb`` ``(N, D)`` with speaker ``labels``.

    Returns ``{"within", "across", "within_min_speaker", "n_within_pairs", "n_across_pairs", "per_speaker",
    "most_similar_pairs"}``; ``within`` is None when no speaker has two utterances.
    """
    emb = np.asarray(emb, dtype=np.float64)
    sim = emb @ emb.T  # (N, D) @ (D, N) -> (N, N) cosines
    lab = np.asarray(labels)
    same = lab[:, None] == lab[None, :]
    upper = np.triu(np.ones_like(same, dtype=bool), k=1)
    within_vals = sim[same & upper]
    across_vals = sim[~same & upper]
    speakers = sorted(set(labels))
    per_speaker: dict[str, float | None] = {}
    for spk in speakers:
        idx = np.flatnonzero(lab == spk)
        pairs = [sim[i, j] for i, j in itertools.combinations(idx, 2)]
        per_speaker[spk] = round(float(np.mean(pairs)), 4) if pairs else None
    pair_means = []
    for a, b in itertools.combinations(speakers, 2):
        block = sim[np.ix_(lab == a, lab == b)]
        pair_means.append((float(block.mean()), a, b))
    pair_means.sort(reverse=True)
    known = [v for v in per_speaker.values() if v is not None]
    return {
        "within": round(float(within_vals.mean()), 4) if within_vals.size else None,
        "across": round(float(across_vals.mean()), 4) if across_vals.size else None,
        "within_min_speaker": min(known) if known else None,
        "n_within_pairs": int(within_vals.size),
        "n_across_pairs": int(across_vals.size),
        "per_speaker": per_speaker,
        "most_similar_pairs": [{"speakers": [a, b], "cosine": round(c, 4)} for c, a, b in pair_means[:top]],
    }


def speaker_similarity(data_dirs: list[str | Path], *, max_utts_per_spk: int = 8, seed: int = 0) -> dict:
    """Embed up to ``max_utts_per_spk`` utterances per speaker of ``data_dirs`` and compare (see module doc)."""
    from voxar.audio import load_audio
    from voxar.data.kaldi import read_data_dir
    from voxar.eval.speaker import SpeakerEncoder

    spk2paths: dict[str, list[Path]] = {}
    for d in data_dirs:
        kd = read_data_dir(d)
        for utt, spk in kd.utt2spk.items():
            spk2paths.setdefault(spk, []).append(kd.wav_path(utt))
    chosen = pick_utterances(spk2paths, max_utts_per_spk, seed)
    labels = [spk for spk, paths in chosen.items() for _ in paths]
    sr = 16000
    wavs = [load_audio(p, sr=sr)[0] for paths in chosen.values() for p in paths]
    log.info("embedding %d utterances of %d speakers", len(wavs), len(chosen))
    enc = SpeakerEncoder()
    emb = np.stack([np.asarray(e, dtype=np.float64) for e in enc.embed_many(wavs, sr)])  # (N, 256)
    stats = similarity_stats(emb, labels)
    within, across = stats["within"], stats["across"]
    stats.update(
        {
            "encoder": "resemblyzer (voxar.eval.speaker.SpeakerEncoder)",
            "utterances_per_speaker_max": max_utts_per_spk,
            "n_speakers": len(chosen),
            "n_utterances": len(wavs),
            "targets": {"across_max": TARGET_ACROSS_MAX, "within_min": TARGET_WITHIN_MIN},
            "across_pass": across is not None and across <= TARGET_ACROSS_MAX,
            "within_pass": within is not None and within >= TARGET_WITHIN_MIN,
        }
    )
    stats["pass"] = stats["across_pass"] and stats["within_pass"]
    return stats


def corpus_report(
    data_dirs: list[str | Path],
    out_json: str | Path,
    *,
    max_utts_per_spk: int = 8,
    sim: bool = True,
    seed: int = 0,
    extra: dict | None = None,
) -> dict:
    """Write (and return) the report for ``data_dirs`` (e.g. ``data/train data/dev data/test``) to ``out_json``.

        Split names are the directories' names. Speakers of a non-train split that are absent from a split named
        ``train`` are listed as unseen. Build settings and time from ``corpus.json`` next to the dirs (written by
    :func:`voxar.corpus.build.build_corpus`), updated with ``extra``, are stored under ``"build"``.
    """
    data_dirs = [Path(d) for d in data_dirs]
    splits = {d.name: split_stats(d) for d in data_dirs}
    train_spk = set(splits["train"]["speaker_ids"]) if "train" in splits else set()
    for name, st in splits.items():
        if name != "train" and train_spk:
            st["unseen_speakers"] = sorted(set(st["speaker_ids"]) - train_spk)
    all_spk = set().union(*(st["speaker_ids"] for st in splits.values())) if splits else set()
    report: dict = {
        "splits": {k: {kk: vv for kk, vv in v.items() if kk != "speaker_ids"} for k, v in splits.items()},
        "total_hours": round(sum(st["hours"] for st in splits.values()), 4),
        "total_utterances": sum(st["utterances"] for st in splits.values()),
        "total_speakers": len(all_spk),
    }
    build = {}
    corpus_json = data_dirs[0].parent / "corpus.json" if data_dirs else None
    if corpus_json is not None and corpus_json.is_file():
        info = json.loads(corpus_json.read_text(encoding="utf-8"))
        build = {k: info[k] for k in ("size", "seed", "nj", "build_seconds", "synthesised_utterances") if k in info}
    build.update(extra or {})
    if build:
        report["build"] = build
    if sim:
        report["speaker_similarity"] = speaker_similarity(data_dirs, max_utts_per_spk=max_utts_per_spk, seed=seed)
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_json.with_name(out_json.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out_json)
    if sim:
        s = report["speaker_similarity"]
        log.info(
            "speaker similarity: within %.3f (target >= %.2f), across %.3f (target <= %.2f): %s",
            s["within"] or float("nan"),
            TARGET_WITHIN_MIN,
            s["across"] or float("nan"),
            TARGET_ACROSS_MAX,
            "PASS" if s["pass"] else "FAIL",
        )
    return report
