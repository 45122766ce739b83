"""The speaker-leakage probe (voxar.bin.speaker_probe)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from voxar.bin.speaker_probe import main, nearest_centroid_accuracy
from voxar.models.content import ContentConfig, ContentEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_nearest_centroid_hand_made():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (4, 3)), rng.normal(5, 0.1, (4, 3))])
    labels = ["a"] * 4 + ["b"] * 4
    assert nearest_centroid_accuracy(x, labels) == 1.0
    assert nearest_centroid_accuracy(x, ["a", "b"] * 4) < 0.5  # labels unrelated to the clusters


def _kaldi_dir(tmp_path):
    """3 'speakers' x 3 utterances: harmonic tones whose pitch and spectral tilt identify the speaker."""
    sr, lines, u2s = 16000, [], []
    t = np.arange(sr) / sr
    for s, f0 in enumerate((100.0, 180.0, 300.0)):
        for i in range(3):
            wav = sum(np.sin(2 * np.pi * k * (f0 + 5 * i) * t) / k ** (1 + s) for k in range(1, 10))
            path = tmp_path / f"s{s}_{i}.wav"
            sf.write(path, (0.2 * wav / np.abs(wav).max()).astype(np.float32), sr)
            lines.append(f"s{s}_{i} {path}")
            u2s.append(f"s{s}_{i} s{s}")
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    (d / "utt2spk").write_text("\n".join(u2s) + "\n")
    return d


def test_probe_cli_reports_each_feature_kind(tmp_path, capsys):
    torch.manual_seed(0)
    model_dir = ContentEncoder(ContentConfig.named("tiny")).save_pretrained(tmp_path / "content")
    data = _kaldi_dir(tmp_path)
    out = tmp_path / "probe.json"
    assert main(["--content-model", str(model_dir), "--data", str(data), "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["speakers"] == 3 and report["utts"] == 9 and report["chance"] == pytest.approx(1 / 3)
    assert set(report["accuracy"]) == {"mel", "bnf", "ppg"}
    assert report["accuracy"]["mel"] == 1.0  # the speakers differ plainly in the spectrum
    assert main(["--content-model", str(model_dir), "--data", str(data), "--features", "mfcc"]) == 1
    assert "unknown feature kind" in capsys.readouterr().err
