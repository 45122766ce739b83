"""The TTS inference API and ``voxar tts`` on the tiny model trained once by ``test_tts_train.trained_tts``."""

from __future__ import annotations

import copy
import io
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import run_voxar
from test_tts_train import trained_tts

from voxar.errors import VoxarAudioError, VoxarConfigError, VoxarTextError
from voxar.models.griffinlim import GriffinLimVocoder

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

TEXT = "Birds sing in the park."
PROMPT_TEXT = "The cat sat on the mat."
SR = 16000


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return trained_tts(tmp_path_factory)


@pytest.fixture(scope="module")
def tts(paths):
    from voxar.audio import MelConfig
    from voxar.tts import TTS

    torch.set_num_threads(1)
    return TTS.from_pretrained(paths["model"], vocoder=GriffinLimVocoder(MelConfig.preset("16k"), n_iter=4))


@pytest.fixture(scope="module")
def prompt(paths):
    return paths["wav"] / "en-us-f3_00.wav"  # "The cat sat on the mat." by a speaker seen in training


def _max_seconds(tts, text: str, prefix: str = "") -> float:
    n = len(tts.tokenizer.encode(prefix + " " + text)) if prefix else len(tts.tokenizer.encode(text))
    return (4 * n + 25) * tts.cfg.lm.patch_size * tts.mel_cfg.hop_length / SR


@pytest.mark.parametrize("head", ["fm", "mf"])
@pytest.mark.parametrize("continuation", [False, True])
def test_synthesize_both_heads_and_prompt_modes(tts, prompt, head, continuation):
    prompt_text = PROMPT_TEXT if continuation else None
    wav, sr = tts.synthesize(TEXT, prompt, prompt_text, head=head, steps=4 if head == "fm" else None, seed=3)
    assert sr == SR and wav.dtype == np.float32 and wav.ndim == 1 and np.isfinite(wav).all()
    seconds = len(wav) / sr
    floor = int(0.5 * len(tts.tokenizer.encode(TEXT))) * 0.04  # the length floor of the API
    assert floor - 1e-6 <= seconds <= _max_seconds(tts, TEXT, prompt_text or ""), seconds
    assert np.abs(wav).max() > 1e-3  # not silence


def test_seed_makes_it_deterministic(tts, prompt):
    a, _ = tts.synthesize(TEXT, prompt, head="mf", seed=7)
    b, _ = tts.synthesize(TEXT, prompt, head="mf", seed=7)
    c, _ = tts.synthesize(TEXT, prompt, head="mf", seed=8)
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)


@pytest.mark.parametrize("head", ["fm", "mf"])
def test_stepwise_generation_equals_full_teacher_forced_pass(tts, prompt, head):
    """Patch-by-patch KV-cached generation == re-sampling each patch from a full (uncached) LM pass over the
    generated sequence with the same noise stream; and the streamed chunks concatenate to the one-go result."""
    steps = 4
    chunks = list(tts.stream_patches(TEXT, prompt, head=head, steps=steps, seed=5, chunk_size=1))
    assert all(c.shape == (80, 4) for c in chunks)  # one 40 ms patch per step
    streamed = torch.cat(chunks, dim=-1)
    (full,) = tts.synthesize_mels(TEXT, prompt, head=head, steps=steps, seed=5, chunk_size=1)
    torch.testing.assert_close(streamed, full, rtol=0, atol=0)

    lm, flow = tts.model.lm, tts.model.head(head)
    cond, _ = tts._conditioning(prompt, None)
    ids = torch.tensor([tts.encode_text(TEXT)])
    with torch.no_grad():
        out = lm(ids, torch.tensor([ids.shape[1]]), full[None], torch.tensor([full.shape[-1]]), chunk_size=1,
                 n_history=flow.cfg.history, **cond)  # fmt: skip
        gen = torch.Generator().manual_seed(5)
        again = [
            flow.sample_patch(out["h"][:, i], out["history"][:, i], steps, None, gen) for i in range(out["h"].shape[1])
        ]
    torch.testing.assert_close(torch.stack(again, 1), out["targets"], rtol=0, atol=1e-4)


def test_long_text_is_split_and_joined_without_clicks(tts, prompt):
    from voxar.tts import FADE_SECONDS, PAUSE_SECONDS

    text = "Birds sing. Rain fell on the hills. He plays the red guitar."
    wav, sr = tts.synthesize(text, prompt, head="mf", seed=2)
    mels = tts.synthesize_mels(text, prompt, head="mf", seed=2)
    assert len(mels) == 3
    hop, pause = tts.mel_cfg.hop_length, round(PAUSE_SECONDS * sr)
    lens = [m.shape[-1] * hop for m in mels]
    assert len(wav) == sum(lens) + 2 * pause
    joins, pos = [], 0
    for n in lens[:-1]:
        pos += n
        joins += [pos, pos + pause]  # end of a sentence, start of the next
        pos += pause
    step = np.abs(np.diff(wav))
    fade = round(FADE_SECONDS * sr)
    for b in joins:
        assert abs(wav[b - 1]) < 0.02 and abs(wav[b]) < 0.02, b  # faded to ~0 on both sides
        around = step[b - fade : b + fade]
        assert around.max() <= np.percentile(step, 99.5) + 1e-6, b  # no discontinuity spike at the join
    speech = [wav[i - 2 * fade : i - fade] for i in joins[::2]]
    assert all(np.abs(s).max() > 1e-4 for s in speech)  # the fades are short: audio right before them is not muted


def test_max_length_guard_ends_runaway_generation(tts, prompt):
    runaway = copy.copy(tts)
    runaway.model = copy.deepcopy(tts.model)
    with torch.no_grad():
        runaway.model.lm.stop_head.net[-1].bias.fill_(-100.0)  # never says "stop"
    text = "Hi."
    wav, sr = runaway.synthesize(text, prompt, head="mf", seed=0)
    n = len(tts.tokenizer.encode(text))
    assert len(wav) == (4 * n + 25) * 4 * tts.mel_cfg.hop_length


def test_bad_text_is_a_text_error(tts, prompt):
    for text in ["", "   \n", "?!  ...", "--"]:
        with pytest.raises(VoxarTextError):
            tts.synthesize(text, prompt, head="mf")
    with pytest.raises(VoxarTextError, match="prompt"):
        tts.synthesize(TEXT, None, PROMPT_TEXT, head="mf")
    with pytest.raises(VoxarTextError, match="prompt text"):
        tts.synthesize(TEXT, prompt, "...", head="mf")


def test_bad_prompts_are_audio_errors(tts, tmp_path):
    rng = np.random.default_rng(0)
    short = tmp_path / "short.wav"
    sf.write(short, 0.1 * rng.standard_normal(int(0.3 * SR)), SR)
    long = tmp_path / "long.wav"
    sf.write(long, 0.1 * rng.standard_normal(int(31 * SR)), SR)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(2 * SR), SR)
    for path, match in ((short, "0.5 s"), (long, "30 s"), (silent, "silent"), (tmp_path / "missing.wav", "not found")):
        with pytest.raises(VoxarAudioError, match=match):
            tts.synthesize(TEXT, path, head="mf")
    with pytest.raises(VoxarAudioError, match="silent"):
        tts.synthesize(TEXT, np.zeros(SR, dtype=np.float32), head="mf")
    with pytest.raises(VoxarAudioError, match="0.5 s"):
        tts.synthesize(TEXT, (0.1 * rng.standard_normal(SR // 4)).astype(np.float32), head="mf")


def test_array_prompt_and_no_prompt(tts, prompt):
    wav, sr = sf.read(prompt, dtype="float32")
    from voxar.audio import resample

    a, _ = tts.synthesize(TEXT, resample(wav, sr, SR), head="mf", seed=1)
    b, _ = tts.synthesize(TEXT, prompt, head="mf", seed=1)
    np.testing.assert_allclose(a, b, atol=1e-5)
    c, _ = tts.synthesize(TEXT, None, head="mf", seed=1)  # the average ("no speaker") voice
    assert len(c) > 0 and np.isfinite(c).all()


def test_from_pretrained_errors(paths, tmp_path):
    from voxar.models.vocoder import Vocoder, VocoderConfig
    from voxar.tts import TTS

    with pytest.raises(VoxarConfigError, match="not found"):
        TTS.from_pretrained(tmp_path / "nope", vocoder="griffin-lim")
    broken = tmp_path / "broken"
    shutil.copytree(paths["model"], broken)
    (broken / "tokenizer.json").unlink()
    with pytest.raises(VoxarConfigError, match="tokenizer.json"):
        TTS.from_pretrained(broken, vocoder="griffin-lim")
    (broken / "model.safetensors").unlink()
    with pytest.raises(VoxarConfigError, match="model.safetensors"):
        TTS.from_pretrained(broken, vocoder="griffin-lim")
    voc24 = VocoderConfig(preset="vocos24k", n_mels=100, hop_length=256, n_fft=1024, dim=8, intermediate_dim=16,
                          num_layers=1, padding="center")  # fmt: skip
    Vocoder(voc24).save_pretrained(tmp_path / "voc24")
    with pytest.raises(VoxarConfigError, match="preset"):
        TTS.from_pretrained(paths["model"], vocoder=tmp_path / "voc24")
    with pytest.raises(VoxarConfigError, match="vocoder directory not found"):
        TTS.from_pretrained(paths["model"], vocoder=tmp_path / "no-vocoder")


# ------------------------------------------------------------------------------------------------------------ CLI
def test_cli_writes_a_wav_file(paths, prompt, tmp_path):
    out = tmp_path / "out.wav"
    r = run_voxar(
        "tts", "--text", TEXT, "--prompt", str(prompt), "--model", str(paths["model"]), "--vocoder", "griffin-lim",
        "--head", "mf", "--seed", "1", "--threads", "1", "-o", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    wav, sr = sf.read(out, dtype="float32")
    assert sr == SR and 0.3 < len(wav) / sr < 10 and np.abs(wav).max() > 1e-3


def test_cli_stdin_text_and_wav_on_stdout(paths, prompt):
    r = run_voxar(
        "tts", "--prompt", str(prompt), "--prompt-text", PROMPT_TEXT, "--model", str(paths["model"]),
        "--vocoder", "griffin-lim", "--head", "fm", "--steps", "2", "--threads", "1", "-o", "-",
        input=TEXT.encode(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout[:4] == b"RIFF"
    wav, sr = sf.read(io.BytesIO(r.stdout), dtype="float32")
    assert sr == SR and len(wav) > 0
    assert b"RIFF" not in r.stderr


def test_cli_user_errors_are_one_line(paths, prompt):
    from voxar.tts import DEFAULT_MODEL_DIR

    if not DEFAULT_MODEL_DIR.is_dir():
        r = run_voxar("tts", "--text", TEXT, "--prompt", str(prompt), "-o", "x.wav")
        lines = r.stderr.decode().strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and "--model" in lines[0], lines
    r = run_voxar("tts", "--text", "  ", "--model", str(paths["model"]), "--vocoder", "griffin-lim", "-o", "x.wav")
    lines = r.stderr.decode().strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "empty" in lines[0], lines


def test_feedback_off_needs_a_text_pointer_lm(tts):
    with pytest.raises(VoxarConfigError, match="text-pointer"):
        tts.set_feedback(False)
    tts.set_feedback(True)  # the default, always allowed
    assert tts.model.lm.feedback


def test_default_head_comes_from_the_model_directory(paths, prompt, tmp_path):
    """``default_head`` in config.yaml picks the head when none is named (API, CLI and its log); bad values are
    config errors."""
    import yaml

    from voxar.audio import MelConfig
    from voxar.models.tts_model import TTSModelConfig
    from voxar.tts import TTS

    d = tmp_path / "mf_default"
    shutil.copytree(paths["model"], d)
    header = yaml.safe_load((d / "config.yaml").read_text())
    assert header["config"]["default_head"] == "fm"  # what training writes
    header["config"]["default_head"] = "mf"
    (d / "config.yaml").write_text(yaml.safe_dump(header))
    tts = TTS.from_pretrained(d, vocoder=GriffinLimVocoder(MelConfig.preset("16k"), n_iter=4))
    assert tts.default_head == "mf"
    unnamed, _ = tts.synthesize(TEXT, prompt, seed=5)
    mf, _ = tts.synthesize(TEXT, prompt, head="mf", seed=5)
    fm, _ = tts.synthesize(TEXT, prompt, head="fm", steps=2, seed=5)
    np.testing.assert_array_equal(unnamed, mf)
    assert len(unnamed) != len(fm) or not np.array_equal(unnamed, fm)
    r = run_voxar(
        "-v", "tts", "--text", TEXT, "--prompt", str(prompt), "--model", str(d), "--vocoder", "griffin-lim",
        "--threads", "1", "-o", str(tmp_path / "out.wav"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    assert "(mf head" in r.stderr.decode()
    with pytest.raises(VoxarConfigError, match="default_head"):
        TTSModelConfig(**{**TTSModelConfig().__dict__, "default_head": "xx"})
    with pytest.raises(VoxarConfigError, match="mf_head"):
        TTSModelConfig(**{**TTSModelConfig().__dict__, "default_head": "mf", "mf_head": None})
