"""``python -m voxar.bin.tts_probe`` on the tiny model trained once by ``test_tts_train.trained_tts``."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_tts_train import trained_tts

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_tts(tmp_path_factory)


def test_report_has_every_variant_and_is_reproducible(run, tmp_path):
    from voxar.bin.tts_probe import main

    out = tmp_path / "probe.json"
    data = run["root"] / "corpus" / "data"
    assert main(["--model", str(run["model"]), "--data", str(data), "--max-utts", "4", "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["utts"] == 4 and report["history"] == 1 and report["head"] == "mf"
    assert set(report["mse"]) == {"lm", "mean_h", "no_history"}
    assert all(v > 0 for v in report["mse"].values())
    assert report["content_gain"] == pytest.approx(report["mse"]["mean_h"] - report["mse"]["lm"])
    again = tmp_path / "again.json"
    assert main(["--model", str(run["model"]), "--data", str(data), "--max-utts", "4", "-o", str(again)]) == 0
    assert json.loads(again.read_text())["mse"] == report["mse"]  # fixed noise: the same figures


def test_a_head_blind_to_the_lm_state_has_no_content_gain(run):
    """The diagnosis measures reliance on h: with the head's condition projection zeroed, replacing h by its mean
    changes nothing, while zeroing the history still does."""
    from voxar.bin.tts_probe import probe
    from voxar.tts import TTS

    tts = TTS.from_pretrained(run["model"], vocoder="griffin-lim")
    with torch.no_grad():
        tts.model.mf_head.cond_proj.weight.zero_()
    report = probe(run["model"], run["root"] / "corpus" / "data", max_utts=4, tts=tts)
    assert report["content_gain"] == pytest.approx(0.0, abs=1e-6)
    assert report["mse"]["no_history"] != pytest.approx(report["mse"]["lm"], abs=1e-4)


def test_bad_data_dir_is_a_one_line_error(run, tmp_path, capsys):
    from voxar.bin.tts_probe import main

    assert main(["--model", str(run["model"]), "--data", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("tts_probe: error:")
