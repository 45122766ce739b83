"""The TTS text pointer (voxar.models.pointer) and the phone alignments it trains on (voxar.data.phone_align).

Forced alignment on hand-made posteriors, the frame/patch labelling rules, the phone table, and the LM with a
pointer: the KV-cache decoder equals the teacher-forced pass given the pointers it chose (plain, chunked, with a
prompt), no output depends on a later pointer, the pointer only moves forward and stops at the end of the text, and
the advance head learns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from voxar.data.phone_align import ctc_viterbi, frame_phones, patch_pointer, speech_mask
from voxar.errors import VoxarConfigError
from voxar.models.lm import LMConfig, PatchLM
from voxar.models.pointer import NO_POINTER, TextPointer
from voxar.modules.streaming import clone_state

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
N_MELS, P, V = 8, 2, 40
SKIP = [0, 1, 2, 3, 4, 5]  # specials and two "punctuation" ids


# ------------------------------------------------------------------------------------------------ alignment
def _posteriors(path: list[int], v: int = 6, blank: int = 5, sharp: float = 4.0) -> np.ndarray:
    """Log-probs ``(Te, V)`` that favour ``path`` (class per frame) over the rest."""
    lp = np.full((len(path), v), -sharp)
    lp[np.arange(len(path)), path] = 0.0
    return lp - np.log(np.exp(lp).sum(1, keepdims=True))


def test_ctc_viterbi_finds_the_path_and_keeps_every_phone():
    blank = 5
    lp = _posteriors([5, 1, 1, 5, 2, 5, 5, 3, 5], blank=blank)
    spikes = ctc_viterbi(lp, [1, 2, 3], blank)
    assert spikes.tolist() == [-1, 0, 0, -1, 1, -1, -1, 2, -1]
    # a phone the posteriors miss still gets a frame, in order
    lp = _posteriors([5, 1, 5, 5, 5, 3, 5], blank=blank)
    spikes = ctc_viterbi(lp, [1, 2, 3], blank)
    assert sorted(set(spikes[spikes >= 0].tolist())) == [0, 1, 2]
    assert np.all(np.diff(spikes[spikes >= 0]) >= 0)
    # repeated phones need a blank between them; too few frames is a clear error
    spikes = ctc_viterbi(_posteriors([1, 5, 1], blank=blank), [1, 1], blank)
    assert spikes.tolist() == [0, -1, 1]
    with pytest.raises(ValueError, match="need 3 frames"):
        ctc_viterbi(_posteriors([1, 1], blank=blank), [1, 1], blank)


def test_frame_phones_splits_gaps_and_marks_silence():
    spikes = np.array([-1, -1, -1, 0, -1, -1, -1, -1, 1, -1, -1, -1])
    speech = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    frames = frame_phones(spikes, 2, speech)
    # leading silence -1, speech before the first spike -> phone 0, gap split at its midpoint, trailing silence U
    assert frames.tolist() == [-1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert frame_phones(np.full(4, -1), 3, np.ones(4, bool)).tolist() == [-1] * 4


def test_speech_mask_and_patch_pointer():
    mel = np.full((4, 6), np.log(1e-5))
    mel[:, 2:4] = 0.0
    assert speech_mask(mel).tolist() == [False, False, True, True, False, False]
    ptr = patch_pointer(np.array([-1, 0, 0, 1, 3, 3, 4], dtype=np.int16), 2)
    assert ptr.tolist() == [-1, 1, 3, 4]  # first patch -1; each patch the latest phone it reaches


# ------------------------------------------------------------------------------------------------ the pointer
def test_phone_table_and_window_embedding():
    tp = TextPointer(V, 8, window=1, max_step=2, skip_ids=SKIP)
    # <bos> a , b c <eos> / <bos> x y <eos> <pad>   (4 and 5 are no phones)
    ids = torch.tensor([[2, 10, 4, 11, 12, 3], [2, 20, 21, 3, 0, 0]])
    lens = torch.tensor([4, 2])
    pos, n = tp.phone_table(ids, lens)
    assert n.tolist() == [3, 2]
    assert pos[0].tolist() == [0, 1, 3, 4, 5] and pos[1].tolist() == [0, 1, 2, 3, 3]
    # with a prompt transcript "a ," the target starts at token 2: its phones are b, c
    pos, n = tp.phone_table(ids[:1], lens[:1], torch.tensor([2]))
    assert n.tolist() == [2] and pos[0].tolist() == [2, 3, 4, 5]
    pos, _ = tp.phone_table(ids, lens)
    e = tp.embed(ids, pos, torch.tensor([[-1, 0, 1, 2, 3, NO_POINTER]] * 2))
    assert e.shape == (2, 6, 8)
    torch.testing.assert_close(e[0, 5], tp.norm(tp.emb.weight[-1]))  # prompt slots: the "no pointer" row
    # phone 1 of item 0 is "b" at position 3: window (",", "b", "c") from the three offset tables, RMS-normalised
    rows = tp.emb.weight
    torch.testing.assert_close(e[0, 2], tp.norm(rows[0 * V + 4] + rows[1 * V + 11] + rows[2 * V + 12]))
    assert abs(float(e[0, 2].square().mean().sqrt()) - 3.0) < 1e-3  # INIT_GAIN: the scale of the patch input
    torch.testing.assert_close(e[1, 3], e[1, 4])  # U and beyond: <eos>


def test_pointer_moves_by_the_accumulated_expected_advance():
    """p(advance 1) = 0.4 per patch moves the pointer 4 times in 10 patches (argmax would never move it); the
    pointer stops at the last phone."""
    tp = TextPointer(V, 4, window=1, max_step=2, skip_ids=SKIP)
    with torch.no_grad():
        tp.adv_head.weight.zero_()
        tp.adv_head.bias.copy_(torch.log(torch.tensor([0.6, 0.4, 1e-9])))
    ptr, acc, n = torch.tensor([-1]), torch.zeros(1), torch.tensor([8])
    seen = []
    for _ in range(10):
        ptr, acc = tp.next_pointer(torch.zeros(1, 4), ptr, n, acc)
        seen.append(int(ptr))
    assert seen[-1] == 3 and all(b - a in (0, 1) for a, b in zip(seen, seen[1:], strict=False))
    for _ in range(40):
        ptr, acc = tp.next_pointer(torch.zeros(1, 4), ptr, n, acc)
    assert int(ptr) == 8


def _lm(chunk: int = 1, seed: int = 0, dwell: int = 0) -> PatchLM:
    torch.manual_seed(seed)
    cfg = LMConfig(
        vocab_size=V, n_mels=N_MELS, patch_size=P, d_model=32, n_layers=2, n_heads=4, ffn=64, ref_encoder=None,
        speaker_dim=16, attn_impl="math", chunk_size=chunk, max_patches=64, pointer=True, pointer_skip_ids=SKIP,
        pointer_dwell=dwell,
    )  # fmt: skip
    lm = PatchLM(cfg).eval()
    with torch.no_grad():  # an advance head that moves: bias towards +1 (with a dwell input: ~0.5 phone a patch)
        bias = [1.0, 0.0, -1.0, -2.0] if dwell else [0.0, 0.5, 0.0, -1.0]
        lm.pointer.adv_head.bias.copy_(torch.tensor(bias))
    return lm


def _batch():
    g = torch.Generator().manual_seed(1)
    text = torch.randint(4, V, (2, 9), generator=g)
    text_lens = torch.tensor([9, 6])
    mels = torch.randn(2, N_MELS, 25, generator=g)
    mel_lens = torch.tensor([25, 17])
    return text, text_lens, mels, mel_lens


def _free_decode(lm, targets, chunk, **cond):
    """Prefill + step with the true previous patches; the pointer runs free. -> h (B, N, D), pointer slots."""
    h, state = lm.prefill(chunk_size=chunk, **cond)
    hs = [h]
    for i in range(1, targets.shape[1]):
        h, state = lm.step(targets[:, i - 1], state)
        hs.append(h)
    return torch.stack(hs, 1), state


def test_dwell_counts_slots_since_the_pointer_moved():
    tp = TextPointer(V, 4, window=1, max_step=2, skip_ids=SKIP, max_dwell=3)
    ptr = torch.tensor([[NO_POINTER, NO_POINTER, -1, 0, 0, 0, 0, 0, 0, 2, 3, 3]])
    assert tp.dwell(ptr).tolist() == [[0, 1, 0, 0, 1, 2, 3, 3, 3, 0, 0, 1]]
    ids = torch.tensor([[2, 7, 8, 9, 3]])
    pos, _ = tp.phone_table(ids, torch.tensor([3]))
    vals = torch.tensor([[0, 0, 0]])
    a, b = tp.embed(ids, pos, vals, torch.tensor([[0, 1, 5]])).unbind(1)[1:]
    assert not torch.allclose(tp.embed(ids, pos, vals, torch.tensor([[0, 0, 0]]))[0, 1], a)  # dwell is an input
    assert not torch.allclose(a, b)
    assert torch.allclose(b, tp.embed(ids, pos, vals, torch.tensor([[0, 1, 3]]))[0, 2])  # clamped at max_dwell
    with pytest.raises(ValueError, match="dwell"):
        tp.embed(ids, pos, vals)


@pytest.mark.parametrize(("chunk", "dwell"), [(1, 0), (2, 0), (1, 3), (2, 3)])
def test_decode_equals_teacher_forced_with_the_chosen_pointers(chunk, dwell):
    lm = _lm(chunk, dwell=dwell)
    text, tl, mels, ml = _batch()
    with torch.no_grad():
        targets, n_tgt, _ = lm.patchify(mels, ml)
        hs, state = _free_decode(lm, targets, chunk, text_ids=text, text_lens=tl)
        ptr = state.ptr_slots  # (B, N): every query's pointer
        assert ptr.shape == targets.shape[:2] and (ptr[:, 0] == -1).all()
        assert (ptr.diff(dim=1) >= 0).all() and (ptr.diff(dim=1) <= 3).all()
        assert (ptr.max(1).values <= state.ptr_n).all() and (ptr.max(1).values > 0).all()
        if dwell:  # the pointer stayed on some phones: dwells > 0 were read
            assert (lm.pointer.dwell(ptr) > 0).any()
        out = lm(text, tl, mels, ml, pointer=ptr)
        assert out["adv_logits"].shape == (*targets.shape[:2], 4)
    mask = out["mask"]
    assert (hs - out["h"])[mask].abs().max() < 1e-5
    # with a prompt (continuation): the target's phones start at text_start
    prompt = torch.randn(2, N_MELS, 7)
    start = torch.tensor([3, 2])
    with torch.no_grad():
        hs, state = _free_decode(lm, targets, chunk, text_ids=text, text_lens=tl, prompt_mels=prompt,
                                 text_start=start)  # fmt: skip
        n_p = lm.patchify(prompt, align="end")[0].shape[1]
        ptr = state.ptr_slots[:, n_p:]
        assert (state.ptr_slots[:, :n_p] == NO_POINTER).all()
        out = lm(text, tl, mels, ml, prompt_mels=prompt, pointer=ptr, text_start=start)
    assert (hs - out["h"])[out["mask"]].abs().max() < 1e-5


@pytest.mark.parametrize("dwell", [0, 3])
def test_no_output_depends_on_a_later_pointer(dwell):
    """h_i reads the pointers of queries <= i only: changing pointer j moves h_j and later, never earlier."""
    lm = _lm(1, dwell=dwell)
    text, tl, mels, ml = _batch()
    n = int(lm.patchify(mels[:1], ml[:1])[1][0])
    base = torch.arange(n)[None].clamp_max(6) - 1  # -1, 0, 1, ...
    with torch.no_grad():
        h0 = lm(text[:1], tl[:1], mels[:1], ml[:1], pointer=base)["h"]
        j = 5
        moved = base.clone()
        moved[0, j:] += 1
        h1 = lm(text[:1], tl[:1], mels[:1], ml[:1], pointer=moved)["h"]
    assert (h1[0, :j] - h0[0, :j]).abs().max() < 1e-6
    assert (h1[0, j] - h0[0, j]).abs().max() > 1e-4


def test_advance_head_learns_and_needs_its_inputs():
    lm = _lm(1).train()
    text, tl, mels, ml = _batch()
    n = lm.patchify(mels, ml)[0].shape[1]
    ptr = (torch.arange(n)[None].expand(2, -1) // 2 - 1).clamp_max(5)  # one phone every two patches
    opt = torch.optim.Adam(lm.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = lm.pointer_loss(lm(text, tl, mels, ml, pointer=ptr), ptr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    with pytest.raises(VoxarConfigError, match="aligned pointer"):
        lm(text, tl, mels, ml)
    plain = PatchLM(LMConfig(vocab_size=V, n_mels=N_MELS, patch_size=P, d_model=32, n_heads=4, ref_encoder=None))
    assert plain.pointer is None
    with pytest.raises(VoxarConfigError, match="lm.pointer"):
        plain.pointer_loss({}, ptr)


def test_generation_ends_and_pointer_stays_in_the_text():
    from voxar.models.generate import stream
    from voxar.models.heads import FlowHead, HeadConfig

    lm = _lm(1)
    head = FlowHead(HeadConfig(mode="fm", patch_dim=N_MELS * P, cond_dim=32, width=32, n_blocks=1, history=0))
    text, tl, _, _ = _batch()
    g = torch.Generator().manual_seed(0)
    chunks = list(stream(lm, head.eval(), text, tl, steps=2, generator=g, stop_threshold=2.0))
    assert chunks and sum(int(v[0]) for _, v in chunks) > 0
    # the stop head never fires here (threshold 2): the pointer ends each item 5 patches after its last phone
    with torch.no_grad():
        lm.pointer.adv_head.bias.copy_(torch.tensor([-9.0, -9.0, -9.0, 9.0]))  # 3 phones per patch
    chunks = list(stream(lm, head.eval(), text, tl, steps=1, generator=g, stop_threshold=2.0, pointer_tail=5))
    frames = sum(v for _, v in chunks)
    n_phones = torch.tensor([9, 6])  # no skip ids among the random text ids >= 6; 4 and 5 may occur
    assert (frames // P <= -(-n_phones // 3) + 6).all(), frames


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.skipif(__import__("shutil").which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_align_train_and_speak_with_a_pointer_model(tmp_path):
    """``align_phones`` on a tiny espeak-ng dump, ``train_tts`` with ``lm.pointer`` (the advance loss is logged and
    falls), and the model speaks through the TTS API without and with a prompt transcript (pointer from
    ``text_start``); a dump without alignments is a clear error."""
    from test_tts_train import CONFIG, build_corpus

    from voxar.audio import MelConfig
    from voxar.bin.align_phones import align_dump
    from voxar.bin.train_tts import main
    from voxar.data.phone_align import load_alignments
    from voxar.models.griffinlim import GriffinLimVocoder
    from voxar.train.logger import read_log
    from voxar.tts import TTS

    dump = build_corpus(tmp_path / "corpus")
    argv = ["--config", str(CONFIG), "--dump", str(dump), "--max-steps", "12", "--threads", "1", "--no-progress"]
    argv += ["--override", "save_every=12", "tensorboard=false", "tokenizer=phoneme", "lm.vocab_size=65",
             "lm.pointer=true", "lm.pointer_dwell=4", "log_every=1", "feedback=false"]  # fmt: skip
    assert main([*argv[:4], "--exp", str(tmp_path / "no_align"), *argv[4:]]) != 0  # no alignments yet
    assert align_dump(dump) == {"aligned": 32, "skipped": 0}
    frames = load_alignments(dump)
    assert len(frames) == 32 and all(np.all(np.diff(f) >= 0) for f in frames.values())
    exp = tmp_path / "exp"
    assert main([*argv[:4], "--exp", str(exp), *argv[4:]]) == 0
    records = read_log(exp / "train_log.jsonl", split="train")
    assert all(r["pointer"] is not None for r in records)
    assert np.mean([r["pointer"] for r in records[-3:]]) < np.mean([r["pointer"] for r in records[:3]])
    tts = TTS.from_pretrained(exp / "model", vocoder=GriffinLimVocoder(MelConfig.preset("16k"), n_iter=2))
    assert tts.model.lm.pointer is not None and tts.model.lm.feedback is False  # the model dir's default
    wav, _ = tts.synthesize("Birds sing.", head="fm", steps=1, seed=0)
    assert wav.size > 0 and np.isfinite(wav).all()
    tts.set_feedback(True)
    prompt = tmp_path / "corpus" / "wav" / "en-us_00.wav"
    for prompt_text in (None, "The cat sat on the mat."):
        wav, sr = tts.synthesize("Birds sing.", prompt_wav=prompt, prompt_text=prompt_text, head="mf", seed=0)
        assert sr == 16000 and wav.ndim == 1 and wav.size > 0 and np.isfinite(wav).all()
    from voxar.bin.tts_probe import probe  # teacher-forced diagnosis: reads the recordings' phone alignments

    report = probe(exp / "model", tmp_path / "corpus" / "data", max_utts=2, tts=tts)
    assert report["utts"] == 2 and np.isfinite(report["mse"]["lm"])

    # ground-truth-aligned mels of the dump (the model speaks along the aligned pointers), then a vocoder
    # fine-tuned on them; a rerun keeps the finished shards
    from voxar.bin.gta_mels import main as gta_main
    from voxar.bin.train_vocoder import main as voc_main
    from voxar.data.dataset import MelDataset

    gta = tmp_path / "gta"
    gta_args = ["--model", str(exp / "model"), "--dump", str(dump), "--out", str(gta), "--steps", "2"]
    gta_args += ["--noise", "utterance", "--shard-size", "10", "--threads", "1", "--no-progress"]
    assert gta_main(gta_args) == 0
    real, made = MelDataset(dump), MelDataset(gta)
    assert len(made) == 32 and sorted(gta.glob("gta.*.safetensors")) and made.mel_config() == real.mel_config()
    by_utt = {real[i]["utt"]: real[i]["mel"] for i in range(len(real))}
    for i in range(len(made)):
        item = made[i]
        assert item["mel"].shape == by_utt[item["utt"]].shape and torch.isfinite(item["mel"]).all()
        assert (item["mel"] - by_utt[item["utt"]]).abs().mean() > 1e-3  # the model's, not the recording's
    first = made[0]["mel"].clone()
    stamp = (gta / "gta.00000.safetensors").stat().st_mtime_ns
    assert gta_main(gta_args) == 0 and (gta / "gta.00000.safetensors").stat().st_mtime_ns == stamp
    assert gta_main([*gta_args[:5], str(tmp_path / "gta2"), *gta_args[6:], "--max-utts", "2"]) == 0
    torch.testing.assert_close(MelDataset(tmp_path / "gta2")[0]["mel"], first, rtol=0, atol=0)  # deterministic
    voc = ["--config", str(REPO / "egs" / "synth" / "conf" / "vocoder_tiny.yaml"), "--data", str(dump.parent / "data")]
    voc += ["--exp", str(tmp_path / "voc"), "--gta", str(gta), "--max-steps", "3", "--threads", "1", "--no-progress"]
    voc += ["--override", "model.dim=32", "model.intermediate_dim=64", "model.num_layers=1", "batch_size=2",
            "tensorboard=false", "log_every=1", "gta_prob=0.5"]  # fmt: skip
    assert voc_main(voc) == 0 and (tmp_path / "voc" / "model" / "model.safetensors").is_file()
    bad = list(voc)
    bad[bad.index("--gta") + 1], bad[bad.index("--exp") + 1] = str(tmp_path / "missing"), str(tmp_path / "voc2")
    assert voc_main(bad) != 0  # no GTA dump there: a clear error


def test_input_drop_removes_whole_previous_patches_in_training_only():
    torch.manual_seed(0)
    cfg = LMConfig(
        vocab_size=V, n_mels=N_MELS, patch_size=P, d_model=32, n_layers=2, n_heads=4, ffn=64, ref_encoder=None,
        speaker_dim=16, dropout=0.0, patch_dropout=0.0, input_noise=0.0, input_drop=0.5, max_patches=64,
    )  # fmt: skip
    lm = PatchLM(cfg).train()
    text, tl, mels, ml = _batch()
    mels = mels[:1].clone().requires_grad_(True)
    out = lm(text[:1], tl[:1], mels, ml[:1])
    (grad,) = torch.autograd.grad(out["h"].square().sum(), mels)
    n = int(out["lengths"][0])
    per_patch = grad[0].abs().sum(0)[: (n - 1) * P].reshape(n - 1, P).sum(-1)  # patches 0..N-2 are inputs
    dropped = int((per_patch == 0).sum())
    assert 0 < dropped < n - 1, (dropped, n)  # about half of the inputs are gone, not all
    lm.eval()
    out = lm(text[:1], tl[:1], mels, ml[:1])
    (grad,) = torch.autograd.grad(out["h"].square().sum(), mels)
    assert (grad[0].abs().sum(0)[: (n - 1) * P].reshape(n - 1, P).sum(-1) > 0).all()  # eval: every input is read
    with pytest.raises(VoxarConfigError, match="input_drop"):
        LMConfig(input_drop=1.0)


def test_decoding_without_feedback_reads_only_the_pointer():
    lm = _lm(1)
    text, tl, _, _ = _batch()
    x1, x2 = torch.randn(2, 2, N_MELS * P)
    with torch.no_grad():
        _, state = lm.prefill(text, tl)
        snap = clone_state(state)
        h1, _ = lm.step(x1, state)
        h2, _ = lm.step(x2, snap)
        assert (h1 - h2).abs().max() > 1e-4  # feedback on: the generated patch matters
        lm.feedback = False
        _, state = lm.prefill(text, tl)
        snap = clone_state(state)
        h1, _ = lm.step(x1, state)
        h2, _ = lm.step(x2, snap)
    torch.testing.assert_close(h1, h2)  # off: it does not
    lm2 = _lm(2)
    lm2.feedback = False
    with torch.no_grad(), pytest.raises(VoxarConfigError, match="chunk size 1"):
        lm2.step(x1, lm2.prefill(text, tl)[1])


@pytest.mark.parametrize("dwell", [0, 3])
def test_teacher_forced_without_feedback_equals_free_decoding_along_its_pointer(dwell):
    """forward(feedback=False) with the pointer path a feedback-off decode chose gives that decode's states whatever
    the target patches are (what voxar.bin.gta_mels relies on); a prompt's patches are still read."""
    lm = _lm(1, dwell=dwell)
    lm.feedback = False
    text, tl, mels, ml = _batch()
    prompt = torch.randn(2, N_MELS, 7)
    start = torch.tensor([3, 2])
    with torch.no_grad():
        targets, _, _ = lm.patchify(mels, ml)
        for cond in ({}, {"prompt_mels": prompt, "text_start": start}):
            hs, state = _free_decode(lm, torch.randn_like(targets), 1, text_ids=text, text_lens=tl, **cond)
            n_p = state.ptr_slots.shape[1] - targets.shape[1]
            ptr = state.ptr_slots[:, n_p:]
            out = lm(text, tl, mels, ml, pointer=ptr, feedback=False, **cond)
            assert (hs - out["h"])[out["mask"]].abs().max() < 1e-5
            fed = lm(text, tl, mels, ml, pointer=ptr, **cond)  # with feedback the targets are read
            assert (fed["h"] - out["h"])[out["mask"]].abs().max() > 1e-4
        moved = lm(text, tl, mels, ml, pointer=ptr, feedback=False, prompt_mels=prompt + 1.0, text_start=start)
        assert (moved["h"] - out["h"])[out["mask"]].abs().max() > 1e-4  # the prompt's patches are inputs
    with pytest.raises(VoxarConfigError, match="chunk size 1"):
        _lm(2)(text, tl, mels, ml, pointer=ptr, feedback=False)


def test_feedback_off_as_a_model_default_needs_a_pointer():
    from voxar.models.tts_model import TTSModel, TTSModelConfig

    with pytest.raises(VoxarConfigError, match="feedback: false"):
        TTSModelConfig(feedback=False)
    cfg = TTSModelConfig(lm=LMConfig(pointer=True, pointer_skip_ids=SKIP), feedback=False)
    assert TTSModel(cfg).lm.feedback is False
