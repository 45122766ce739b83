"""Audio I/O, resampling, validation errors and level normalisation (voxar.audio.io / voxar.audio.level)."""

from __future__ import annotations

import io
import logging
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from voxar.audio import (
    check_waveform,
    duration,
    load_audio,
    loudness_db,
    loudness_normalize,
    peak_normalize,
    resample,
    rms_db,
    save_audio,
)
from voxar.errors import VoxarAudioError


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_freq(wav: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.argmax(spec) * sr / len(wav))


def db(x: float) -> float:
    return 20 * np.log10(x)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_lossless_round_trip(tmp_path, ext):
    wav = sine(440, 16000, 0.5)
    path = tmp_path / f"a{ext}"
    save_audio(path, wav, 16000)
    assert sf.info(path).subtype == "PCM_16"
    out, sr = load_audio(path)
    assert sr == 16000
    assert out.dtype == np.float32 and out.shape == wav.shape
    assert np.max(np.abs(out - wav)) <= 1.0 / 32768 + 1e-7


def test_subtype_override(tmp_path):
    wav = sine(440, 16000, 0.25)
    path = tmp_path / "f.wav"
    save_audio(path, wav, 16000, subtype="FLOAT")
    assert sf.info(path).subtype == "FLOAT"
    out, _ = load_audio(path)
    np.testing.assert_array_equal(out, wav)


def _lossy_round_trip(tmp_path, ext: str) -> None:
    wav = sine(1000, 22050, 1.0)
    path = tmp_path / f"a{ext}"
    save_audio(path, wav, 22050)
    out, sr = load_audio(path)
    assert sr == 22050
    assert abs(len(out) - len(wav)) <= 2048
    assert abs(peak_freq(out, sr) - 1000) < 5
    assert abs(db(np.max(np.abs(out))) - db(0.5)) < 1.0


def test_ogg_round_trip(tmp_path):
    _lossy_round_trip(tmp_path, ".ogg")


def test_mp3_round_trip(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile build has no MP3 support")
    try:
        sf.write(tmp_path / "probe.mp3", np.zeros(1000, np.float32), 22050)
    except (sf.SoundFileError, RuntimeError) as e:
        pytest.skip(f"libsndfile cannot encode MP3 here: {e}")
    _lossy_round_trip(tmp_path, ".mp3")


def test_stereo_is_averaged_to_mono(tmp_path):
    left = sine(300, 16000, 0.25, amp=0.4)
    right = sine(700, 16000, 0.25, amp=0.2)
    path = tmp_path / "st.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    out, _ = load_audio(path)
    assert out.ndim == 1
    np.testing.assert_allclose(out, (left + right) / 2, atol=1e-6)


def test_file_like_object(tmp_path):
    buf = io.BytesIO()
    sf.write(buf, sine(440, 8000, 0.2), 8000, format="WAV")
    buf.seek(0)
    out, sr = load_audio(buf, 16000)
    assert sr == 16000 and abs(len(out) - 3200) <= 1
    with pytest.raises(VoxarAudioError, match="^<stream>: "):
        load_audio(io.BytesIO(b"not audio at all" * 10))


def test_save_accepts_torch_and_channel_first(tmp_path):
    wav = sine(440, 16000, 0.2)
    save_audio(tmp_path / "t.wav", torch.from_numpy(wav), 16000)
    save_audio(tmp_path / "u.wav", torch.from_numpy(wav)[None], 16000)
    save_audio(tmp_path / "deep" / "er" / "v.flac", wav[None], 16000)
    for name in ("t.wav", "u.wav", "deep/er/v.flac"):
        out, _ = load_audio(tmp_path / name)
        assert out.shape == wav.shape
    with pytest.raises(ValueError, match="shape"):
        save_audio(tmp_path / "w.wav", np.zeros((2, 100), np.float32) + 0.1, 16000)


def test_duration(tmp_path):
    path = tmp_path / "d.flac"
    save_audio(path, sine(440, 16000, 1.25), 16000)
    assert duration(path) == pytest.approx(1.25)
    with pytest.raises(VoxarAudioError, match="nope.wav"):
        duration(tmp_path / "nope.wav")


# ---------------------------------------------------------------- resampling


def test_resample_keeps_frequency_and_length(tmp_path):
    wav = sine(1000, 44100, 1.0)
    path = tmp_path / "hi.wav"
    sf.write(path, wav, 44100, subtype="FLOAT")
    out, sr = load_audio(path, 16000)
    assert sr == 16000
    assert abs(len(out) - 16000) <= 1
    assert abs(peak_freq(out, 16000) - 1000) < 2
    # amplitude survives the anti-aliasing filter (1 kHz is far below the 8 kHz Nyquist)
    assert abs(np.max(np.abs(out[1000:-1000])) - 0.5) < 0.01


def test_resample_function():
    wav = sine(440, 16000, 0.5)
    np.testing.assert_array_equal(resample(wav, 16000, 16000), wav)
    up = resample(wav, 16000, 48000)
    assert up.dtype == np.float32 and abs(len(up) - 3 * len(wav)) <= 1
    assert abs(peak_freq(up, 48000) - 440) < 3
    with pytest.raises(ValueError):
        resample(wav, 0, 16000)


def test_bad_target_rate(tmp_path):
    path = tmp_path / "a.wav"
    save_audio(path, sine(440, 16000, 0.1), 16000)
    with pytest.raises(ValueError):
        load_audio(path, 0)
    with pytest.raises(ValueError):
        load_audio(path, -16000)


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(VoxarAudioError, match="missing.wav: file not found"):
        load_audio(tmp_path / "missing.wav")


def test_directory(tmp_path):
    d = tmp_path / "adir.wav"
    d.mkdir()
    with pytest.raises(VoxarAudioError, match="adir.wav: is a directory"):
        load_audio(d)


def test_corrupt_bytes(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x00\x00garbage" + bytes(range(256)) * 4)
    with pytest.raises(VoxarAudioError, match=r"corrupt.wav: cannot read audio") as e:
        load_audio(path)
    assert str(e.value).startswith(str(path))
    assert "\n" not in str(e.value)


def test_unsupported_text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n" * 100)
    with pytest.raises(VoxarAudioError, match="notes.txt"):
        load_audio(path)


def test_zero_length(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(VoxarAudioError, match="empty.wav: zero-length"):
        load_audio(path)


def test_too_long_checked_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    save_audio(path, sine(440, 8000, 2.0), 8000)

    def no_read(*args, **kwargs):
        raise AssertionError("samples were decoded before the duration check")

    monkeypatch.setattr(sf.SoundFile, "read", no_read)
    with pytest.raises(VoxarAudioError, match=r"long.wav: audio is 2.0 s long, more than the limit of 1.5 s"):
        load_audio(path, max_seconds=1.5)
    monkeypatch.undo()
    wav, _ = load_audio(path, max_seconds=None)
    assert len(wav) == 16000


def test_nan_samples(tmp_path):
    wav = sine(440, 16000, 0.1)
    wav[100] = np.nan
    wav[200] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, wav, 16000, subtype="FLOAT")
    with pytest.raises(VoxarAudioError, match="nan.wav: 2 of 1600 samples are NaN or infinite"):
        load_audio(path)


def test_silence_with_require_speech(tmp_path):
    path = tmp_path / "quiet.wav"
    sf.write(path, sine(440, 16000, 0.5, amp=10 ** (-70 / 20)), 16000, subtype="FLOAT")
    wav, _ = load_audio(path)  # allowed by default
    assert len(wav) == 8000
    with pytest.raises(VoxarAudioError, match=r"quiet.wav: audio is silent \(peak -70.0 dBFS"):
        load_audio(path, require_speech=True)
    load_audio(path, require_speech=True, silence_db=-80.0)
    zeros = tmp_path / "zeros.wav"
    save_audio(zeros, np.zeros(1000, np.float32), 16000)
    with pytest.raises(VoxarAudioError, match="zeros.wav: audio is silent"):
        load_audio(zeros, require_speech=True)


def test_check_waveform():
    x = np.ones(4, np.float32) * 0.1
    assert check_waveform(torch.from_numpy(x), "t").shape == (4,)
    with pytest.raises(VoxarAudioError, match="buf: zero-length"):
        check_waveform(np.zeros(0, np.float32), "buf")
    with pytest.raises(VoxarAudioError, match="buf: 1 of 4 samples"):
        check_waveform(np.array([0, np.nan, 0, 0], np.float32), "buf")
    with pytest.raises(VoxarAudioError, match="floating-point"):
        check_waveform(np.zeros(4, np.int16), "buf")


# ---------------------------------------------------------------- saving


def test_save_rejects_nan_and_leaves_nothing(tmp_path):
    wav = sine(440, 16000, 0.1)
    wav[5] = np.nan
    path = tmp_path / "bad.wav"
    with pytest.raises(VoxarAudioError, match="bad.wav"):
        save_audio(path, wav, 16000)
    assert list(tmp_path.iterdir()) == []


def test_save_is_atomic(tmp_path):
    path = tmp_path / "out" / "a.wav"
    save_audio(path, sine(440, 16000, 0.2), 16000)
    save_audio(path, sine(880, 16000, 0.3), 16000)  # overwrite in place
    assert [p.name for p in path.parent.iterdir()] == ["a.wav"]
    assert duration(path) == pytest.approx(0.3)


def test_failed_write_keeps_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.ogg"
    save_audio(path, sine(440, 16000, 0.2), 16000)
    before = path.read_bytes()
    with pytest.raises(VoxarAudioError, match="a.ogg: cannot write audio"):
        save_audio(path, sine(440, 16000, 0.2), 16000, subtype="PCM_16")  # not valid for OGG
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.ogg"]


def test_temp_file_removed_when_rename_fails(tmp_path, monkeypatch):
    path = tmp_path / "a.wav"
    save_audio(path, sine(440, 16000, 0.2), 16000)
    before = path.read_bytes()

    def broken_replace(src, dst):
        assert src != dst and os.path.exists(src)  # the new audio was fully written under a temp name
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(VoxarAudioError, match="a.wav: cannot write audio .*disk on fire"):
        save_audio(path, sine(880, 16000, 0.5), 16000)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]


def test_save_unknown_extension(tmp_path):
    with pytest.raises(VoxarAudioError, match=r"x.aiff: unsupported extension"):
        save_audio(tmp_path / "x.aiff", sine(440, 16000, 0.1), 16000)
    with pytest.raises(ValueError):
        save_audio(tmp_path / "x.wav", sine(440, 16000, 0.1), 0)


def test_save_clips_with_warning(tmp_path, caplog):
    wav = sine(440, 16000, 0.1, amp=1.5)
    path = tmp_path / "loud.wav"
    with caplog.at_level(logging.WARNING, logger="voxar.audio.io"):
        save_audio(path, wav, 16000, subtype="FLOAT")
    assert any("clipped" in r.getMessage() and "loud.wav" in r.getMessage() for r in caplog.records)
    out, _ = load_audio(path)
    assert np.max(np.abs(out)) == pytest.approx(1.0)
    np.testing.assert_allclose(out, np.clip(wav, -1, 1))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="voxar.audio.io"):
        save_audio(tmp_path / "ok.wav", sine(440, 16000, 0.1), 16000)
    assert not caplog.records


# ---------------------------------------------------------------- levels


@pytest.mark.parametrize("target", [-1.0, -6.0, -20.0])
def test_peak_normalize(target):
    wav = sine(440, 16000, 0.5, amp=0.1)
    out = peak_normalize(wav, target)
    assert out.dtype == np.float32
    assert abs(db(np.max(np.abs(out))) - target) < 0.01
    t = peak_normalize(torch.from_numpy(wav), target)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    assert abs(db(t.abs().max().item()) - target) < 0.01


def test_rms_db():
    assert rms_db(sine(1000, 16000, 1.0, amp=1.0)) == pytest.approx(db(1 / np.sqrt(2)), abs=0.01)
    assert rms_db(np.zeros(100, np.float32)) == float("-inf")


def test_loudness_gating_ignores_silence():
    sr = 16000
    active = (0.05 * np.random.default_rng(0).standard_normal(3 * sr)).astype(np.float32)
    wav = np.concatenate([active, np.zeros(3 * sr, np.float32)])
    active_db = 10 * np.log10(np.mean(active.astype(np.float64) ** 2))
    # the gated measure tracks the active part; plain RMS is ~3 dB lower because of the silence
    assert abs(loudness_db(wav, sr) - active_db) < 0.5
    assert rms_db(wav) < active_db - 2.5
    out = loudness_normalize(wav, sr, -23.0)
    assert out.dtype == np.float32 and out.shape == wav.shape
    out_active_db = 10 * np.log10(np.mean(out[: 3 * sr].astype(np.float64) ** 2))
    assert abs(out_active_db - (-23.0)) < 0.5


@pytest.mark.parametrize("target", [-30.0, -23.0, -16.0])
def test_loudness_normalize_reaches_target(target):
    sr = 22050
    t = np.arange(2 * sr) / sr
    wav = (0.02 * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    out = loudness_normalize(wav, sr, target)
    assert abs(rms_db(out) - target) < 0.5
    assert abs(loudness_db(out, sr) - target) < 0.01


def test_loudness_normalize_limits_peak():
    sr = 16000
    wav = np.zeros(sr, np.float32)
    wav[::800] = 0.9  # sparse clicks: very high crest factor
    wav += 0.01 * np.random.default_rng(1).standard_normal(sr).astype(np.float32)
    out = loudness_normalize(wav, sr, -10.0, max_peak_db=-1.0)
    assert db(np.max(np.abs(out))) == pytest.approx(-1.0, abs=0.01)
    assert loudness_db(out, sr) < -10.0


def test_loudness_normalize_silence_unchanged():
    zeros = np.zeros(16000, np.float32)
    out = loudness_normalize(zeros, 16000)
    np.testing.assert_array_equal(out, zeros)
    assert np.all(np.isfinite(out))
    tiny = np.full(16000, 1e-5, np.float32)  # -100 dB: below the absolute gate
    np.testing.assert_array_equal(loudness_normalize(tiny, 16000), tiny)
    np.testing.assert_array_equal(peak_normalize(zeros), zeros)


def test_loudness_short_signal():
    wav = sine(500, 16000, 0.1, amp=0.3)  # shorter than one 400 ms block
    out = loudness_normalize(wav, 16000, -20.0)
    assert abs(rms_db(out) + 20.0) < 0.5
