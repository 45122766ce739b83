"""VC training: a tiny espeak-ng corpus is dumped, a randomly initialised content encoder is saved, and ``train_vc``
(vc_tiny.yaml, shortened with ``--max-steps``) trains on it once per module; then resume, the model directory and
the one-line config errors are checked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from voxar.train.logger import read_log

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "egs" / "synth" / "conf" / "vc_tiny.yaml"
STEPS = 24
VOICES = ["en-us", "en-us+f3", "en-gb+m3"]
SENTENCES = ["The cat sat on the mat.", "A quick brown fox jumps.", "She reads a book.", "Rain fell on the hills."]
# short runs: small batches and segments, validation on two utterances, no TensorBoard
FAST = [
    "max_frames=600", "segment_frames=150", "ref_min_frames=60", "ref_max_frames=120", "warmup=5", "log_every=4",
    "save_every=12", "valid_every=0", "valid_utts=2", "valid_convert=2", "tensorboard=false",
]  # fmt: skip

pytestmark = [
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
]


def build_corpus(root: Path) -> Path:
    """3 espeak-ng voices x 4 sentences as a Kaldi dir, dumped with the 16k preset; returns the dump dir."""
    from voxar.data.dump import dump_features

    wavs, data = root / "wav", root / "data"
    wavs.mkdir(parents=True)
    data.mkdir()
    scp, text, u2s = [], [], []
    for voice in VOICES:
        spk = voice.replace("+", "-")
        for i, sentence in enumerate(SENTENCES):
            utt = f"{spk}_{i:02d}"
            wav = wavs / f"{utt}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", "170", "-w", str(wav), sentence], check=True)
            scp.append(f"{utt} {wav}")
            text.append(f"{utt} {sentence}")
            u2s.append(f"{utt} {spk}")
    for name, lines in (("wav.scp", scp), ("text", text), ("utt2spk", u2s)):
        (data / name).write_text("\n".join(lines) + "\n")
    dump_features(data, root / "dump", "16k", progress=False)
    return root / "dump"


def content_model(dump: Path, path: Path, **overrides) -> Path:
    """A randomly initialised tiny content encoder with the dump's CMVN, saved as a model directory."""
    from voxar.data.dataset import load_cmvn
    from voxar.models.content import ContentConfig, ContentEncoder

    torch.manual_seed(0)
    model = ContentEncoder(ContentConfig.named("tiny", **overrides))
    model.set_mel_stats(*load_cmvn(dump))
    return model.save_pretrained(path)


def train(dump: Path, content: Path, exp: Path, steps: int, *extra: str) -> int:
    """``train_vc`` in this process (1 thread: faster than 2 on these small tensors)."""
    from voxar.bin.train_vc import main

    before = torch.get_num_threads()
    try:
        argv = ["--config", str(CONFIG), "--dump", str(dump), "--exp", str(exp), "--content-model", str(content)]
        argv += ["--max-steps", str(steps), "--threads", "1", "--no-progress", "--override", *FAST, *extra]
        return main(argv)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("vc_tiny")
    dump = build_corpus(root / "corpus")
    content = content_model(dump, root / "content")
    exp = root / "exp"
    assert train(dump, content, exp, STEPS) == 0
    return {"root": root, "dump": dump, "content": content, "exp": exp, "model": exp / "model"}


def test_training_logs_falls_and_exports_a_loadable_model(run):
    records = read_log(run["exp"] / "train_log.jsonl", split="train")
    assert [r["step"] for r in records] == list(range(4, STEPS + 1, 4))
    assert all(r["loss"] is not None and r["mse"] is not None for r in records)
    first, last = records[0], records[-1]
    assert last["mse"] < 0.85 * first["mse"], (first["mse"], last["mse"])
    valid = read_log(run["exp"] / "train_log.jsonl", split="train_subset")
    assert valid and valid[-1]["step"] == STEPS
    assert {"loss", "mse", "tf1_l1", "recon_l1", "mean_l1"} <= set(valid[-1])
    assert (run["exp"] / "last.pt").is_file() and (run["exp"] / "config.yaml").is_file()

    from safetensors.torch import load_file

    from voxar.data.dataset import MelDataset, load_cmvn
    from voxar.models.content import ContentEncoder
    from voxar.models.vc import VCModel

    content = ContentEncoder.from_pretrained(run["content"])
    model = VCModel.from_pretrained(run["model"], content_dim=content.out_dim, preset="16k")
    weights = load_file(str(run["model"] / "model.safetensors"))
    mean, std = load_cmvn(run["dump"])
    assert torch.allclose(weights["mel_mean"], mean) and torch.allclose(weights["mel_std"], std.clamp_min(1e-5))
    ds = MelDataset(run["dump"])
    src, ref = ds[0]["mel"][None], ds[5]["mel"][None]
    with torch.no_grad():
        out = model.convert(content(src).bnf, ref, seed=0)
    assert out.shape == src.shape and torch.isfinite(out).all()


def test_resume_continues_and_refuses_to_overwrite(run, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(run["exp"], exp)
    assert train(run["dump"], run["content"], exp, STEPS + 2) == 1  # checkpoints without --resume: a clear error
    assert train(run["dump"], run["content"], exp, STEPS + 2, "valid_convert=0", "--resume") == 0
    records = read_log(exp / "train_log.jsonl", split="train")
    assert [r["step"] for r in records if r["step"] > STEPS] == [STEPS + 2]
    from voxar.train.checkpoint import load_checkpoint

    assert load_checkpoint(exp / "last.pt")["step"] == STEPS + 2
    assert (exp / "model" / "model.safetensors").is_file()


def test_config_errors_are_one_line(run, tmp_path, capsys):
    # a content encoder whose features do not match model.content_dim is refused before any work
    other = content_model(run["dump"], tmp_path / "content48", bnf_dim=48)
    assert train(run["dump"], other, tmp_path / "bad", 1) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("train_vc: error:") and "content_dim" in err[-1] and "48" in err[-1]
    assert train(run["dump"], tmp_path / "nowhere", tmp_path / "bad2", 1) == 1
    assert "model directory not found" in capsys.readouterr().err
    assert train(run["dump"], run["content"], tmp_path / "bad3", 1, "model.mode=ddpm") == 1
    assert "mode" in capsys.readouterr().err.strip().splitlines()[-1]


def test_crop_segments_keeps_mel_and_content_aligned():
    from voxar.bin.train_vc import crop_segments

    t = torch.arange(20.0)
    mels = torch.stack([t, t + 100])[:, None].repeat(1, 3, 1)  # (2, 3, 20): frame index as value
    bnf = mels[:, :2] * -1
    lens = torch.tensor([20, 12])
    m, b, n = crop_segments(mels, bnf, lens, torch.tensor([5, 9]), seg=6)
    assert n.tolist() == [6, 3] and m.shape == (2, 3, 6)
    assert m[0, 0].tolist() == [5, 6, 7, 8, 9, 10] and m[1, 0, :3].tolist() == [109, 110, 111]
    assert (m[1, :, 3:] == 0).all() and torch.equal(b, -m[:, :2])


def test_warp_mels_moves_spectral_peaks_and_identity_at_one():
    from voxar.bin.train_vc import warp_mels

    m = torch.full((2, 80, 5), -8.0)
    m[:, 30] = 0.0  # a formant-like peak at bin 30
    out = warp_mels(m, torch.tensor([1.0, 1.2]))
    assert torch.equal(out[0], m[0])  # alpha 1: the identity
    assert int(out[1, :, 0].argmax()) == 36  # bin k reads bin k / 1.2: the peak moves to 30 * 1.2
    down = warp_mels(m, torch.tensor([0.8, 0.8]))
    assert int(down[0, :, 0].argmax()) == 24 and down.shape == m.shape


def test_speaker_augmentation_warps_target_and_reference_not_content(run):
    """With spk_warp, training batches carry warps != 1; prepare() warps the target and the reference alike and
    computes the content from the unwarped mel."""
    import argparse

    import numpy as np

    from voxar.bin.train_vc import Trainer, VCData, VCTrainConfig, warp_mels
    from voxar.config import load_config

    cfg = load_config(VCTrainConfig, CONFIG, overrides=["spk_warp=0.2", "segment_frames=0"])
    data = VCData(run["dump"], cfg)
    rng = np.random.default_rng(0)
    plain = data.batch([0, 1], np.random.default_rng(0))
    aug = data.batch([0, 1], rng, augment=True)
    assert torch.equal(plain["warp"], torch.ones(2))
    assert (aug["warp"] != 1).all() and ((aug["warp"].log().abs()) <= 0.2).all()
    args = argparse.Namespace(
        exp=str(run["root"] / "exp_aug"), device="cpu", resume=False, content_model=str(run["content"]),
        dump=str(run["dump"]), valid_dump=None, no_progress=True,
    )  # fmt: skip
    trainer = Trainer(cfg, args)
    kw = trainer.prepare(aug)
    assert torch.allclose(kw["mel"], warp_mels(aug["mels"], aug["warp"]))
    assert torch.allclose(kw["ref_mel"], warp_mels(aug["ref_mels"], aug["warp"]))
    assert torch.allclose(kw["bnf"], trainer.content_of(aug["mels"], aug["mel_lens"]))
    with pytest.raises(Exception, match="spk_warp"):
        VCTrainConfig(spk_warp=0.9)
