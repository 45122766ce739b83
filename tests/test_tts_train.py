"""TTS training: a tiny espeak-ng corpus is dumped and ``train_tts`` (tts_tiny.yaml) trains on it once per session.

:func:`trained_tts` is shared with ``test_tts_api.py`` (a module-level cache, so the model is trained once even when
both files run). The run is shortened with ``--max-steps`` to keep the suite fast; the loss still falls by about a
half (measured: ~5.9 at step 10 -> ~3.0 at step 80).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from voxar.train.logger import read_log

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "egs" / "synth" / "conf" / "tts_tiny.yaml"
STEPS = 80
VOICES = ["en-us", "en-us+f3", "en-gb+m3", "en+f4"]
SENTENCES = [
    "The cat sat on the mat.",
    "A quick brown fox jumps.",
    "She reads a book at night.",
    "We walked to the old park.",
    "Rain fell on the green hills.",
    "He plays the red guitar.",
    "Birds sing in the morning.",
    "Open the window please.",
]
_CACHE: dict[str, Any] = {}

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def build_corpus(root: Path) -> Path:
    """4 espeak-ng voices x 8 sentences as a Kaldi dir, dumped with the 16k preset; returns the dump dir."""
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


def train(dump: Path, exp: Path, steps: int, *extra: str) -> int:
    """``train_tts`` in this process (1 thread: faster than 2 on these small tensors)."""
    from voxar.bin.train_tts import main

    before = torch.get_num_threads()
    try:
        argv = ["--config", str(CONFIG), "--dump", str(dump), "--exp", str(exp), "--max-steps", str(steps)]
        argv += ["--threads", "1", "--no-progress", "--override", "save_every=40", "tensorboard=false", *extra]
        return main(argv)
    finally:
        torch.set_num_threads(before)


def trained_tts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"root", "dump", "exp", "model", "wav"}`` of the shared tiny run (trained on first use)."""
    if "paths" not in _CACHE:
        root = tmp_path_factory.mktemp("tts_tiny")
        dump = build_corpus(root / "corpus")
        exp = root / "exp"
        status = train(dump, exp, STEPS)
        assert status == 0
        _CACHE["paths"] = {
            "root": root,
            "dump": dump,
            "exp": exp,
            "model": exp / "model",
            "wav": root / "corpus" / "wav",
        }
    return _CACHE["paths"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_tts(tmp_path_factory)


def test_loss_falls_and_model_dir_is_written(run):
    records = read_log(run["exp"] / "train_log.jsonl", split="train")
    assert [r["step"] for r in records][-1] == STEPS
    first, last = records[0], records[-1]
    for key in ("loss", "fm_mse", "mf_mse", "stop"):
        assert all(r[key] is not None for r in records), key
    assert last["loss"] < 0.7 * first["loss"], (first["loss"], last["loss"])  # >= 30% drop (measured ~50%)
    assert last["fm_mse"] < 0.8 * first["fm_mse"], (first["fm_mse"], last["fm_mse"])
    model = run["model"]
    assert {p.name for p in model.iterdir()} >= {"config.yaml", "model.safetensors", "tokenizer.json"}
    from voxar.models.modeldir import read_model_header

    header = read_model_header(model, "tts")
    cfg = header["config"]
    assert cfg["preset"] == "16k" and cfg["tokenizer"]["type"] == "char" and cfg["mf_head"]["mode"] == "mf"
    assert (run["exp"] / "last.pt").is_file() and (run["exp"] / "config.yaml").is_file()


def test_mel_statistics_come_from_the_dump(run):
    from safetensors.torch import load_file

    from voxar.data.dataset import load_cmvn

    weights = load_file(str(run["model"] / "model.safetensors"))
    mean, std = load_cmvn(run["dump"])
    assert torch.allclose(weights["lm.mel_mean"], mean) and torch.allclose(weights["lm.mel_std"], std.clamp_min(1e-5))


def test_resume_continues_and_refuses_to_overwrite(run, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(run["exp"], exp)
    assert train(run["dump"], exp, STEPS + 5) == 1  # existing checkpoints without --resume: a clear error
    assert train(run["dump"], exp, STEPS + 5, "log_every=5", "ema_decay=0.99", "--resume") == 0
    records = read_log(exp / "train_log.jsonl", split="train")
    resumed = [r["step"] for r in records if r["step"] > STEPS]
    assert resumed == [STEPS + 5]
    assert (exp / f"checkpoint-{STEPS + 5}.pt").is_file()
    from voxar.train.checkpoint import load_checkpoint

    last = load_checkpoint(exp / "last.pt")
    assert last["step"] == STEPS + 5
    assert last["ema"]["decay"] == 0.99  # a changed ema_decay wins over the checkpoint's


def test_init_from_warm_starts_a_new_run_and_resizes_head_history(run, tmp_path, capsys):
    from safetensors.torch import load_file

    exp = tmp_path / "warm"
    # a vanishing learning rate: the exported weights are the source's, so the copy is checked exactly
    extra = ("lr=1e-30", "fm_head.history=0", "mf_head.history=2", "--init-from", str(run["exp"] / "last.pt"))
    assert train(run["dump"], exp, 2, *extra) == 0
    got = load_file(str(exp / "model" / "model.safetensors"))
    assert read_log(exp / "train_log.jsonl", split="train")[-1]["step"] == 2  # step count starts afresh
    from voxar.train.checkpoint import load_checkpoint

    ema = load_checkpoint(run["exp"] / "last.pt")["ema"]["shadow"]  # a checkpoint warm-starts from its EMA
    for key, value in ema.items():
        if "in_proj" not in key or "head" not in key:
            assert torch.allclose(got[key], value, atol=1e-6), key
    fdim = ema["fm_head.in_proj.weight"].shape[1] // 2  # history 1: [noisy patch | previous patch]
    assert got["fm_head.in_proj.weight"].shape[1] == fdim  # history 1 -> 0: the history columns are dropped
    assert torch.allclose(got["fm_head.in_proj.weight"], ema["fm_head.in_proj.weight"][:, :fdim], atol=1e-6)
    mf_old, mf_new = ema["mf_head.in_proj.weight"], got["mf_head.in_proj.weight"]
    assert mf_new.shape[1] == 3 * fdim  # history 1 -> 2: an older patch with zero columns, the newest kept
    assert torch.allclose(mf_new[:, fdim : 2 * fdim], torch.zeros_like(mf_new[:, :fdim]))
    assert torch.allclose(mf_new[:, 2 * fdim :], mf_old[:, fdim:], atol=1e-6)
    # a source of another size is refused with the mismatching weights named, before any training
    capsys.readouterr()
    assert train(run["dump"], tmp_path / "bad_init", 1, "lm.ffn=136", "--init-from", str(run["model"])) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("train_tts: error:") and "shape mismatch" in err and "--init-from" in err


def test_resize_head_history_keeps_the_function_when_growing():
    from voxar.bin.train_tts import resize_head_history
    from voxar.models.heads import FlowHead, HeadConfig

    torch.manual_seed(0)
    small = FlowHead(HeadConfig(patch_dim=8, cond_dim=6, width=16, history=1)).eval()
    big = FlowHead(HeadConfig(patch_dim=8, cond_dim=6, width=16, history=3)).eval()
    state = small.state_dict()
    state["in_proj.weight"] = resize_head_history(state["in_proj.weight"], 8, 3)
    big.load_state_dict(state)
    z, t, h, prev = torch.randn(5, 8), torch.rand(5), torch.randn(5, 6), torch.randn(5, 8)
    older = torch.randn(5, 16)  # patches the small head never saw: they must not change the output
    assert torch.allclose(big(z, t, t, h, torch.cat([older, prev], -1)), small(z, t, t, h, prev), atol=1e-6)
    with pytest.raises(Exception, match="multiple of patch_dim"):
        resize_head_history(torch.zeros(16, 20), 8, 1)


def test_config_errors_are_one_line(run, tmp_path, capsys):
    # a vocabulary that does not match the tokenizer is refused before any work
    assert train(run["dump"], tmp_path / "bad", 1, "lm.vocab_size=50") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("train_tts: error:") and "vocab_size" in err[-1]


def test_tts_batches_follow_the_step_across_epochs_of_different_lengths():
    """Length bucketing gives epochs of different batch counts; resuming at any step continues the same stream of
    batches and never spins on an empty slice (the bug: ``divmod(step, len(sampler))``)."""
    import itertools
    from types import SimpleNamespace

    from voxar.bin.train_tts import Trainer

    class Sampler:
        sizes = [3, 2, 4, 1, 3]
        calls, epoch = 0, 0

        def __len__(self):
            return 4  # an estimate, as a bucketing sampler gives: longer than some epochs

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __iter__(self):
            Sampler.calls += 1
            assert Sampler.calls < 200, "batches() is not advancing"
            return iter([[self.epoch, i] for i in range(self.sizes[self.epoch % 5])])

    def stream(step, n):
        fake = SimpleNamespace(
            step=step, sampler=Sampler(), train_set=SimpleNamespace(batch=lambda ix, rng: ix),
            cfg=SimpleNamespace(seed=0), info=SimpleNamespace(rank=0),
        )  # fmt: skip
        return list(itertools.islice(Trainer.batches(fake), n))

    full = stream(0, 20)
    assert full[:6] == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [2, 0]]
    for start in (1, 3, 5, 9, 10, 14):
        assert stream(start, 20 - start) == full[start:]


def test_ctc_aux_loss_trains_and_warm_starts_a_model_without_ctc(run, tmp_path, capsys):
    """``lm.ctc: true`` + ``ctc_weight`` (with scheduled sampling): the batches carry the target phones, the loss is
    logged, and ``--init-from`` a model without a CTC head copies everything else (the new head starts fresh)."""
    from safetensors.torch import load_file

    exp = tmp_path / "ctc"
    extra = ("lm.ctc=true", "ctc_weight=0.5", "sched_sampling=0.5", "--init-from", str(run["model"]))
    assert train(run["dump"], exp, 3, *extra) == 0
    logs = read_log(exp / "train_log.jsonl", split="train")
    assert logs and all(r["ctc"] > 0 for r in logs)
    got, src = load_file(str(exp / "model" / "model.safetensors")), load_file(str(run["model"] / "model.safetensors"))
    assert "lm.ctc_head.weight" in got and "lm.ctc_head.weight" not in src
    # a CTC weight without the head is a config error, before any work
    capsys.readouterr()
    assert train(run["dump"], tmp_path / "bad_ctc", 1, "ctc_weight=0.5") == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("train_tts: error:") and "lm.ctc" in err
    assert train(run["dump"], tmp_path / "bad_ss", 1, "sched_sampling=1.5") == 1
    assert "sched_sampling" in capsys.readouterr().err.strip().splitlines()[-1]


def test_ctc_targets_leave_out_silent_symbols_and_the_prompt(run):
    import numpy as np

    from voxar.bin.train_tts import TTSData, TTSTrainConfig, make_tokenizer
    from voxar.config import load_config
    from voxar.tts import silent_symbols

    cfg = load_config(TTSTrainConfig, CONFIG, overrides=["lm.ctc=true", "ctc_weight=1.0"])
    tok = make_tokenizer(cfg.tokenizer)
    data = TTSData(run["dump"], tok, cfg)
    silent = {i for i in range(tok.vocab_size) if tok.symbols.symbol(i) in silent_symbols()}
    assert tok.symbols.index(" ") in silent
    for mode in ("ref", "prompt"):
        b = data.batch([0, 1], np.random.default_rng(0), mode=mode)
        for row, n, i in zip(b["ctc_targets"], b["ctc_lens"], (0, 1), strict=True):
            want = [t for t in data.ids[i] if t not in silent]
            assert row[: int(n)].tolist() == want  # the target's phones only, in order, even after a prompt
