"""Log-mel features (voxar.audio.features) against an independent librosa reference."""

from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import pytest
import torch

from voxar.audio import PRESETS, LogMelSpectrogram, MelConfig, log_mel
from voxar.config import from_dict, to_dict
from voxar.errors import VoxarConfigError

PRESET_NAMES = ["16k", "vocos24k"]


def signal(kind: str, sr: int, n: int, seed: int = 0) -> np.ndarray:
    """Test signals with a -50 dBFS noise floor, like any real recording.

    Without a floor, mel bands >100 dB below the loudest band fall inside float32 STFT round-off (relative ~1e-7 of
    the peak) and their logs are numerically meaningless in any float32 implementation.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    if kind == "chirp":  # 50 Hz -> just below Nyquist
        f1 = sr / 2 - 100
        y = 0.5 * np.sin(2 * np.pi * (50 * t + (f1 - 50) / (2 * t[-1]) * t**2))
    elif kind == "noise":
        y = 0.3 * rng.standard_normal(n)
    elif kind == "am":  # speech-like: 140 Hz harmonic series, 4 Hz syllabic envelope
        harmonics = sum(np.sin(2 * np.pi * k * 140 * t) / k for k in range(1, 30))
        y = 0.25 * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * harmonics
    else:
        raise ValueError(kind)
    return (y + 3e-3 * rng.standard_normal(n)).astype(np.float32)


def librosa_reference(y: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """Log-mel computed with librosa directly from the config fields (float64)."""
    mel = librosa.feature.melspectrogram(
        y=y.astype(np.float64),
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=cfg.power,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2,
        htk=cfg.mel_scale == "htk",
        norm=cfg.mel_norm,
    )
    return np.log(np.maximum(mel, 1e-5))


@pytest.mark.parametrize("name", PRESET_NAMES)
@pytest.mark.parametrize("kind", ["chirp", "noise", "am"])
@pytest.mark.parametrize("seconds", [0.37, 1.0, 2.013])
def test_matches_librosa(name, kind, seconds):
    cfg = MelConfig.preset(name)
    n = int(seconds * cfg.sample_rate)
    y = signal(kind, cfg.sample_rate, n)
    ref = librosa_reference(y, cfg)
    out = log_mel(y, cfg)
    assert out.dtype == np.float32
    assert out.shape == ref.shape == (cfg.n_mels, 1 + n // cfg.hop_length)
    assert np.max(np.abs(out - ref)) < 1e-3


def test_vocos24k_is_the_published_extractor():
    """The fields the Vocos mel-24khz checkpoint was trained with (torchaudio MelSpectrogram defaults)."""
    cfg = MelConfig.preset("vocos24k")
    assert (cfg.sample_rate, cfg.n_fft, cfg.win_length, cfg.hop_length, cfg.n_mels) == (24000, 1024, 1024, 256, 100)
    assert (cfg.f_min, cfg.fmax_hz, cfg.mel_scale, cfg.mel_norm) == (0.0, 12000.0, "htk", None)
    assert (cfg.power, cfg.log_floor, cfg.center, cfg.pad_mode) == (1.0, 1e-5, True, "reflect")


def test_16k_preset_is_default():
    assert MelConfig() == MelConfig.preset("16k")
    cfg = MelConfig()
    assert (cfg.sample_rate, cfg.n_fft, cfg.win_length, cfg.hop_length, cfg.n_mels) == (16000, 1024, 640, 160, 80)
    assert (cfg.fmax_hz, cfg.mel_scale, cfg.mel_norm, cfg.power) == (8000.0, "slaney", "slaney", 1.0)


@pytest.mark.parametrize("n", [513, 1000, 24000, 24255, 24256, 24257, 50001])
def test_vocos24k_frame_count(n):
    cfg = MelConfig.preset("vocos24k")
    out = LogMelSpectrogram(cfg)(torch.zeros(n) + 0.01)
    assert out.shape == (100, 1 + n // 256) and cfg.frames(n) == 1 + n // 256


@pytest.mark.parametrize("n", [513, 1600, 16000, 16159, 16160, 33333])
def test_16k_frame_count(n):
    cfg = MelConfig.preset("16k")
    out = LogMelSpectrogram(cfg)(torch.zeros(n) + 0.01)
    assert out.shape == (80, 1 + n // 160) and cfg.frames(n) == 1 + n // 160


def test_frames_without_center():
    cfg = dataclasses.replace(MelConfig(), center=False)
    assert cfg.frames(1023) == 0 and cfg.frames(1024) == 1 and cfg.frames(1024 + 160) == 2
    y = torch.from_numpy(signal("noise", 16000, 5000))
    assert LogMelSpectrogram(cfg)(y).shape == (80, cfg.frames(5000))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_batched_equals_per_item(name):
    cfg = MelConfig.preset(name)
    n = int(0.8 * cfg.sample_rate)
    batch = np.stack([signal(k, cfg.sample_rate, n, seed=i) for i, k in enumerate(["chirp", "noise", "am"])])
    module = LogMelSpectrogram(cfg)
    out = module(torch.from_numpy(batch))
    assert out.shape == (3, cfg.n_mels, cfg.frames(n))
    for i in range(3):
        torch.testing.assert_close(out[i], module(torch.from_numpy(batch[i])), atol=1e-5, rtol=0)


def test_silence_hits_the_floor_and_power_two():
    cfg = MelConfig()
    out = log_mel(np.zeros(4000, np.float32), cfg)
    np.testing.assert_allclose(out, np.log(1e-5), rtol=1e-6)
    y = signal("am", 16000, 8000)
    cfg2 = dataclasses.replace(cfg, power=2.0, mel_scale="htk", mel_norm=None, f_max=None, win_length=1024)
    assert np.max(np.abs(log_mel(y, cfg2) - librosa_reference(y, cfg2))) < 1e-3


def test_input_types_and_errors():
    cfg = MelConfig()
    y = signal("noise", 16000, 4000)
    np.testing.assert_allclose(log_mel(torch.from_numpy(y).double(), cfg), log_mel(y, cfg), atol=1e-6)
    assert log_mel(y[None], cfg).shape == (1, 80, cfg.frames(4000))
    module = LogMelSpectrogram(cfg)
    with pytest.raises(ValueError, match="too short"):
        module(torch.zeros(100))
    with pytest.raises(ValueError, match="shape"):
        module(torch.zeros(1, 1, 4000))


def test_buffers_follow_module_but_stay_out_of_state_dict():
    module = LogMelSpectrogram(MelConfig.preset("vocos24k"))
    names = dict(module.named_buffers())
    assert names["mel_basis"].shape == (100, 513) and names["mel_basis"].dtype == torch.float32
    assert names["window"].shape == (1024,)
    assert module.state_dict() == {}
    fb = names["mel_basis"].numpy()
    assert np.all(fb >= 0) and np.all(fb.sum(axis=1) > 0)  # every filter is non-empty


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                pytest.mark.gpu,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
            ],
        ),
    ],
)
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_device_matches_cpu(device, name):
    cfg = MelConfig.preset(name)
    batch = torch.from_numpy(np.stack([signal("am", cfg.sample_rate, cfg.sample_rate, seed=s) for s in (0, 1)]))
    cpu = LogMelSpectrogram(cfg)(batch)
    module = LogMelSpectrogram(cfg).to(device)
    assert module.mel_basis.device.type == device and module.window.device.type == device
    out = module(batch.to(device))
    assert out.device.type == device and out.dtype == torch.float32
    torch.testing.assert_close(out.cpu(), cpu, atol=1e-3, rtol=0)


def test_unknown_preset():
    with pytest.raises(VoxarConfigError, match=r"unknown mel preset 'vocos'.*16k, vocos24k"):
        MelConfig.preset("vocos")


def test_preset_returns_a_copy():
    cfg = MelConfig.preset("16k")
    cfg.n_mels = 40
    assert PRESETS["16k"].n_mels == 80 and MelConfig.preset("16k").n_mels == 80


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_config_round_trip(name):
    cfg = MelConfig.preset(name)
    data = to_dict(cfg)
    assert from_dict(MelConfig, data) == cfg
    data_yamlish = {**data, "f_min": 0, "sample_rate": cfg.sample_rate}  # YAML ints where floats are expected
    assert from_dict(MelConfig, data_yamlish) == cfg


@pytest.mark.parametrize(
    "bad",
    [
        {"mel_scale": "bark"},
        {"mel_norm": "l2"},
        {"pad_mode": "edge"},
        {"win_length": 2048},
        {"f_max": 9000.0},
        {"power": 3.0},
        {"hop_length": 0},
        {"log_floor": 0.0},
        {"colour": "blue"},
    ],
)
def test_config_validation(bad):
    with pytest.raises(VoxarConfigError):
        from_dict(MelConfig, bad)


@pytest.mark.parametrize("preset", ["16k", "vocos24k"])
def test_numpy_mel_filterbank_equals_librosa_and_serves_without_it(preset, monkeypatch):
    """Without librosa (a minimal inference machine) the filterbank comes from voxar's own numpy definition,
    which equals ``librosa.filters.mel`` for both presets and an f_min / f_max band."""
    import builtins
    import dataclasses

    from voxar.audio.features import MelConfig, mel_filterbank, mel_filterbank_numpy

    cfg = MelConfig.preset(preset)
    want = mel_filterbank(cfg)
    np.testing.assert_allclose(mel_filterbank_numpy(cfg), want, atol=1e-6, rtol=0)
    band = dataclasses.replace(cfg, f_min=60.0, f_max=7000.0)
    np.testing.assert_allclose(mel_filterbank_numpy(band), mel_filterbank(band), atol=1e-6, rtol=0)
    real_import = builtins.__import__

    def no_librosa(name, *args, **kwargs):
        if name == "librosa":
            raise ImportError("no librosa here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_librosa)
    np.testing.assert_allclose(mel_filterbank(cfg), want, atol=1e-6, rtol=0)
