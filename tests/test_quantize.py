"""int8 flow heads for CPU decoding (``voxar.models.quantize``, ``TTS.set_quantize``, ``--quantize``): the quantized
head stays close to the float one, streaming still equals offline synthesis, and misuse is a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_voxar

from voxar.errors import VoxarConfigError
from voxar.models.heads import FlowHead, HeadConfig
from voxar.models.quantize import check_mode, is_quantized, quantize_int8
from voxar.runtime.builders import random_tts
from voxar.runtime.engine import StreamConfig, StreamingTTS

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "Hello there. How are you?"


def test_int8_head_is_close_to_the_float_head_and_leaves_it_untouched():
    torch.manual_seed(0)
    head = FlowHead(HeadConfig(mode="fm", patch_dim=32, cond_dim=24, width=64, n_blocks=2, history=0)).eval()
    for p in head.parameters():  # trained-looking weights (the zero-initialised output layers would hide errors)
        torch.nn.init.normal_(p, std=0.05)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    q = quantize_int8(head)
    assert is_quantized(q) and not is_quantized(head)
    assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())  # a copy: the float head is kept
    assert not any(isinstance(m, torch.nn.Linear) for m in q.modules())  # every linear layer is packed
    h = torch.randn(16, 24)
    x0 = torch.randn(16, 32)
    t = torch.rand(16)
    with torch.inference_mode():
        ref, got = head(x0, t, t, h), q(x0, t, t, h)  # (N, F) velocities
    err = (got - ref).norm() / ref.norm()
    assert 0 < err < 0.05, err  # int8 rounding: small but not zero


def test_quantize_modes_and_devices():
    assert check_mode("int8") == "int8"
    with pytest.raises(VoxarConfigError, match="int4"):
        check_mode("int4")
    if torch.cuda.is_available():
        with pytest.raises(VoxarConfigError, match="CPU"):
            quantize_int8(torch.nn.Linear(4, 4).cuda())


def test_quantized_tts_streams_its_offline_audio_and_refuses_to_save(tmp_path):
    tts = random_tts("tiny", seed=0)
    lm_before = {k: v.clone() for k, v in tts.model.lm.state_dict().items()}
    tts.set_quantize("int8")
    assert tts.quantize == "int8"
    assert all(is_quantized(h) for h in tts.model.heads().values()) and not is_quantized(tts.model.lm)
    assert all(torch.equal(lm_before[k], v) for k, v in tts.model.lm.state_dict().items())
    tts.set_quantize("int8")  # idempotent
    offline = tts.synthesize(TEXT, head="mf", seed=3)[0]
    streamed = StreamingTTS(tts, StreamConfig(head="mf", seed=3)).synthesize(TEXT)
    assert offline.shape == streamed.shape and len(offline) > 0
    np.testing.assert_allclose(streamed, offline, atol=1e-6)
    fm = tts.synthesize(TEXT, head="fm", steps=4, seed=3)[0]
    assert np.isfinite(fm).all() and len(fm) > 0
    with pytest.raises(VoxarConfigError, match="quantized"):
        tts.save_pretrained(tmp_path / "q")
    assert not (tmp_path / "q").exists()
    with pytest.raises(VoxarConfigError, match="load the model again"):
        tts.set_quantize("none")


def test_cli_and_bench_take_quantize(tmp_path):
    tts = random_tts("tiny", seed=0)
    d, vd = tmp_path / "tts", tmp_path / "voc"
    tts.save_pretrained(d)
    tts.vocoder.save_pretrained(vd)
    args = ["tts", "--text", TEXT, "--model", str(d), "--vocoder", str(vd), "--seed", "3", "--threads", "1"]
    res = run_voxar(*args, "--quantize", "int8", "-o", str(tmp_path / "q.wav"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "q.wav").stat().st_size > 1000
    bad = run_voxar(*args, "--quantize", "int4", "-o", str(tmp_path / "bad.wav"))
    assert bad.returncode == 1 and "int4" in bad.stderr.decode().strip().splitlines()[-1]
    assert not (tmp_path / "bad.wav").exists()
    out = tmp_path / "b.json"
    res = run_voxar("bench", "tts", "--size", "tiny", "--repeats", "1", "--seconds", "0.3", "--quantize", "int8",
                    "--head", "fm", "--steps", "2", "-o", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    r = json.loads(out.read_text())
    assert r["quantize"] == "int8" and r["params_m"]["head"] > 0 and r["profile"]["head_sample_ms"] > 0
