"""Streaming voice conversion end to end: streaming log-mel, the VC pipeline (chunk-exact, causal, measured
latency), ``voxar vc`` file mode and ``--live`` through real PortAudio (ALSA file PCMs), ``voxar bench vc``.
Random-weight tiny models: exactness, causality and plumbing do not depend on training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import run_voxar

from voxar.audio.features import MelConfig
from voxar.audio.stream_mel import StreamingLogMel
from voxar.errors import VoxarAudioError, VoxarConfigError
from voxar.modules.streaming import run_chunked
from voxar.runtime.bench_vc import random_converter

pytestmark = pytest.mark.usefixtures("one_thread")
SR = 16000


def voice(seconds: float, seed: int = 0, f0: float = 120.0) -> np.ndarray:
    """A voice-like test signal: harmonics of a gliding f0 with a syllable-rate envelope, (L,) float32."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 + 20 * np.sin(2 * np.pi * (0.7 + seed) * t)) / SR
    env = 0.3 + 0.7 * np.sin(2 * np.pi * 3 * t) ** 2
    return (0.15 * env * sum(np.sin(k * phase) / k for k in range(1, 12))).astype(np.float32)


@pytest.fixture(scope="module")
def conv():
    return random_converter(torch.device("cpu"), vc_chunk=2)


@pytest.fixture(scope="module")
def target(conv):
    return conv.prepare_target(voice(2.0, seed=1, f0=200.0))


# ------------------------------------------------------------------------------------------------ streaming log-mel
@pytest.mark.parametrize("length", [600, 16000, 16033])
def test_streaming_log_mel_equals_full_pass(length):
    m = StreamingLogMel(MelConfig.preset("16k"))
    x = torch.randn(2, length)
    full = m(x)
    for chunks in (1, 7, 160, 641, [0, 333, 5]):  # float rounding of the per-call mel projection may differ
        np.testing.assert_allclose(run_chunked(m, x, chunks).numpy(), full.numpy(), rtol=0, atol=1e-5)


def test_streaming_log_mel_is_causal_within_its_window():
    m = StreamingLogMel(MelConfig.preset("16k"))
    x = torch.randn(1, 8000)
    state = m.init_state(1)
    y, state = m.step(x[:, :4000], state)
    x2 = x.clone()
    x2[:, 4000:] = torch.randn(1, 4000)
    # frames final after 4000 samples only use samples < 4000: the full pass of the changed signal agrees
    np.testing.assert_array_equal(m(x2)[..., : y.shape[-1]].numpy(), y.numpy())
    assert (y.shape[-1] - 1) * 160 + m.lookahead <= 4000


# ------------------------------------------------------------------------------------------------ pipeline
def test_pipeline_stream_equals_offline_for_any_block(conv, target):
    src = voice(1.2, seed=2)
    full = conv.convert(src, target)
    assert len(full) == len(src) and np.abs(full).max() > 0
    for block in (160, 320, 999):
        np.testing.assert_allclose(conv.convert(src, target, block=block), full, atol=1e-5)


def test_ppg_pipeline_streams_exactly():
    """A VC model that reads phone posteriors: the converter switches the content encoder to them."""
    conv = random_converter(torch.device("cpu"), vc_chunk=2, features="ppg")
    target = conv.prepare_target(voice(2.0, seed=1, f0=200.0))
    assert conv.content.features == "ppg" and conv.vc.cfg.content_dim == conv.content.cfg.vocab_size + 1
    src = voice(1.0, seed=2)
    full = conv.convert(src, target)
    assert len(full) == len(src) and np.abs(full).max() > 0
    for block in (320, 999):
        np.testing.assert_allclose(conv.convert(src, target, block=block), full, atol=1e-5)


def test_pipeline_is_causal(conv, target):
    src = voice(1.0, seed=3)
    pipe = conv.pipeline(target)
    x = torch.from_numpy(src)[None]
    state = pipe.init_state(1)
    with torch.inference_mode():
        y, state = pipe.step(x[:, :8000], state)
    changed = src.copy()
    changed[8000:] = voice(0.5, seed=4, f0=300.0)
    np.testing.assert_allclose(conv.convert(changed, target)[: y.shape[-1]], y[0].numpy(), atol=1e-5)
    assert 0 < y.shape[-1] < 8000  # output lags the input by the algorithmic latency


def test_measured_latency_adds_up(conv, target):
    pipe = conv.pipeline(target)
    conv.content.set_chunk(chunk_size=1)
    lat20 = pipe.latency(320)["worst_ms"]
    lat40 = pipe.latency(640)["worst_ms"]
    # 20 ms block + 20 ms mel window + no content lookahead + VC chunk (20 ms) aligned with the block + 15 ms vocoder
    voc_ms = 1e3 * conv.vocoder.hold_back / SR
    assert lat20 == pytest.approx(20 + 20 + voc_ms, abs=0.1)
    assert lat20 <= 60.0
    assert lat40 == pytest.approx(lat20 + 20, abs=0.1)


def test_bad_targets_and_mismatched_models(conv):
    with pytest.raises(VoxarAudioError, match="at least 1 s"):
        conv.prepare_target(voice(0.6))
    with pytest.raises(VoxarAudioError, match="silent"):
        conv.prepare_target(np.zeros(2 * SR, dtype=np.float32))
    from voxar.models.vc import VCModel
    from voxar.models.vc_config import VCConfig
    from voxar.vc import VoiceConverter

    with pytest.raises(VoxarConfigError, match="expects"):
        VoiceConverter(
            conv.content, VCModel(VCConfig.named("tiny", content_dim=conv.content.out_dim + 1)), conv.vocoder
        )


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def model_dirs(conv, tmp_path_factory):
    d = tmp_path_factory.mktemp("vcmodels")
    conv.content.save_pretrained(d / "content")
    conv.vc.save_pretrained(d / "vc")
    conv.vocoder.save_pretrained(d / "vocoder")
    sf.write(d / "ref.wav", voice(2.0, seed=1, f0=200.0), SR)
    sf.write(d / "src.wav", voice(1.0, seed=2), SR, subtype="PCM_16")
    args = ["--model", str(d / "vc"), "--content-model", str(d / "content"), "--vocoder", str(d / "vocoder")]
    return d, args + ["--target", str(d / "ref.wav"), "--threads", "1"]


def test_cli_file_mode_and_bad_inputs(model_dirs, tmp_path):
    d, args = model_dirs
    out = tmp_path / "out.wav"
    res = run_voxar("vc", *args, "--source", str(d / "src.wav"), "-o", str(out))
    assert res.returncode == 0, res.stderr
    y, sr = sf.read(out)
    assert sr == SR and len(y) == SR
    # 8 kHz stereo source: mixed down and resampled, with a message saying so
    src8 = np.stack([voice(1.0)[::2], voice(1.0)[::2]], axis=1)
    sf.write(tmp_path / "s8.wav", src8, 8000)
    res = run_voxar("vc", *args, "--source", str(tmp_path / "s8.wav"), "-o", str(tmp_path / "o8.wav"))
    assert res.returncode == 0 and "8000 Hz, 2 channel(s)" in res.stderr.decode()
    assert sf.info(tmp_path / "o8.wav").samplerate == SR
    # short target, silent source: one-line errors and no output file
    sf.write(tmp_path / "short.wav", voice(0.5), SR)
    bad = [a if a != str(d / "ref.wav") else str(tmp_path / "short.wav") for a in args]
    res = run_voxar("vc", *bad, "--source", str(d / "src.wav"), "-o", str(tmp_path / "x.wav"))
    assert res.returncode == 1 and "at least 1 s" in res.stderr.decode() and not (tmp_path / "x.wav").exists()
    sf.write(tmp_path / "silent.wav", np.zeros(SR, dtype=np.float32), SR)
    res = run_voxar("vc", *args, "--source", str(tmp_path / "silent.wav"), "-o", str(tmp_path / "y.wav"))
    assert res.returncode == 1 and "silent" in res.stderr.decode() and not (tmp_path / "y.wav").exists()
    res = run_voxar("vc", *args)
    assert res.returncode == 1 and "--live" in res.stderr.decode()


def test_cli_live_through_alsa_file_devices(model_dirs, alsa_file_devices, tmp_path):
    d, args = model_dirs
    env, mic, spk = alsa_file_devices
    pcm, _ = sf.read(d / "src.wav", dtype="int16")
    mic.write_bytes(pcm.astype("<i2").tobytes())  # the microphone "says" the source file
    res = run_voxar("-v", "vc", *args, "--live", "--duration", "0.8", "--input-device", "voxar_mic",
                    "--output-device", "voxar_spk", env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    err = res.stderr.decode()
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["algorithmic_latency_ms"]["worst_ms"] <= 60 and summary["blocks"] == 40
    assert summary["overflows"] == 0 and "algorithmic latency" in err
    got = np.frombuffer(spk.read_bytes(), dtype="<i2").astype(np.float32) / 32768
    assert abs(len(got) - 0.8 * SR) <= 0.1 * SR  # 0.8 s in, plus the flushed tail, in whole blocks
    # the recording is the offline conversion of the same input, delayed by the pipeline's hold-back
    off = tmp_path / "off.wav"
    assert run_voxar("vc", *args, "--source", str(d / "src.wav"), "-o", str(off)).returncode == 0
    ref, _ = sf.read(off, dtype="float32")
    n = 6000
    errs = [np.abs(got[k : k + n] - ref[:n]).max() for k in range(0, 2000)]
    k = int(np.argmin(errs))
    assert errs[k] < 3e-3, (k, errs[k])
    assert np.abs(ref[:n]).max() > 0.01
    res = run_voxar("vc", *args, "--live", "--input-device", "nope", env=env)
    assert res.returncode == 1 and len(res.stderr.decode().strip().splitlines()) == 1


def test_bench_vc_json():
    res = run_voxar("bench", "vc", "--seconds", "1")
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    assert r["algorithmic_latency_ms"]["worst_ms"] <= 60 and r["block_compute_ms"]["p95_ms"] > 0
    assert r["rtf"] > 0 and r["torch_threads"] == 1


def test_decode_vc_writes_eval_lists(model_dirs, tmp_path):
    from voxar.bin.decode_vc import main, plan

    d, _ = model_dirs
    data = tmp_path / "data"
    data.mkdir()
    utts = {"a_1": "a", "a_2": "a", "b_1": "b", "b_2": "b"}
    for i, u in enumerate(utts):
        sf.write(tmp_path / f"{u}.wav", voice(1.1, seed=i, f0=110.0 + 40 * i), SR)
    (data / "wav.scp").write_text("".join(f"{u} {tmp_path / u}.wav\n" for u in utts))
    (data / "text").write_text("".join(f"{u} hello {u}\n" for u in utts))
    (data / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utts.items()))
    assert plan(list(utts), utts)[0] == ("a_1", "b", "b_1")
    args = ["--vc-model", str(d / "vc"), "--content-model", str(d / "content"), "--vocoder", str(d / "vocoder")]
    assert main([*args, "--data", str(data), "--out", str(tmp_path / "out")]) == 0
    rows = [line.split("\t") for line in (tmp_path / "out" / "list.tsv").read_text().splitlines()]
    assert [r[0] for r in rows] == sorted(utts) and all(r[4] != utts[r[0]] for r in rows)
    assert all(sf.info(r[1]).frames == sf.info(str(tmp_path / f"{r[0]}.wav")).frames for r in rows)
    src = (tmp_path / "out" / "source_list.tsv").read_text().splitlines()
    assert len(src) == 4 and src[0].split("\t")[3] == rows[0][3]


def test_decode_vc_plan_with_unseen_targets():
    from voxar.bin.decode_vc import plan

    utt2spk = {"a_1": "a", "a_2": "a", "b_1": "b", "b_2": "b", "c_1": "c", "c_2": "c"}
    out = plan(list(utt2spk), utt2spk, exclude={"a", "b"})  # only c is unseen in training
    assert [(u, s) for u, s, _ in out] == [("a_1", "c"), ("a_2", "c"), ("b_1", "c"), ("b_2", "c")]
    assert all(ref != u and utt2spk[ref] == s for u, s, ref in out)
