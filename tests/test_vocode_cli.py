"""``voxar vocode`` and ``voxar bench vocoder``, and the fused inference step they stream through.

Most CLI calls run in-process through :func:`voxar.cli.main` (one torch import for the whole file); ``-o -`` and
the benchmark run as real subprocesses. Models are tiny and randomly initialised, saved with ``save_pretrained``.
"""

from __future__ import annotations

import io
import json
import logging
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import randomize_vocoder, run_voxar

from voxar.cli import main
from voxar.models.vocoder import Vocoder, VocoderConfig
from voxar.modules import clone_state, run_chunked

SR = 16000


@pytest.fixture(autouse=True)
def _restore_globals():
    """In-process CLI runs set torch threads (--stream), the 'voxar' log level (-v) and the root log handler (on
    the captured stderr of that test): undo all three after each test."""
    threads = torch.get_num_threads()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    logging.getLogger("voxar").setLevel(logging.NOTSET)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 16 kHz chirp + noise wav, a tiny 16k vocoder dir and a tiny vocos24k vocoder dir."""
    d = tmp_path_factory.mktemp("vocode")
    t = np.arange(int(0.8 * SR)) / SR
    wav = 0.3 * np.sin(2 * np.pi * (150 + 400 * t) * t) + 0.02 * np.random.default_rng(0).standard_normal(len(t))
    sf.write(d / "in.wav", wav.astype(np.float32), SR)
    tiny = randomize_vocoder(Vocoder(VocoderConfig.named("tiny")))
    tiny.save_pretrained(d / "tiny")
    v24 = Vocoder(VocoderConfig.named("vocos24k", dim=16, intermediate_dim=32, num_layers=1))
    v24.save_pretrained(d / "v24")
    return d, len(t), tiny


def _voxar(capsysbinary, *argv: str) -> tuple[int, bytes, str]:
    """Run the CLI in-process: (exit status, stdout bytes, stderr text of this call only)."""
    capsysbinary.readouterr()  # drop what the test itself printed or logged before the call
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    captured = capsysbinary.readouterr()
    return code, captured.out, captured.err.decode()


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("voxar: error: "), err
    return lines[0]


def _read(path) -> np.ndarray:
    data, sr = sf.read(path, dtype="float32")
    assert sr == SR
    return data


# ------------------------------------------------------------------------------------------------- vocode
def test_offline_and_stream_round_trip_agree(files, capsysbinary):
    d, n_in, _ = files
    code, _, err = _voxar(capsysbinary, "vocode", d / "in.wav", "-o", d / "off.wav", "--model", d / "tiny")
    assert code == 0, err
    code, _, err = _voxar(
        capsysbinary, "vocode", d / "in.wav", "-o", d / "str.wav", "--model", d / "tiny", "--stream",
        "--chunk-frames", "3", "-v",
    )  # fmt: skip
    assert code == 0, err
    assert "chunk 0: 3 frames" in err and "RTF" in err  # the per-chunk report of -v
    off, streamed = _read(d / "off.wav"), _read(d / "str.wav")
    assert len(off) == len(streamed) == n_in
    assert np.abs(off).max() > 0.01  # not silence
    np.testing.assert_allclose(streamed, off, atol=2e-4)  # 16-bit files: a few LSB


def test_npy_input_matches_the_model(files, capsysbinary, tmp_path):
    from voxar.audio import MelConfig, load_audio, log_mel

    d, _, tiny = files
    wav, _ = load_audio(d / "in.wav")
    mel = log_mel(wav, MelConfig.preset("16k"))  # (80, T)
    np.save(tmp_path / "mel.npy", mel)
    code, _, err = _voxar(
        capsysbinary, "vocode", tmp_path / "mel.npy", "-o", tmp_path / "out.wav", "--model", d / "tiny"
    )
    assert code == 0, err
    out = _read(tmp_path / "out.wav")
    with torch.no_grad():
        ref = tiny(torch.from_numpy(mel)[None])[0].numpy()
    assert len(out) == mel.shape[1] * 160 == len(ref)
    np.testing.assert_allclose(out, np.clip(ref, -1, 1), atol=1e-4)


def test_npy_with_wrong_bins_is_one_line(files, capsysbinary, tmp_path):
    d, _, _ = files
    np.save(tmp_path / "m100.npy", np.zeros((100, 20), dtype=np.float32))
    code, out, err = _voxar(
        capsysbinary, "vocode", tmp_path / "m100.npy", "-o", tmp_path / "x.wav", "--model", d / "tiny"
    )
    assert code == 1 and out == b""
    line = _one_error_line(err)
    assert "m100.npy" in line and "expected 80 mel bins" in line and "got 100" in line
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((80, 5), dtype=np.int64), "floating-point"),
        (np.full((80, 5), np.nan, dtype=np.float32), "NaN or infinite"),
        (np.zeros((2, 80, 5), dtype=np.float32), "shape (n_mels, T)"),
        (b"not numpy", "not a .npy file"),
    ],
    ids=["int", "nan", "3d", "garbage"],
)
def test_bad_npy_inputs(files, capsysbinary, tmp_path, array, message):
    d, _, _ = files
    path = tmp_path / "bad.npy"
    if isinstance(array, bytes):
        path.write_bytes(array)
    else:
        np.save(path, array)
    code, _, err = _voxar(capsysbinary, "vocode", path, "-o", tmp_path / "x.wav", "--model", d / "tiny")
    assert code == 1
    assert message in _one_error_line(err)


def test_model_dir_from_another_preset(files, capsysbinary, tmp_path):
    d, _, _ = files
    code, _, err = _voxar(
        capsysbinary, "vocode", d / "in.wav", "-o", tmp_path / "x.wav", "--model", d / "v24", "--preset", "16k"
    )
    assert code == 1
    line = _one_error_line(err)
    assert "preset 'vocos24k'" in line and "preset '16k'" in line
    # an 80-bin (16k) log-mel into the vocos24k model: the expected and the actual bin counts are named
    np.save(tmp_path / "m80.npy", np.zeros((80, 10), dtype=np.float32))
    code, _, err = _voxar(capsysbinary, "vocode", tmp_path / "m80.npy", "-o", tmp_path / "x.wav", "--model", d / "v24")
    assert code == 1 and "expected 100 mel bins (preset vocos24k), got 80" in _one_error_line(err)


def test_bad_model_dirs_and_audio(files, capsysbinary, tmp_path):
    d, _, _ = files
    broken = tmp_path / "broken"
    Vocoder(VocoderConfig.named("tiny")).save_pretrained(broken)
    (broken / "model.safetensors").unlink()
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage")
    cases = [
        ((d / "in.wav", "--model", broken), "model.safetensors is missing"),
        ((d / "in.wav", "--model", tmp_path / "nope"), "model directory not found"),
        ((tmp_path / "missing.wav", "--model", d / "tiny"), "missing.wav: file not found"),
        ((tmp_path / "corrupt.wav", "--model", d / "tiny"), "corrupt.wav: cannot read audio"),
        ((d / "in.wav", "--model", d / "tiny", "--griffin-lim"), "not both"),
    ]
    for args, message in cases:
        code, _, err = _voxar(capsysbinary, "vocode", *args, "-o", tmp_path / "x.wav")
        assert code == 1, args
        assert message in _one_error_line(err), args


def test_griffin_lim_fallback_warns(files, capsysbinary, tmp_path, monkeypatch):
    import voxar.vocode

    d, _, _ = files
    t = np.arange(int(0.3 * 24000)) / 24000
    sf.write(tmp_path / "in24.wav", (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 24000)
    monkeypatch.setattr(voxar.vocode, "DEFAULT_MODEL_DIR", tmp_path / "no-packaged-model")
    code, _, err = _voxar(capsysbinary, "vocode", tmp_path / "in24.wav", "-o", tmp_path / "gl.wav")
    assert code == 0, err
    assert "WARNING" in err and "falling back to Griffin-Lim" in err
    out = _read(tmp_path / "gl.wav")  # resampled to the 16k preset, cut to the input's length
    assert len(out) == int(0.3 * SR) and np.abs(out).max() > 0.05
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    assert abs(np.argmax(spectrum) * SR / len(out) - 440) < 20  # the sine survives the round trip
    # a packaged model, when there is one, is used instead (and nothing is said about Griffin-Lim)
    monkeypatch.setattr(voxar.vocode, "DEFAULT_MODEL_DIR", d / "tiny")
    code, _, err = _voxar(capsysbinary, "vocode", d / "in.wav", "-o", tmp_path / "packaged.wav")
    assert code == 0 and "Griffin-Lim" not in err
    code, _, err = _voxar(capsysbinary, "vocode", d / "in.wav", "-o", tmp_path / "explicit.wav", "--model", d / "tiny")
    np.testing.assert_array_equal(_read(tmp_path / "packaged.wav"), _read(tmp_path / "explicit.wav"))


def test_stdout_output_is_a_valid_wav(files):
    from voxar.audio import MelConfig, load_audio, log_mel

    d, n_in, tiny = files
    r = run_voxar("vocode", str(d / "in.wav"), "-o", "-", "--model", str(d / "tiny"))
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout[:4] == b"RIFF" and r.stdout[8:12] == b"WAVE"
    data, sr = sf.read(io.BytesIO(r.stdout), dtype="float32")
    assert sr == SR and len(data) == n_in
    with torch.no_grad():  # the same analysis-synthesis in-process
        mel = torch.from_numpy(log_mel(load_audio(d / "in.wav")[0], MelConfig.preset("16k")))[None]
        expected = tiny(mel)[0, :n_in].clamp(-1, 1).numpy()
    np.testing.assert_allclose(data, expected, atol=2e-4)
    assert b"wrote <stdout>" in r.stderr


# ------------------------------------------------------------------------------------------------- bench
def test_bench_vocoder_json():
    r = run_voxar("bench", "vocoder", "--size", "tiny", "--seconds", "1", "--chunks", "1,4")
    assert r.returncode == 0, r.stderr.decode()
    data = json.loads(r.stdout)
    model = Vocoder(VocoderConfig.named("tiny"))
    assert data["benchmark"] == "vocoder" and data["weights"] == "random" and data["device"] == "cpu"
    assert data["parameters"] == model.num_parameters() and data["causal"] is False
    assert {"cpu", "cpu_count", "torch", "torch_threads", "load_average"} <= set(data)
    assert data["latency"]["algorithmic_ms"] == pytest.approx(model.latency_ms)
    assert [row["chunk_frames"] for row in data["streaming"]] == [1, 4]
    for row in data["streaming"]:
        assert row["chunk_ms"] == pytest.approx(10.0 * row["chunk_frames"])
        assert row["chunks"] == math.ceil(100 / row["chunk_frames"]) and row["samples"] == SR
        assert 0 < row["p50_ms"] <= row["p95_ms"] and row["rtf"] > 0
        assert row["algorithmic_latency_ms"] == pytest.approx(model.latency_ms)
    assert data["full_pass"]["rtf"] > 0 and data["full_pass"]["p50_ms"] > 0


def test_bench_vocoder_bad_options(files, capsysbinary):
    d, _, _ = files
    for args, message in [
        (("--size", "tiny", "--chunks", "0,4"), "--chunks: expected comma-separated positive integers"),
        (("--size", "huge"), "unknown vocoder size 'huge'"),
        (("--size", "tiny", "--model", d / "tiny"), "not both"),
        (("--model", d / "tiny", "--causal"), "holds a non-causal vocoder"),
    ]:
        code, out, err = _voxar(capsysbinary, "bench", "vocoder", *args)
        assert code == 1 and out == b"", args
        assert message in _one_error_line(err), args


# ------------------------------------------------------------------------------------------------- fused step
@pytest.mark.parametrize("causal", [False, True], ids=["noncausal", "causal"])
def test_fused_step_equals_reference_and_full_pass(causal):
    model = randomize_vocoder(Vocoder(VocoderConfig.named("tiny", causal=causal)), seed=3)
    mel = torch.randn(2, 80, 41, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(mel)
        fused = run_chunked(model, mel, [1, 4, 0, 7, 2])
        model.fused_step = False
        reference = run_chunked(model, mel, [1, 4, 0, 7, 2])
        model.fused_step = True
    scale = full.abs().max()
    assert fused.shape == reference.shape == full.shape
    assert (fused - full).abs().max() < 1e-5 * scale
    assert (reference - full).abs().max() < 1e-5 * scale
    # the fused path is the one taken without autograd, and shares its weights between state copies
    state = model.init_state(2)
    with torch.no_grad():
        _, state = model.step(mel[..., :5], state)
    assert state.fused is not None and clone_state(state).fused is state.fused
    # with autograd on, the reference path runs (and is differentiable)
    state = model.init_state(1)
    wav, state = model.step(mel[:1, :, :20], state)
    assert state.fused is None and wav.requires_grad


def test_fused_weights_follow_weight_updates():
    model = randomize_vocoder(Vocoder(VocoderConfig.named("tiny")), seed=4)
    mel = torch.randn(1, 80, 30, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = run_chunked(model, mel, 4)
        model.blocks[1].pwconv1.weight.mul_(1.5)  # an in-place update, as an optimiser step does
        after = run_chunked(model, mel, 4)
        expected = model(mel)
    assert (after - before).abs().max() > 1e-3
    assert (after - expected).abs().max() < 1e-5 * expected.abs().max()


@pytest.mark.parametrize("same", [False, True], ids=["causal", "same"])
def test_conv_step_windows_match_step(same):
    from voxar.modules import SameConv1d, StreamingConv1d

    torch.manual_seed(0)
    conv = (SameConv1d if same else StreamingConv1d)(5, 5, 7, groups=5)
    x = torch.randn(1, 5, 23)
    with torch.no_grad():
        full = conv(x)
        state, outs = conv.init_state(1), []
        for start, n in ((0, 2), (2, 1), (3, 9), (12, 11)):
            win = conv.step_windows(x[..., start : start + n].transpose(1, 2), state)  # (B, m, k, C)
            if win is not None:
                w = conv.conv.weight[:, 0, :].t()  # (C, 1, k) -> (k, C)
                outs.append(((win * w).sum(2) + conv.conv.bias).transpose(1, 2))  # (B, m, C) -> (B, C, m)
        tail = conv.flush(state)  # the reference flush continues the same stream
        if tail is not None:
            outs.append(tail)
    torch.testing.assert_close(torch.cat(outs, dim=-1), full)
    with pytest.raises(ValueError, match="dilation 1"):
        StreamingConv1d(2, 2, 3, dilation=2).step_windows(torch.zeros(1, 4, 2), StreamingConv1d(2, 2, 3).init_state(1))
