"""Recipe entry point: how much speaker identity do content features leak? A nearest-centroid speaker-ID probe.

Usage::

    python -m voxar.bin.speaker_probe --content-model exp/content/model --data data/test [--features mel bnf ppg] \\
        [--max-utts N] [-o probe.json]

Each utterance of ``--data`` (a Kaldi dir with ``wav.scp`` and ``utt2spk``) becomes one vector per feature kind: the
mean and standard deviation over time of its normalised log-mel (``mel``), of the content encoder's bottleneck
(``bnf``) or of its CTC phone posteriors (``ppg``), the encoder in full-context mode. Each vector is classified by
the nearest speaker centroid (Euclidean, features z-scored over the set), leaving the utterance out of its own
centroid. Accuracy far above chance (``1 / speakers``) means a VC model fed those features can copy the source
voice instead of taking the target's: the lower, the better the features for VC. Speakers need two utterances.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("voxar.speaker_probe")
KINDS = ("mel", "bnf", "ppg")


def nearest_centroid_accuracy(x: np.ndarray, labels: list[str]) -> float:
    """Leave-one-out nearest-centroid accuracy of ``x (N, D)`` (z-scored here) against ``labels`` (N,)."""
    lab = np.asarray(labels)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    speakers = sorted(set(labels))
    sums = {s: x[lab == s].sum(0) for s in speakers}
    counts = {s: int((lab == s).sum()) for s in speakers}
    correct = 0
    for i in range(len(x)):
        best, best_d = None, np.inf
        for s in speakers:
            n = counts[s] - (lab[i] == s)
            if n == 0:
                continue
            centroid = (sums[s] - (x[i] if lab[i] == s else 0.0)) / n
            d = float(np.linalg.norm(x[i] - centroid))
            if d < best_d:
                best, best_d = s, d
        correct += best == lab[i]
    return correct / len(x)


def probe(content_model: str | Path, data: str | Path, kinds: list[str], max_utts: int = 0) -> dict[str, Any]:
    """The probe's report: accuracy per feature kind, chance level, counts (see the module docstring)."""
    import torch

    from voxar.audio.features import MelConfig, log_mel
    from voxar.audio.io import load_audio
    from voxar.data.kaldi import read_kv, resolve_wav
    from voxar.errors import VoxarDataError
    from voxar.models.content import ContentEncoder

    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise VoxarDataError(f"unknown feature kind(s) {bad}; choose from {', '.join(KINDS)}")
    data = Path(data)
    wavs, utt2spk = read_kv(data / "wav.scp"), read_kv(data / "utt2spk")
    utts = sorted(u for u in wavs if u in utt2spk)
    if max_utts:
        utts = utts[:max_utts]
    per_spk = Counter(utt2spk[u] for u in utts)
    utts = [u for u in utts if per_spk[utt2spk[u]] >= 2]
    if len({utt2spk[u] for u in utts}) < 2:
        raise VoxarDataError(f"{data}: the probe needs at least 2 speakers with 2 or more utterances each")
    enc = ContentEncoder.from_pretrained(content_model).eval()
    mel_cfg = MelConfig.preset("16k")
    vectors: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
    for u in utts:
        wav, _ = load_audio(resolve_wav(wavs[u], key=u), mel_cfg.sample_rate)
        mel = torch.from_numpy(log_mel(wav, mel_cfg)).float()[None]  # (1, M, T)
        with torch.no_grad():
            out = enc(mel, chunk_size=0)
        feats = {
            "mel": enc._norm(mel)[0].T,  # (T, M)
            "bnf": out.bnf[0, :, enc.delay :].T,  # (T, Db)
            "ppg": out.logits[0].softmax(-1),  # (Te, V)
        }
        for k in kinds:
            f = feats[k]
            vectors[k].append(torch.cat([f.mean(0), f.std(0)]).numpy())
    labels = [utt2spk[u] for u in utts]
    n_spk = len(set(labels))
    return {
        "data": str(data), "content_model": str(content_model), "utts": len(utts), "speakers": n_spk,
        "chance": 1.0 / n_spk,
        "accuracy": {k: nearest_centroid_accuracy(np.stack(v), labels) for k, v in vectors.items()},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from voxar.bin import write_json_report
    from voxar.errors import VoxarError
    from voxar.log import setup_logging

    p = argparse.ArgumentParser(prog="speaker_probe", description=__doc__.splitlines()[0])
    p.add_argument("--content-model", required=True, help="content encoder model directory")
    p.add_argument("--data", required=True, help="Kaldi data dir (wav.scp, utt2spk)")
    p.add_argument("--features", nargs="+", default=list(KINDS), help="feature kinds (default: mel bnf ppg)")
    p.add_argument("--max-utts", type=int, default=0, help="at most N utterances (0: all)")
    p.add_argument("-o", "--output", default=None, help="write the JSON report here (default: stdout)")
    args = p.parse_args(argv)
    setup_logging()
    try:
        report = probe(args.content_model, args.data, args.features, args.max_utts)
    except VoxarError as e:
        print(f"speaker_probe: error: {e}", file=sys.stderr)
        return 1
    write_json_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
