"""Content-encoder training: ``train_content`` (content_tiny.yaml, shortened) on the tiny espeak-ng corpus of
``test_tts_train``; loss falls, the model directory loads and streams, the PER report is written, resume works and
reuses the phoneme cache (espeak-ng is not called again), and bad data is left out with a warning."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_tts_train import build_corpus

from voxar.train.logger import read_log

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "egs" / "synth" / "conf" / "content_tiny.yaml"
STEPS = 40
_CACHE: dict[str, Any] = {}

pytestmark = [
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
    pytest.mark.usefixtures("one_thread"),
]


def train(dump: Path, exp: Path, steps: int, *extra: str) -> int:
    """``train_content`` in this process (1 thread)."""
    from voxar.bin.train_content import main

    argv = ["--config", str(CONFIG), "--dump", str(dump), "--exp", str(exp), "--max-steps", str(steps)]
    argv += ["--threads", "1", "--no-progress", "--override", "save_every=20", "tensorboard=false", *extra]
    return main(argv)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    if "paths" not in _CACHE:
        root = tmp_path_factory.mktemp("content_tiny")
        dump = build_corpus(root / "corpus")
        exp = root / "exp"
        assert train(dump, exp, STEPS, "--test-dump", str(dump), "--test-out", str(root / "per.json")) == 0
        _CACHE["paths"] = {"root": root, "dump": dump, "exp": exp, "model": exp / "model", "per": root / "per.json"}
    return _CACHE["paths"]


def test_loss_falls_and_model_dir_loads_and_streams(run):
    from voxar.data.dataset import load_cmvn
    from voxar.models.content import ContentEncoder
    from voxar.modules.streaming import run_chunked

    records = read_log(run["exp"] / "train_log.jsonl", split="train")
    assert records[-1]["step"] == STEPS
    assert records[-1]["loss"] < 0.5 * records[0]["loss"], (records[0]["loss"], records[-1]["loss"])
    assert {r["chunk"] for r in records} != {2.0}  # dynamic chunks: the per-window mean is not always the default
    valid = read_log(run["exp"] / "train_log.jsonl", split="train_subset")
    assert valid and 0.0 <= valid[-1]["per"] and np.isfinite(valid[-1]["ctc"])

    model = ContentEncoder.from_pretrained(run["model"], preset="16k")
    mean, std = load_cmvn(run["dump"])
    assert torch.allclose(model.mel_mean, mean) and torch.allclose(model.mel_std, std.clamp_min(1e-5))
    assert (run["model"] / "tokenizer.json").is_file() and (run["exp"] / "last.pt").is_file()
    from voxar.data.dataset import MelDataset

    mel = MelDataset(run["dump"])[0]["mel"][None]  # (1, 80, T) raw log-mel
    with torch.no_grad():
        assert torch.allclose(run_chunked(model, mel, 4), model(mel).bnf, atol=1e-5)


def test_per_report(run):
    report = json.loads(run["per"].read_text())
    assert report["utts"] == 32 and report["phones"] > 32 * 5
    assert report["per"] >= 0.0 and report["per_full"] >= 0.0 and np.isfinite(report["ctc"])
    assert (report["chunk_size"], report["lookahead_frames"]) == (2, 2)
    assert report["examples"][0]["ref"] and "ˈ" not in report["examples"][0]["ref"]  # stress marks are no targets


def test_resume_continues_without_espeak(run, tmp_path, monkeypatch):
    exp = tmp_path / "exp"
    shutil.copytree(run["exp"], exp)
    assert train(run["dump"], exp, STEPS + 5) == 1  # existing checkpoints without --resume: a clear error
    monkeypatch.setenv("VOXAR_ESPEAK", str(tmp_path / "no-espeak-here"))  # the phoneme cache must be used
    assert train(run["dump"], exp, STEPS + 5, "log_every=5", "--resume") == 0
    records = read_log(exp / "train_log.jsonl", split="train")
    assert [r["step"] for r in records if r["step"] > STEPS] == [STEPS + 5]
    from voxar.train.checkpoint import load_checkpoint

    assert load_checkpoint(exp / "last.pt")["step"] == STEPS + 5
    # a finished run with --resume only evaluates: no training step, the PER report is written
    assert train(run["dump"], exp, STEPS + 5, "--resume", "--test-dump", str(run["dump"])) == 0
    assert [r["step"] for r in read_log(exp / "train_log.jsonl", split="train")] == [r["step"] for r in records]
    assert json.loads((exp / "per_dump.json").read_text())["step"] == STEPS + 5


@pytest.mark.parametrize("size, max_params", [("tiny", 1_000_000), ("small", 12_000_000)])
def test_recipe_configs_load(size, max_params):
    from voxar.bin.train_content import ContentTrainConfig
    from voxar.config import load_config
    from voxar.models.content import ContentEncoder
    from voxar.text import PhonemeTokenizer

    cfg = load_config(ContentTrainConfig, REPO / "egs" / "synth" / "conf" / f"content_{size}.yaml")
    model = ContentEncoder(cfg.model)
    assert sum(p.numel() for p in model.parameters()) <= max_params
    assert model.lookahead <= 2 and model.chunk_size * model.subsample == 4  # 40 ms chunks, <= 20 ms lookahead
    assert cfg.model.vocab_size == PhonemeTokenizer().vocab_size


def test_config_errors_are_one_line(run, tmp_path, capsys):
    assert train(run["dump"], tmp_path / "bad", 1, "model.vocab_size=50") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("train_content: error:") and "vocab_size" in err[-1]
    assert train(run["dump"], tmp_path / "bad2", 1, "model.lookahead=9") == 1
    assert "lookahead" in capsys.readouterr().err.strip().splitlines()[-1]


def test_unusable_utterances_are_left_out(run, tmp_path, caplog):
    from voxar.bin.train_content import ContentData, ContentTrainConfig
    from voxar.config import load_config
    from voxar.text import PhonemeTokenizer

    dump = tmp_path / "dump"
    shutil.copytree(run["dump"], dump)
    lines = (dump / "manifest.jsonl").read_text().splitlines()
    bad = [json.loads(line) for line in lines[:2]]
    bad[0]["text"] = "   "  # nothing to phonemise
    bad[1]["text"] = "the cat sat on the mat " * 8  # far more phones than its frames can carry
    (dump / "manifest.jsonl").write_text("\n".join([json.dumps(b) for b in bad] + lines[2:]) + "\n")
    cfg = load_config(ContentTrainConfig, CONFIG)
    with caplog.at_level(logging.WARNING):
        data = ContentData(dump, PhonemeTokenizer(), cfg, tmp_path / "cache")
    assert len(data) == len(lines) - 2
    assert "left out 1 utterance(s) without phones and 1 too short" in caplog.text
    assert len(list((tmp_path / "cache").glob("dump-*.json"))) == 1
    batch = data.batch([0, 1])
    assert batch["targets"].shape[0] == 2 and (batch["target_lengths"] > 0).all()


def test_spec_augment_masks_with_the_fill_value():
    from voxar.bin.train_content import ContentTrainConfig, spec_augment

    cfg = ContentTrainConfig(freq_masks=2, freq_width=10, time_masks=2, time_width=10)
    mels = torch.randn(3, 80, 100)
    lengths = torch.tensor([100, 60, 100])
    fill = torch.full((80,), 123.0)
    out = spec_augment(mels.clone(), lengths, fill, cfg, np.random.default_rng(0))
    changed = out != mels
    assert changed.any() and (out[changed] == 123.0).all()
    assert not changed[1, :, 60:].any()  # padding is left alone
    again = spec_augment(mels.clone(), lengths, fill, cfg, np.random.default_rng(0))
    assert torch.equal(out, again)


def test_batches_follow_the_step_across_epochs_of_different_lengths():
    """Epochs hold different numbers of batches (length bucketing); a resumed run must continue the same stream of
    batches (and must not spin forever when its step lands beyond a short epoch)."""
    import itertools
    from types import SimpleNamespace

    from voxar.bin.train_content import Trainer

    class Sampler:
        sizes = [3, 2, 4, 1, 3]  # batches per epoch
        calls, epoch = 0, 0

        def __len__(self):
            return self.sizes[self.epoch % 5]

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __iter__(self):
            Sampler.calls += 1
            assert Sampler.calls < 100, "batches() is not advancing"
            return iter([[self.epoch, i] for i in range(self.sizes[self.epoch % 5])])

    def stream(step, n):
        fake = SimpleNamespace(
            step=step, sampler=Sampler(), train_set=SimpleNamespace(batch=lambda ix: ix),
            cfg=SimpleNamespace(seed=0), info=SimpleNamespace(rank=0),
        )  # fmt: skip
        return [b for b, _ in itertools.islice(Trainer.batches(fake), n)]

    full = stream(0, 20)
    assert full[:6] == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [2, 0]]
    for start in (1, 3, 5, 9, 10, 14):
        assert stream(start, 20 - start) == full[start:]
