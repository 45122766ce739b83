"""The patch LM (voxar.models.lm), its transformer/attention modules and the reference encoder.

Tiny models, CPU, one thread. Masks are checked by gradient, the KV-cache decoder against the teacher-forced pass,
batching against single items, and a tiny LM + FM head must overfit two random mel-like utterances.
"""

from __future__ import annotations

import pytest
import torch

from voxar.config import from_dict, to_dict
from voxar.errors import VoxarConfigError, VoxarTextError
from voxar.models.generate import generate, stream
from voxar.models.heads import FlowHead, HeadConfig
from voxar.models.lm import CLEAN, PAD, PREFIX, QUERY, LMConfig, PatchLM, slot_mask
from voxar.models.modeldir import load_model_dir, save_model_dir
from voxar.models.refenc import RefEncoder, RefEncoderConfig
from voxar.modules.attention import KVCache, MultiHeadAttention, RotaryEmbedding, attention
from voxar.modules.streaming import clone_state

N_MELS, P, SPK = 8, 2, 16


pytestmark = pytest.mark.usefixtures("one_thread")


def _lm(chunk: int = 1, impl: str = "math", ref: bool = True, seed: int = 0, **kw) -> PatchLM:
    torch.manual_seed(seed)
    ref_cfg = RefEncoderConfig(n_mels=N_MELS, channels=16, out_dim=SPK) if ref else None
    dims = dict(vocab_size=40, n_mels=N_MELS, patch_size=P, d_model=32, n_layers=2, n_heads=4, ffn=64)
    cfg = LMConfig(**dims, speaker_dim=SPK, ref_encoder=ref_cfg, attn_impl=impl, chunk_size=chunk, max_patches=64, **kw)
    return PatchLM(cfg).eval()


def _batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(4, 40, (3, 9), generator=g)
    text_lens = torch.tensor([9, 4, 6])
    mels = torch.randn(3, N_MELS, 25, generator=g)
    mel_lens = torch.tensor([25, 14, 19])  # 13, 7, 10 patches; odd lengths pad the last patch
    spk = torch.randn(3, SPK, generator=g)
    return text, text_lens, mels, mel_lens, spk


def _decode(lm: PatchLM, out: dict, chunk: int, **cond) -> torch.Tensor:
    """Teacher-forced KV-cache decoding: prefill, then step with the true previous patches -> (B, N, D)."""
    h, state = lm.prefill(*cond.pop("text"), chunk_size=chunk, **cond)
    hs = [h]
    for i in range(1, out["targets"].shape[1]):
        h, state = lm.step(out["targets"][:, i - 1], state)
        hs.append(h)
    return torch.stack(hs, dim=1)


# ------------------------------------------------------------------------------------------------ attention
def test_kv_cache_grows_truncates_and_caps():
    cache = KVCache.empty(2, 3, 4, capacity=2, max_capacity=7)
    k = torch.randn(2, 3, 5, 4)
    keys, values = cache.append(k, k + 1)
    assert cache.capacity >= 5 and cache.length == 5
    torch.testing.assert_close(keys, k)
    torch.testing.assert_close(values, k + 1)
    cache.truncate(3)
    keys, _ = cache.append(k[:, :, :2], k[:, :, :2])
    torch.testing.assert_close(keys, torch.cat([k[:, :, :3], k[:, :, :2]], dim=2))
    with pytest.raises(RuntimeError, match="KV cache is full"):
        cache.append(k[:, :, :3], k[:, :, :3])
    with pytest.raises(ValueError):
        cache.truncate(9)


def test_math_and_sdpa_attention_agree_and_cache_matches_full():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4, 7, 8).unbind(0)
    mask = torch.rand(2, 1, 7, 7) > 0.4
    mask |= torch.eye(7, dtype=torch.bool)
    torch.testing.assert_close(attention(q, k, v, mask, "math"), attention(q, k, v, mask, "sdpa"), atol=1e-5, rtol=1e-5)
    additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(attention(q, k, v, additive, "math"), attention(q, k, v, mask, "math"))
    # causal attention, token by token through the cache == full pass
    mha = MultiHeadAttention(32, 4).eval()
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 6, 32)
    pos = torch.arange(6).expand(2, -1) + torch.tensor([[0], [5]])  # per-item offsets
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    full = mha(x, rope(pos), causal)
    cache = KVCache.empty(2, 4, 8, capacity=1)
    steps = [mha(x[:, i : i + 1], rope(pos[:, i : i + 1]), None, cache) for i in range(6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ config
def test_config_round_trip_and_named_sizes():
    for name in ("tiny", "small"):
        cfg = LMConfig.named(name, vocab_size=50, train_chunk_sizes=[1, 4])
        again = from_dict(LMConfig, to_dict(cfg))
        assert again == cfg
    tiny, small = LMConfig.named("tiny"), LMConfig.named("small")
    assert (tiny.d_model, tiny.n_layers, tiny.n_heads, tiny.ffn) == (128, 2, 4, 512)
    assert (small.d_model, small.n_layers, small.n_heads, small.ffn) == (512, 8, 8, 2048)
    assert (tiny.patch_size, tiny.n_mels, tiny.patch_dropout, tiny.input_noise) == (4, 80, 0.2, 0.1)
    assert from_dict(LMConfig, {**to_dict(tiny), "ref_encoder": None}).ref_encoder is None
    with pytest.raises(VoxarConfigError, match="unknown key"):
        from_dict(LMConfig, {"d_modle": 3})
    with pytest.raises(VoxarConfigError):
        LMConfig(d_model=30, n_heads=4)
    with pytest.raises(VoxarConfigError):
        LMConfig.named("huge")


def test_save_load_model_dir(tmp_path):
    lm = _lm()
    lm.set_mel_stats(torch.linspace(-5, -1, N_MELS), torch.linspace(1, 2, N_MELS))
    save_model_dir(lm, lm.cfg, "tts-lm", tmp_path / "lm")
    loaded, cfg = load_model_dir(tmp_path / "lm", "tts-lm", LMConfig, PatchLM)
    assert cfg == lm.cfg
    text, tl, mels, ml, spk = _batch()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(text, tl, mels, ml, spk_emb=spk)["h"], lm(text, tl, mels, ml, spk_emb=spk)["h"]
        )
        mel = torch.randn(2, N_MELS, 12)
        torch.testing.assert_close(loaded.unpatchify(loaded.patchify(mel)[0]), mel, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ masks
def test_slot_mask_rules():
    """Chunk C = 2: clean tokens see clean chunks <= theirs, queries see clean chunks < theirs + own-chunk queries."""
    kind = torch.tensor([[PREFIX, PREFIX, PAD, CLEAN, CLEAN, CLEAN, QUERY, QUERY, QUERY, QUERY, QUERY]])
    idx = torch.tensor([[0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 4]])
    m = slot_mask(kind, idx, kind, idx, 2)[0, 0]
    assert m[:, :2][kind[0] != PAD].all() and not m[:, 2][torch.arange(11) != 2].any()  # prefix yes, pad no
    assert m[2, 2]  # a padding row still sees itself
    assert m[3, 3:5].all() and not m[3, 5]  # clean 0 sees clean 0, 1 (its chunk), not clean 2
    assert m[5, 3:6].all()  # clean 2 (chunk 1) sees chunks 0 and 1
    assert not m[6, 3:6].any() and not m[7, 3:6].any()  # queries 0, 1 (chunk 0) see no clean token
    assert m[8, 3:5].all() and not m[8, 5]  # query 2 (chunk 1) sees clean chunk 0 only
    assert m[7, 6:8].all() and not m[7, 8:].any()  # query 1 sees queries 0, 1
    assert m[9, 8:10].all() and not m[9, 6:8].any() and not m[9, 10]  # query 3: own chunk, causal
    causal = slot_mask(kind, idx, kind, idx, 1)[0, 0]
    assert causal[9, 6:10].all() and not causal[9, 10]
    prefix_causal = slot_mask(kind, idx, kind, idx, 1, prefix_causal=True)[0, 0]
    assert not prefix_causal[0, 1] and m[0, 1]


@pytest.mark.parametrize("chunk", [1, 3])
def test_mask_by_gradient(chunk):
    """h_i depends on every patch < i (and the text), and on no patch >= i, in causal and chunk-causal modes."""
    lm = _lm(chunk)
    text, tl, mels, ml, spk = _batch()
    text, tl, mels, ml, spk = text[:1], tl[:1], mels[:1].clone().requires_grad_(True), ml[:1], spk[:1]
    out = lm(text, tl, mels, ml, spk_emb=spk)
    n = int(out["lengths"][0])
    for i in range(n):
        (grad,) = torch.autograd.grad(out["h"][0, i].square().sum(), mels, retain_graph=True)
        per_frame = torch.nn.functional.pad(grad[0].abs().sum(0), (0, n * P - grad.shape[-1]))  # (N * P,)
        per_patch = per_frame.reshape(n, P).sum(-1)  # (N,)
        assert (per_patch[:i] > 0).all(), f"h_{i} must see patches < {i}"
        assert (per_patch[i:] == 0).all(), f"h_{i} must not see patches >= {i}"


def test_chunk_mode_differs_only_after_the_first_chunk():
    text, tl, mels, ml, spk = _batch()
    lm = _lm()
    with torch.no_grad():
        h1 = lm(text, tl, mels, ml, spk_emb=spk, chunk_size=1)["h"]
        h3 = lm(text, tl, mels, ml, spk_emb=spk, chunk_size=3)["h"]
    torch.testing.assert_close(h3[:, :3], h1[:, :3], atol=1e-5, rtol=1e-5)  # chunk 0: identical attention
    assert (h3[0, 3:] - h1[0, 3:]).abs().max() > 1e-3


# ------------------------------------------------------------------------------------------------ KV cache decode
@pytest.mark.parametrize("impl", ["math", "sdpa"])
@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_kv_cache_decode_equals_teacher_forced(chunk, impl):
    lm = _lm(chunk, impl)
    text, tl, mels, ml, spk = _batch()
    with torch.no_grad():
        out = lm(text, tl, mels, ml, spk_emb=spk)
        assert int(out["chunk_size"]) == chunk  # eval mode uses cfg.chunk_size
        hs = _decode(lm, out, chunk, text=(text, tl), spk_emb=spk)
        out_ref = lm(text, tl, mels, ml, ref_mels=mels, ref_lens=ml)  # reference-encoder conditioning
        hs_ref = _decode(lm, out_ref, chunk, text=(text, tl), ref_mels=mels, ref_lens=ml)
    mask = out["mask"]
    assert (hs - out["h"])[mask].abs().max() < 1e-5
    assert (hs_ref - out_ref["h"])[mask].abs().max() < 1e-5


def test_state_snapshot_and_rollback():
    lm = _lm(2)
    text, tl, _, _, spk = _batch()
    with torch.no_grad():
        h, state = lm.prefill(text, tl, spk_emb=spk)
        patches = torch.randn(4, 3, N_MELS * P)
        for x in patches[:2]:
            h, state = lm.step(x, state)
        snap = clone_state(state)
        first = [lm.step(x, state)[0] for x in patches[2:]]
        again = [lm.step(x, snap)[0] for x in patches[2:]]
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------------------------------ padding / prompt
@pytest.mark.parametrize("chunk", [1, 3])
def test_batch_with_padding_equals_items_alone(chunk):
    lm = _lm(chunk)
    text, tl, mels, ml, spk = _batch()
    text = text.clone()
    text[1, 4:] = 0  # the pad id; other values past text_lens must not matter either
    text[2, 6:] = 17
    with torch.no_grad():
        out = lm(text, tl, mels, ml, spk_emb=spk)
        for b in range(3):
            t, m = int(tl[b]), int(ml[b])
            alone = lm(
                text[b : b + 1, :t], tl[b : b + 1], mels[b : b + 1, :, :m], ml[b : b + 1], spk_emb=spk[b : b + 1]
            )
            n = int(alone["lengths"][0])
            assert n == int(out["lengths"][b])
            torch.testing.assert_close(out["h"][b, :n], alone["h"][0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out["stop_logits"][b, :n], alone["stop_logits"][0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out["targets"][b, :n], alone["targets"][0])


@pytest.mark.parametrize("chunk", [1, 2])
def test_prompt_continuation(chunk):
    lm = _lm(chunk)
    text, tl, mels, ml, spk = _batch()
    prompt = torch.randn(3, N_MELS, 9)  # 9 frames -> the first frame is dropped, 4 patches
    with torch.no_grad():
        out = lm(text, tl, mels, ml, prompt_mels=prompt, n_history=2)
        assert out["h"].shape == (3, 13, 32) and out["stop_logits"].shape == (3, 13)
        assert out["targets"].shape == (3, 13, N_MELS * P) and out["history"].shape == (3, 13, 2 * N_MELS * P)
        prompt_patches = lm.patchify(prompt, align="end")[0]
        assert prompt_patches.shape[1] == 4
        torch.testing.assert_close(prompt_patches[:, 0], lm.patchify(prompt[:, :, 1:3])[0][:, 0])
        # the first target's history is the prompt's last two patches
        torch.testing.assert_close(out["history"][:, 0], prompt_patches[:, 2:].reshape(3, -1))
        hs = _decode(lm, out, chunk, text=(text, tl), prompt_mels=prompt)
        assert (hs - out["h"])[out["mask"]].abs().max() < 1e-5
        # per-item prompt lengths in training: item 1's prompt is 2 patches
        lens = torch.tensor([9, 5, 8])
        out2 = lm(text, tl, mels, ml, prompt_mels=prompt, prompt_lens=lens)
        alone = lm(text[1:2], tl[1:2], mels[1:2], ml[1:2], prompt_mels=prompt[1:2, :, :5])
        n = int(alone["lengths"][0])
        torch.testing.assert_close(out2["h"][1, :n], alone["h"][0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="same number of patches"):
        lm.prefill(text, tl, prompt_mels=prompt, prompt_lens=lens)


def test_text_too_long_is_a_clear_error():
    lm = _lm(max_text_len=5)
    text, tl, mels, ml, _ = _batch()
    with pytest.raises(VoxarTextError, match="max_text_len"):
        lm(text, tl, mels, ml)


# ------------------------------------------------------------------------------------------------ reference encoder
def test_refenc_masked_pooling_ignores_padding():
    torch.manual_seed(0)
    enc = RefEncoder(RefEncoderConfig(n_mels=N_MELS, channels=16, out_dim=SPK)).eval()
    mels = torch.randn(2, N_MELS, 30)
    lens = torch.tensor([30, 17])
    noisy = mels.clone()
    noisy[1, :, 17:] = 100.0 * torch.randn(N_MELS, 13)
    with torch.no_grad():
        a, b = enc(mels, lens), enc(noisy, lens)
        alone = enc(mels[1:, :, :17])
    assert a.shape == (2, SPK)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[1:], alone, atol=1e-5, rtol=1e-5)
    assert (enc(mels[1:, :, :20]) - alone).abs().max() > 1e-4  # the valid frames do matter


# ------------------------------------------------------------------------------------------------ training / generation
def _mel_like(n_frames: int, seed: int) -> torch.Tensor:
    """A smooth random log-mel-like ``(80, T)``: a few moving formant bumps over a sloped floor, plus noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, n_frames)[None, :]
    f = torch.linspace(0, 1, 80)[:, None]
    mel = -4.0 - 2.0 * f
    for _ in range(3):
        c0, c1, w = torch.rand(3, generator=g)
        mel = mel + 3.0 * torch.exp(
            -((f - (0.2 + 0.6 * c0 + 0.2 * (c1 - 0.5) * torch.sin(6 * t))) ** 2) / (0.002 + 0.01 * w)
        )
    return mel + 0.05 * torch.randn(80, n_frames, generator=g)


def test_tiny_model_overfits_two_utterances():
    torch.manual_seed(0)
    lm = PatchLM(LMConfig.named("tiny", vocab_size=40))
    head = FlowHead(HeadConfig.named("tiny", batch_mul=8))  # 8 noise draws per hidden state
    mels = torch.stack([_mel_like(48, 1), _mel_like(48, 2)])
    mel_lens = torch.tensor([48, 40])
    lm.set_mel_stats(mels.mean().expand(80), mels.std().expand(80))
    text = torch.randint(4, 40, (2, 12), generator=torch.Generator().manual_seed(3))
    text_lens = torch.tensor([12, 9])
    params = list(lm.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=3e-3)

    def losses(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        out = lm(text, text_lens, mels, mel_lens, n_history=1)
        m = out["mask"]
        g = None if train else torch.Generator().manual_seed(0)  # fixed noise and t for evaluation
        flow, _ = head.loss(out["targets"][m], out["h"][m], out["history"][m], out["target_mask"][m], generator=g)
        return flow, lm.stop_loss(out)

    lm.eval(), head.eval()
    with torch.no_grad():
        flow0, stop0 = losses(False)
    lm.train(), head.train()
    for _ in range(100):
        flow, stop = losses(True)
        opt.zero_grad()
        (flow + stop).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    lm.eval(), head.eval()
    with torch.no_grad():
        flow1, stop1 = losses(False)
    assert torch.isfinite(flow1) and torch.isfinite(stop1)
    assert flow1 < 0.5 * flow0, (flow0.item(), flow1.item())
    assert stop1 < 0.5 * stop0, (stop0.item(), stop1.item())
    # free-running generation stops within 2 patches of the training lengths (method brief 5.3)
    _, lens = generate(lm, head, text, text_lens, generator=torch.Generator().manual_seed(0))
    assert ((lens - mel_lens).abs() <= 2 * 4).all(), (lens.tolist(), mel_lens.tolist())


@pytest.mark.parametrize("chunk", [1, 3])
def test_generation_length_guards_and_streaming(chunk):
    lm = _lm(chunk)
    head = FlowHead(HeadConfig(patch_dim=N_MELS * P, cond_dim=32, width=16, n_blocks=1, history=2, fm_steps=2))
    text, tl, _, _, spk = _batch()
    tl = torch.tensor([3, 1, 2])

    def run(**kw):
        return generate(lm, head, text, tl, spk_emb=spk, generator=torch.Generator().manual_seed(0), **kw)

    # never stops on its own -> the per-item max length (4 * text_len + offset, capped)
    mel, lens = run(stop_threshold=1.0, max_patches=10)
    assert lens.tolist() == [10 * P] * 3 and mel.shape == (3, N_MELS, 10 * P)
    # stops at once -> min_patches, never nothing
    mel, lens = run(stop_threshold=-1.0, min_patches=2)
    assert lens.tolist() == [2 * P] * 3
    mel, lens = run(stop_threshold=-1.0)
    assert lens.tolist() == [P] * 3
    # deterministic with a seeded generator; stream chunks concatenate to generate's output
    mel_a, lens_a = run(stop_threshold=1.0, max_patches=7)
    mel_b, _ = run(stop_threshold=1.0, max_patches=7)
    torch.testing.assert_close(mel_a, mel_b)
    gen = torch.Generator().manual_seed(0)
    chunks = list(stream(lm, head, text, tl, spk_emb=spk, generator=gen, stop_threshold=1.0, max_patches=7))
    assert all(c.shape[-1] == chunk * P for c, _ in chunks[:-1])
    torch.testing.assert_close(torch.cat([c for c, _ in chunks], dim=-1), mel_a)
    assert lens_a.tolist() == [7 * P, 7 * P, 7 * P]


def test_training_draws_chunk_sizes():
    lm = _lm(train_chunk_sizes=[1, 2, 4]).train()
    text, tl, mels, ml, spk = _batch()
    seen = {int(lm(text, tl, mels, ml, spk_emb=spk)["chunk_size"]) for _ in range(30)}
    assert seen == {1, 2, 4}


def test_ctc_head_learns_the_phone_order_and_needs_the_flag():
    """``PatchLM.ctc_loss``: CTC of the target phones from h. It trains (a few steps on one batch halve it), an
    impossible alignment (more phones than patches) counts zero instead of inf, and an LM without ``ctc`` says so."""
    text, text_lens, mels, mel_lens, spk = _batch()
    phones = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0], [11, 12, 13, 0]])
    phone_lens = torch.tensor([4, 2, 3])
    lm = _lm(ctc=True).train()
    assert lm.ctc_head is not None and lm.ctc_head.out_features == lm.cfg.vocab_size
    opt = torch.optim.Adam(lm.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss = lm.ctc_loss(lm(text, text_lens, mels, mel_lens, spk_emb=spk), phones, phone_lens)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = float(loss.detach())
    assert torch.isfinite(loss) and last < 0.5 * first, (first, last)
    # 3 patches cannot hold 5 phones: zero loss (zero_infinity), still finite
    short = lm(text[:1], text_lens[:1], mels[:1, :, :6], torch.tensor([6]), spk_emb=spk[:1])
    assert float(lm.ctc_loss(short, torch.tensor([[5, 6, 7, 8, 9]]), torch.tensor([5])).detach()) == 0.0
    plain = _lm()
    assert plain.ctc_head is None
    with pytest.raises(VoxarConfigError, match="lm.ctc"):
        plain.ctc_loss(plain(text, text_lens, mels, mel_lens, spk_emb=spk), phones, phone_lens)


@pytest.mark.parametrize("chunk", [1, 3])
def test_input_patches_replace_only_what_the_queries_read(chunk):
    """``input_patches`` (scheduled sampling) feed the queries other previous patches: equal to the recordings'
    they change nothing; otherwise h_i moves only where an earlier input changed, and the targets stay real."""
    lm = _lm(chunk)
    text, text_lens, mels, mel_lens, spk = _batch()
    with torch.no_grad():
        base = lm(text, text_lens, mels, mel_lens, spk_emb=spk, chunk_size=chunk)
        same = lm(text, text_lens, mels, mel_lens, spk_emb=spk, chunk_size=chunk, input_patches=base["targets"])
        torch.testing.assert_close(same["h"], base["h"])
        other = base["targets"].clone()
        other[:, 5:] += torch.randn_like(other[:, 5:])  # inputs of queries 6.. change
        moved = lm(text, text_lens, mels, mel_lens, spk_emb=spk, chunk_size=chunk, input_patches=other)
    torch.testing.assert_close(moved["targets"], base["targets"])
    diff = (moved["h"] - base["h"]).abs().amax(-1)  # (B, N)
    assert float(diff[:, :6].max()) < 1e-5 and float(diff[0, 6:].max()) > 1e-3
    with pytest.raises(ValueError, match="input_patches"):
        lm(text, text_lens, mels, mel_lens, spk_emb=spk, input_patches=other[:, :-1])
