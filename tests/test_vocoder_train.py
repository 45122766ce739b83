"""Vocoder training: losses, discriminators, audio segments, and short ``train_vocoder`` runs (resume, GAN, DDP)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from voxar.data.segments import AudioSegmentDataset, SegmentBatchSampler
from voxar.models.discriminators import (
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    VocoderDiscriminator,
    split_outputs,
)
from voxar.models.losses import (
    MelL1Loss,
    MultiResolutionSTFTLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)
from voxar.train.logger import read_log

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "egs" / "synth" / "conf" / "vocoder_tiny.yaml"
SR = 16000


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------------------- losses


def _signal(seed: int, n: int = 4000) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    f0 = 100 + 200 * torch.rand(2, 1, generator=g)
    return 0.3 * torch.sin(2 * torch.pi * f0 * t) + 0.02 * torch.randn(2, n, generator=g)  # (2, n)


def test_reconstruction_losses_zero_for_identical_positive_otherwise():
    from voxar.audio import MelConfig

    y = _signal(0)
    stft, mel = MultiResolutionSTFTLoss(((256, 64, 256), (512, 128, 512))), MelL1Loss(MelConfig.preset("16k"))
    for loss in (stft, mel):
        assert loss(y, y).item() == 0.0
        assert loss(_signal(1), y).item() > 0.1
        assert 0 < loss(0.9 * y, y).item() < loss(0.3 * y, y).item()
    silent = torch.zeros(2, 4000, requires_grad=True)  # finite gradients at silence
    (stft(silent, y) + mel(silent, y)).backward()
    assert torch.isfinite(silent.grad).all()
    with pytest.raises(ValueError, match="same"):
        stft(y[:, :100], y)


def test_adversarial_and_feature_matching_losses():
    pos, neg = [torch.full((2, 5), 2.0)], [torch.full((2, 5), -2.0)]
    assert discriminator_loss(pos, neg, "hinge").item() == 0.0  # confident and right: no loss
    assert discriminator_loss(neg, pos, "hinge").item() == pytest.approx(6.0)
    assert discriminator_loss([torch.ones(2, 5)], [torch.zeros(2, 5)], "lsgan").item() == 0.0
    assert generator_loss(pos, "hinge").item() == 0.0 and generator_loss(neg, "hinge").item() == pytest.approx(3.0)
    assert generator_loss([torch.zeros(2, 5)], "lsgan").item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="hinge"):
        generator_loss(pos, "wgan")
    fm = [[torch.randn(2, 3, 4), torch.randn(2, 7)] for _ in range(2)]
    assert feature_matching_loss(fm, fm).item() == 0.0
    assert feature_matching_loss(fm, [[f + 1 for f in d] for d in fm]).item() == pytest.approx(2.0)  # 2 layers


def test_discriminator_shapes_and_split():
    resolutions = ((256, 64, 256), (512, 128, 512), (128, 32, 128))
    disc = VocoderDiscriminator((2, 3, 5, 7, 11), (4, 8), resolutions, resolution_channels=4)
    wav = _signal(0, 3001)  # a length no period divides
    logits, fmaps = disc(wav)
    assert len(logits) == len(fmaps) == 8
    for score, fmap in zip(logits, fmaps, strict=True):
        assert score.dim() == 2 and score.shape[0] == 2 and torch.isfinite(score).all()
        assert all(f.shape[0] == 2 for f in fmap)
    assert [len(f) for f in fmaps[:5]] == [4] * 5  # 2 strided convs + 1 conv + post
    assert [len(f) for f in fmaps[5:]] == [6] * 3
    mpd_logits, _ = MultiPeriodDiscriminator((2, 3), (4, 8))(wav)
    rows = [math.ceil(math.ceil(math.ceil(3001 / p) / 3) / 3) for p in (2, 3)]  # fold, then two stride-3 convs
    assert [tuple(x.shape) for x in mpd_logits] == [(2, rows[0] * 2), (2, rows[1] * 3)] == [(2, 334), (2, 336)]
    mrd_logits, _ = MultiResolutionDiscriminator(((256, 64, 256),), 4)(wav)
    assert mrd_logits[0].shape[0] == 2
    (real, fake) = split_outputs(disc(torch.cat([wav, 0.5 * wav])), 2)
    torch.testing.assert_close(real[0][0], logits[0], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(fake[0][0], logits[0])
    generator_loss(fake[0]).backward()
    assert all(p.grad is not None for p in disc.parameters())


# --------------------------------------------------------------------------------------------------- data


def _make_corpus(root: Path, n: int = 6, seconds: float = 0.6, segments: bool = False) -> Path:
    """A Kaldi dir of harmonic tones with vibrato and a little noise, 16 kHz."""
    wav_dir, data = root / "wav", root / "data"
    wav_dir.mkdir(parents=True)
    data.mkdir()
    rng = np.random.default_rng(0)
    scp, text, utt2spk = [], [], []
    for i in range(n):
        t = np.arange(int(seconds * SR)) / SR
        f0 = 110 + 25 * i + 10 * np.sin(2 * np.pi * 3 * t)
        phase = 2 * np.pi * np.cumsum(f0) / SR
        wav = sum(0.2 / k * np.sin(k * phase) for k in range(1, 6)) + 0.01 * rng.standard_normal(len(t))
        sf.write(wav_dir / f"u{i}.wav", wav.astype(np.float32), SR)
        scp.append(f"u{i} {wav_dir / f'u{i}.wav'}")
        text.append(f"u{i} tone {i}")
        utt2spk.append(f"u{i} s{i % 2}")
    for name, lines in (("wav.scp", scp), ("text", text), ("utt2spk", utt2spk)):
        (data / name).write_text("\n".join(lines) + "\n")
    if segments:
        (data / "segments").write_text("".join(f"u{i} u{i} 0.10 0.30\n" for i in range(n)))
    return data


def test_audio_segments_are_deterministic_crops(tmp_path):
    data = _make_corpus(tmp_path, n=3, seconds=0.5)
    ds = AudioSegmentDataset(data, SR, 1600, seed=7, cache=True)
    assert len(ds) == 3 and ds[0].shape == (1600,) and ds[0].dtype == torch.float32
    assert torch.equal(ds[(2, 1)], ds[(2, 1)]) and torch.equal(ds[1], ds[(0, 1)])
    crops = {tuple(ds[(e, 1)][:4].tolist()) for e in range(6)}
    assert len(crops) > 1  # a new crop each epoch
    full = ds.utterance(1)
    c = ds[(3, 1)].numpy()
    start = int(np.flatnonzero(np.isclose(full, c[0]) & np.isclose(np.roll(full, -1), c[1]))[0])
    np.testing.assert_array_equal(full[start : start + 1600], c)  # a true crop of the utterance
    long = AudioSegmentDataset(data, SR, 10000)
    x = long[0].numpy()
    assert np.all(x[8000:] == 0) and np.any(x[:8000] != 0)  # short utterances are zero-padded
    seg = AudioSegmentDataset(_make_corpus(tmp_path / "s", n=2, segments=True), 8000, 800)
    assert len(seg.utterance(0)) == 1600  # 0.2 s of the recording, resampled to 8 kHz


def test_segment_batch_sampler_ranks_and_resume():
    samplers = [SegmentBatchSampler(10, 2, seed=3, rank=r, world_size=2) for r in range(2)]
    assert samplers[0].steps_per_epoch == 2
    epoch0 = [k for s in samplers for step in range(2) for k in s.batch(step)]
    indices = [i for _, i in epoch0]
    assert len(set(indices)) == 8 and set(indices) <= set(range(10)) and {e for e, _ in epoch0} == {0}  # disjoint
    assert samplers[0].batch(2)[0][0] == 1  # step 2 starts epoch 1
    resumed = SegmentBatchSampler(10, 2, seed=3, rank=0, world_size=2, start_step=5)
    it = iter(resumed)
    assert [next(it) for _ in range(3)] == [samplers[0].batch(s) for s in (5, 6, 7)]
    tiny = SegmentBatchSampler(3, 8, seed=0)
    assert len(tiny.batch(0)) == 8 and tiny.steps_per_epoch == 1


# ------------------------------------------------------------------------------------------------- training runs

SMALL = [
    "model.dim=32",
    "model.intermediate_dim=64",
    "model.num_layers=1",
    "segment_seconds=0.16",
    "batch_size=4",
    "lr=3e-3",
    "warmup=5",
    "log_every=5",
    "valid_every=0",
    "save_every=10",
    "keep_last=2",
    "valid_utts=2",
    "valid_max_seconds=0.4",
    "tensorboard=false",
    "stft_resolutions=[[256,64,256],[512,128,512]]",
]
GAN = [
    "disc_periods=[2,3]",
    "disc_period_channels=[4,8]",
    "disc_resolutions=[[256,64,256]]",
    "disc_resolution_channels=4",
]


def test_gta_segments_pair_audio_crops_with_the_same_mel_frames(tmp_path):
    """With the recordings' own mels as the "GTA" dump, each crop's GTA frames equal the vocoder's mel of the crop
    (away from the crop's padded edges); past the end of a short utterance the frames are silence; the GTA share
    follows gta_prob; a mel of another length than its audio is an error."""
    from voxar.audio import MelConfig
    from voxar.data.dump import dump_features
    from voxar.data.segments import GTASegmentDataset
    from voxar.errors import VoxarDataError

    data = _make_corpus(tmp_path, n=4, seconds=0.5)
    dump = tmp_path / "dump"
    dump_features(data, dump, "16k", progress=False)
    cfg = MelConfig.preset("16k")
    mel_of = MelL1Loss(cfg).mel
    ds = GTASegmentDataset(data, dump, SR, 3200, cfg.hop_length, gta_prob=0.5, seed=3)
    uses = []
    for epoch in range(6):
        for i in range(len(ds)):
            wav, gta, use = ds[(epoch, i)]
            uses.append(use)
            assert wav.shape == (3200,) and gta.shape == (cfg.n_mels, 21)
            own = mel_of(wav[None])[0]  # (M, 21)
            torch.testing.assert_close(gta[:, 4:-4], own[:, 4:-4], atol=2e-3, rtol=0)
    assert 0 < sum(uses) < len(uses)
    long = GTASegmentDataset(data, dump, SR, 16000, cfg.hop_length)
    wav, gta, use = long[0]
    assert use and torch.all(wav[8000:] == 0)
    assert torch.allclose(gta[:, 52:], torch.tensor(math.log(cfg.log_floor)))  # 0.5 s = frames 0..50
    torch.testing.assert_close(gta[:, 4:46], mel_of(wav[None])[0, :, 4:46], atol=2e-3, rtol=0)
    with pytest.raises(ValueError, match="multiple"):
        GTASegmentDataset(data, dump, SR, 3201, cfg.hop_length)
    short = GTASegmentDataset(_make_corpus(tmp_path / "other", n=4, seconds=0.3), dump, SR, 3200, cfg.hop_length)
    with pytest.raises(VoxarDataError, match="frames"):
        short[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _make_corpus(tmp_path_factory.mktemp("corpus"))


def _train(corpus: Path, exp: Path, *extra: str, overrides: list[str] = ()) -> int:
    from voxar.bin.train_vocoder import main

    args = ["--config", str(CONFIG), "--data", str(corpus), "--exp", str(exp), "--device", "cpu", "--threads", "1"]
    return main([*args, "--no-progress", *extra, "--override", *SMALL, *overrides])


def _weights(exp: Path) -> dict[str, torch.Tensor]:
    return torch.load(exp / "last.pt", weights_only=True)["model"]


def test_train_vocoder_loss_falls_writes_model_and_resumes(corpus, tmp_path, capsys):
    from voxar.models.vocoder import Vocoder

    exp = tmp_path / "exp"
    assert _train(corpus, exp, "--max-steps", "30") == 0
    train = read_log(exp / "train_log.jsonl", "train")
    assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30]
    assert train[-1]["loss"] < 0.85 * train[0]["loss"] and train[-1]["mel"] < train[0]["mel"]
    valid = read_log(exp / "train_log.jsonl", "train_resynth")
    assert len(valid) == 1 and valid[0]["mel_l1"] > 0
    assert sorted(p.name for p in exp.glob("checkpoint-*.pt")) == ["checkpoint-20.pt", "checkpoint-30.pt"]
    vocoder = Vocoder.from_pretrained(exp / "model")
    assert vocoder.cfg.dim == 32
    ckpt = torch.load(exp / "last.pt", weights_only=True)
    for name, value in vocoder.state_dict().items():  # the model dir holds the EMA weights
        torch.testing.assert_close(value, ckpt["ema"]["shadow"][name].to(value.dtype))
    with torch.no_grad():
        assert vocoder(torch.randn(1, 80, 10)).shape == (1, 10 * 160)

    assert _train(corpus, exp, "--max-steps", "40") == 1  # existing checkpoints need --resume
    assert "--resume" in capsys.readouterr().err
    assert _train(corpus, exp, "--max-steps", "40", "--resume") == 0
    steps = [r["step"] for r in read_log(exp / "train_log.jsonl", "train")]
    assert steps == [5, 10, 15, 20, 25, 30, 35, 40]
    assert torch.load(exp / "last.pt", weights_only=True)["step"] == 40
    assert _train(corpus, exp, "--resume", overrides=["model.dim=16"]) == 1  # a different model: refused
    assert "model.dim" in capsys.readouterr().err


def test_sigterm_checkpoints_and_resume_is_exact(corpus, tmp_path, monkeypatch):
    from voxar.bin.train_vocoder import Trainer

    assert _train(corpus, tmp_path / "straight", "--max-steps", "12") == 0
    original = Trainer.train_step

    def step_then_signal(self, wav):
        out = original(self, wav)
        if self.step == 6:  # step 7 is running: SIGTERM arrives mid-training
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    exp = tmp_path / "interrupted"
    assert _train(corpus, exp, "--max-steps", "12") == 128 + signal.SIGTERM
    assert torch.load(exp / "last.pt", weights_only=True)["step"] == 7
    assert not (exp / "model").exists()
    monkeypatch.setattr(Trainer, "train_step", original)
    assert _train(corpus, exp, "--max-steps", "12", "--resume") == 0
    straight, resumed = _weights(tmp_path / "straight"), _weights(exp)
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name


def test_gan_losses_switch_on(corpus, tmp_path):
    exp = tmp_path / "gan"
    overrides = [*GAN, "gan_start_step=4", "log_every=2", "save_every=0", "adv_loss=lsgan"]
    assert _train(corpus, exp, "--max-steps", "6", overrides=overrides) == 0
    train = read_log(exp / "train_log.jsonl", "train")
    assert "disc" not in train[1] and {"disc", "adv", "fm"} <= set(train[2])  # steps 4 and 6
    ckpt = torch.load(exp / "last.pt", weights_only=True)
    assert "disc" in ckpt["optimizers"] and "discriminator" in ckpt["extra"]


def test_init_from_warm_starts_the_generator(corpus, tmp_path, monkeypatch, capsys):
    """--init-from copies the source's EMA generator exactly (fresh step and discriminators); a mismatch is refused."""
    from voxar.bin.train_vocoder import Trainer
    from voxar.models.vocoder import Vocoder

    src = tmp_path / "src"
    assert _train(corpus, src, "--max-steps", "10") == 0
    source = Vocoder.from_pretrained(src / "model").state_dict()
    seen = {}
    original = Trainer.train_step

    def record_first(self, wav):
        if not seen:
            seen.update(step=self.step, gen={k: v.clone() for k, v in self.gen.state_dict().items()})
        return original(self, wav)

    monkeypatch.setattr(Trainer, "train_step", record_first)
    exp = tmp_path / "gan"
    overrides = [*GAN, "gan_start_step=0", "log_every=2", "save_every=0"]
    assert _train(corpus, exp, "--max-steps", "2", "--init-from", str(src / "model"), overrides=overrides) == 0
    assert seen["step"] == 0 and seen["gen"].keys() == source.keys()
    for name, value in source.items():
        assert torch.equal(seen["gen"][name], value), name
    assert {"disc", "adv", "fm"} <= set(read_log(exp / "train_log.jsonl", "train")[0])
    bad = ["--max-steps", "2", "--init-from", str(src / "model")]
    assert _train(corpus, tmp_path / "bad", *bad, overrides=["model.dim=16"]) == 1
    assert "--init-from" in capsys.readouterr().err


@pytest.mark.slow
def test_train_vocoder_ddp_under_torchrun(corpus, tmp_path):
    """``torchrun --nproc_per_node 2`` with gloo on CPU, GAN on: ranks agree and rank 0 writes the files."""
    exp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "voxar.bin.train_vocoder", "--config", str(CONFIG), "--data", str(corpus), "--exp", str(exp)]
    cmd += ["--device", "cpu", "--max-steps", "4", "--no-progress", "--override", *SMALL, *GAN, "gan_start_step=2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "batch 4 x 2 process(es)" in r.stderr
    ckpt = torch.load(exp / "last.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["rng"]["world_size"] == 2
    assert (exp / "model" / "model.safetensors").is_file()
