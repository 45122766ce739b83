"""Streaming content encoder (voxar.models.content): streaming == full pass, causality within the declared lookahead,
bounded caches, batching, save/load, input errors, and the CTC decoding / PER helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxar.errors import VoxarConfigError
from voxar.models.content import (
    ContentConfig,
    ContentEncoder,
    chunk_mask,
    ctc_greedy_decode,
    ctc_targets,
    edit_distance,
    phone_error_rate,
)
from voxar.modules.streaming import clone_state, run_chunked

pytestmark = pytest.mark.usefixtures("one_thread")


def make_encoder(seed: int = 0, **overrides) -> ContentEncoder:
    """A tiny encoder with random non-trivial weights and mel statistics (eval mode)."""
    torch.manual_seed(seed)
    cfg = ContentConfig.named("tiny", d_model=32, ffn=64, n_heads=2, bnf_dim=16, **overrides)
    model = ContentEncoder(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        model.set_mel_stats(torch.randn(80, generator=g), 0.5 + torch.rand(80, generator=g))
    return model.eval()


def mels(batch: int, frames: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 80, frames, generator=torch.Generator().manual_seed(seed)) * 2.0 - 5.0


# ------------------------------------------------------------------------------------------------------ streaming
@pytest.mark.parametrize("splits", [1, 2, 3, 5, [0, 1, 7, 0, 2], 64, 1000])
def test_streaming_equals_full_pass(splits):
    model = make_encoder()
    x = mels(2, 61)  # odd length: the last chunk is partial and the last group is zero-padded
    with torch.no_grad():
        full = model(x).bnf
        streamed = run_chunked(model, x, splits)
    assert streamed.shape == full.shape == (2, model.out_dim, 61)
    assert torch.allclose(streamed, full, atol=1e-5), (streamed - full).abs().max()
    assert full.abs().sum() > 0


@pytest.mark.parametrize("splits", [1, 3, [0, 1, 7, 0, 2], 1000])
def test_ppg_features_stream_exactly_and_are_posteriors(splits):
    model = make_encoder()
    model.set_features("ppg")
    assert model.out_dim == model.cfg.vocab_size + 1  # phones + CTC blank
    x = mels(2, 61)
    with torch.no_grad():
        out = model(x)
        streamed = run_chunked(model, x, splits)
    assert torch.allclose(streamed, out.bnf, atol=1e-6), (streamed - out.bnf).abs().max()
    sums = out.bnf[..., model.delay :].sum(dim=1)  # (B, T - delay): each frame a distribution
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    expected = out.logits.softmax(-1).transpose(1, 2).repeat_interleave(model.subsample, -1)  # (B, V, S * Te)
    assert torch.allclose(out.bnf[..., model.delay :], expected[..., : 61 - model.delay], atol=1e-6)
    model.set_features("bnf")
    assert model.out_dim == 16
    with pytest.raises(VoxarConfigError, match="'bnf' or 'ppg'"):
        model.set_features("mfcc")


@pytest.mark.parametrize("chunk_size, left_chunks", [(1, 0), (3, 1), (4, 2)])
def test_streaming_with_overridden_chunk_settings(chunk_size, left_chunks):
    model = make_encoder(seed=2)
    x = mels(1, 47, seed=3)
    with torch.no_grad():
        full = model(x, chunk_size=chunk_size, left_chunks=left_chunks).bnf
        default = model(x).bnf
        state = model.init_state(1, chunk_size=chunk_size, left_chunks=left_chunks)
        outs = []
        for start in range(0, 47, 5):
            y, state = model.step(x[..., start : start + 5], state)
            outs.append(y)
        outs.append(model.flush(state))
    assert torch.allclose(torch.cat(outs, dim=-1), full, atol=1e-5)
    assert not torch.allclose(full, default, atol=1e-4)  # the settings do change the computation


def test_set_chunk_changes_defaults_and_lookahead():
    model = make_encoder()
    assert (model.chunk_size, model.left_chunks, model.lookahead, model.delay) == (2, 8, 2, 1)
    x = mels(1, 40)
    with torch.no_grad():
        expected = model(x, chunk_size=4, left_chunks=1).bnf
        model.set_chunk(4, 1)
        assert model.lookahead == model.lookahead_for(4) == 2 * 4 - 1 - model.delay
        assert torch.allclose(model(x).bnf, expected) and torch.allclose(run_chunked(model, x, 3), expected, atol=1e-5)
    with pytest.raises(VoxarConfigError):
        model.set_chunk(0)
    with pytest.raises(VoxarConfigError):
        model.init_state(1, chunk_size=0)  # full context cannot stream


def test_step_emits_every_final_frame_and_state_rollback():
    model = make_encoder()
    x = mels(1, 30)
    with torch.no_grad():
        full = model(x).bnf
        state = model.init_state(1)
        emitted = 0
        for n in range(1, 31):
            y, state = model.step(x[..., n - 1 : n], state)
            emitted += y.shape[-1]
            assert emitted >= n - model.lookahead  # the StreamingModule contract
            assert emitted <= n
        snap = clone_state(state)
        tail = model.flush(state)
        again = model.flush(snap)
    assert emitted + tail.shape[-1] == 30
    assert torch.equal(tail, again)
    assert torch.allclose(tail, full[..., emitted:], atol=1e-5)


def test_bnf_is_delayed_and_repeated_at_mel_rate():
    model = make_encoder()
    x = mels(1, 20)
    with torch.no_grad():
        bnf = model(x).bnf
    d, s = model.delay, model.subsample
    assert torch.count_nonzero(bnf[..., :d]) == 0
    for t in range(d, 20 - s, s):  # frames d + k*S ... d + k*S + S - 1 share one encoder frame
        assert torch.equal(bnf[..., t], bnf[..., t + s - 1])
        assert not torch.equal(bnf[..., t], bnf[..., t + s])


# ------------------------------------------------------------------------------------------------------ causality
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_causal_within_declared_lookahead(chunk_size):
    model = make_encoder(seed=4)
    la = model.lookahead if chunk_size is None else model.lookahead_for(chunk_size)
    x = mels(1, 36, seed=5)
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        ref = model(x, chunk_size=chunk_size).bnf
        tight = False
        for t in range(0, 36 - la):
            cut = t + 1 + la  # frames >= cut are beyond the allowed lookahead of outputs <= t
            y = x.clone()
            y[..., cut:] += 3.0 * torch.randn(y[..., cut:].shape, generator=g)
            out = model(y, chunk_size=chunk_size).bnf
            assert torch.allclose(out[..., : t + 1], ref[..., : t + 1], atol=1e-6), t
            z = x.clone()
            z[..., cut - 1] += 3.0  # the last frame output t may see
            tight |= not torch.allclose(model(z, chunk_size=chunk_size).bnf[..., t], ref[..., t], atol=1e-6)
    assert tight  # the declared lookahead is also needed (not just an upper bound)


def test_default_latency_budget():
    """Live VC default: 40 ms attention chunks and at most 20 ms (2 mel frames) of lookahead."""
    model = ContentEncoder(ContentConfig.named("tiny"))
    assert model.chunk_size * model.subsample == 4  # 4 mel frames of 10 ms
    assert model.lookahead <= 2
    small = ContentEncoder(ContentConfig.named("small"))
    assert small.lookahead <= 2 and sum(p.numel() for p in small.parameters()) <= 12_000_000


def test_chunk_mask_hand_example():
    idx = torch.arange(6)
    m = chunk_mask(idx, idx, chunk_size=2, left_chunks=1)
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 1],
            [0, 0, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(m, expected)
    assert chunk_mask(idx, idx, 0, 0).all()


def test_cache_memory_is_bounded():
    model = make_encoder(left_chunks=3)
    x = mels(1, 400, seed=7)
    sizes = []
    with torch.no_grad():
        state = model.init_state(1)
        for start in range(0, 400, 4):
            _, state = model.step(x[..., start : start + 4], state)
            tensors = [state.pending, state.out]
            tensors += [t for c in state.layers for t in (c.k, c.v, c.conv.cache)] + [c.cache for c in state.front]
            sizes.append(sum(t.numel() for t in tensors))
            assert all(c.k.shape[2] <= 3 * model.chunk_size for c in state.layers)
    assert max(sizes[20:]) == min(sizes[20:])  # stops growing once the left context is full
    assert sizes[0] < sizes[-1]


# ------------------------------------------------------------------------------------------- forward and batching
def test_forward_shapes_and_padding_invariance():
    model = make_encoder()
    a, b = mels(1, 50, seed=8), mels(1, 33, seed=9)
    batch = torch.zeros(2, 80, 50)
    batch[0], batch[1, :, :33] = a[0], b[0]
    with torch.no_grad():
        out = model(batch, torch.tensor([50, 33]))
        alone = model(b)
    assert out.bnf.shape == (2, 16, 50) and out.logits.shape == (2, 25, model.cfg.vocab_size + 1)
    assert out.enc_lengths.tolist() == [25, 17]
    assert torch.allclose(out.bnf[1, :, :33], alone.bnf[0], atol=1e-5)
    assert torch.allclose(out.logits[1, :17], alone.logits[0], atol=1e-5)
    assert torch.count_nonzero(out.bnf[1, :, 33:]) == 0
    assert torch.allclose(model.bottleneck(b), alone.bnf, atol=1e-6)  # grad mode may pick other CPU kernels
    full_ctx = model(b, chunk_size=0)  # offline, full context
    assert full_ctx.bnf.shape == alone.bnf.shape and not torch.allclose(full_ctx.bnf, alone.bnf)


def test_mel_stats_normalise_inside():
    model = make_encoder()
    x = mels(1, 24)
    with torch.no_grad():
        before = model(x).bnf
        mean, std = model.mel_mean.clone(), model.mel_std.clone()
        model.set_mel_stats(torch.zeros(80), torch.ones(80))
        after = model((x - mean[:, None]) / std[:, None]).bnf
    assert torch.allclose(before, after, atol=1e-5)


def test_training_noise_only_on_the_ctc_branch_and_ctc_loss():
    model = make_encoder(bnf_noise=0.5, dropout=0.0, bnf_dropout=0.0).train()
    x = mels(2, 40)
    a, b = model(x), model(x)
    assert torch.allclose(a.bnf, b.bnf) and not torch.allclose(a.logits, b.logits)
    targets = torch.tensor([[5, 6, 7], [8, 9, 0]])
    loss = model.ctc_loss(a, targets, torch.tensor([3, 2]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.rel_bias.grad is not None and model.front[0].conv.weight.grad.abs().sum() > 0


def test_sample_chunking_draws_from_the_config_lists():
    model = make_encoder(train_chunk_sizes=[1, 4, 0], train_left_chunks=[2, 5])
    rng = np.random.default_rng(0)
    draws = {model.sample_chunking(rng) for _ in range(200)}
    assert {c for c, _ in draws} == {1, 4, 0} and {n for _, n in draws} == {2, 5}
    r1 = [model.sample_chunking(np.random.default_rng(3)) for _ in range(3)]
    assert len(set(r1)) == 1  # same generator state, same draw


# -------------------------------------------------------------------------------------------- model dir and errors
def test_save_load_round_trip(tmp_path):
    model = make_encoder(seed=11)
    tok = {"type": "phoneme", "symbols": ["a"], "lang": "en", "voice": "en-us"}
    model.save_pretrained(tmp_path / "content", tokenizer=tok)
    assert (tmp_path / "content" / "tokenizer.json").is_file()
    loaded = ContentEncoder.from_pretrained(tmp_path / "content", preset="16k")
    assert not loaded.training and loaded.out_dim == 16 and loaded.lookahead == model.lookahead
    x = mels(1, 30)
    with torch.no_grad():
        assert torch.equal(loaded(x).bnf, model(x).bnf)
    assert torch.equal(loaded.mel_std, model.mel_std)
    with pytest.raises(VoxarConfigError, match="already exists"):
        model.save_pretrained(tmp_path / "content")
    with pytest.raises(VoxarConfigError, match="preset"):
        ContentEncoder.from_pretrained(tmp_path / "content", preset="vocos24k")


def test_model_dir_of_another_kind_is_refused(tmp_path):
    from voxar.models.modeldir import save_model_dir

    model = make_encoder()
    save_model_dir(model, model.cfg, "vocoder", tmp_path / "voc")
    with pytest.raises(VoxarConfigError, match="'vocoder' model, expected a 'content' model"):
        ContentEncoder.from_pretrained(tmp_path / "voc")
    with pytest.raises(VoxarConfigError, match="not found"):
        ContentEncoder.from_pretrained(tmp_path / "missing")


def test_bad_inputs_raise_one_line_errors():
    model = make_encoder()
    with pytest.raises(VoxarConfigError, match=r"expects log-mel \(B, 80, T\), got shape \(1, 100, 10\)"):
        model(torch.zeros(1, 100, 10))
    with pytest.raises(VoxarConfigError, match="expects log-mel"):
        model(torch.zeros(80, 10))
    state = model.init_state(1)
    with pytest.raises(VoxarConfigError, match="expects log-mel"):
        model.step(torch.zeros(1, 40, 4), state)
    with pytest.raises(VoxarConfigError, match="lookahead must be in"):
        ContentConfig(chunk_size=2, lookahead=4)
    with pytest.raises(VoxarConfigError, match="not a multiple"):
        ContentConfig(d_model=90, n_heads=4)
    with pytest.raises(VoxarConfigError, match="unknown content encoder size"):
        ContentConfig.named("huge")
    with pytest.raises(VoxarConfigError, match="unknown key"):
        ContentConfig.named("tiny", colour="red")


# ------------------------------------------------------------------------------------------------ CTC and PER
def test_ctc_greedy_decode_hand_made():
    blank = 4
    path = [[0, 0, blank, 0, 1, 1, blank, 2], [3, blank, blank, 3, 3, 2, 2, 2]]
    logits = torch.nn.functional.one_hot(torch.tensor(path), 5).float()  # (B, T, V)
    assert ctc_greedy_decode(logits) == [[0, 0, 1, 2], [3, 3, 2]]
    assert ctc_greedy_decode(logits, torch.tensor([5, 3])) == [[0, 0, 1], [3]]
    assert ctc_greedy_decode(logits, blank=0) == [[4, 1, 4, 2], [3, 4, 3, 2]]


def test_edit_distance_and_phone_error_rate():
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance([], [1, 2]) == 2 and edit_distance([1, 2], []) == 2
    assert edit_distance([1, 3, 4, 5], [1, 2, 3, 4]) == 2  # one deletion + one insertion
    assert edit_distance("kitten", "sitting") == 3
    assert phone_error_rate([[1, 3, 4, 5], [7]], [[1, 2, 3, 4], [7, 8]]) == pytest.approx(3 / 6)
    assert phone_error_rate([[9, 9, 9]], [[1]]) == pytest.approx(3.0)  # insertions can push it above 1
    with pytest.raises(ValueError):
        phone_error_rate([[1]], [[1], [2]])
    with pytest.raises(ValueError):
        phone_error_rate([[1]], [[]])


def test_ctc_targets_drop_non_phones():
    from voxar.text.symbols import SymbolTable
    from voxar.text.tokenizers import DEFAULT_PHONEME_SYMBOLS

    symbols = SymbolTable(DEFAULT_PHONEME_SYMBOLS).symbols
    ids = [symbols.index(s) for s in ["h", "ə", "l", "ˈ", "o", "ʊ", " ", "w", "ˈ", "ɜ", "ː", "l", "d", ",", "<eos>"]]
    assert [symbols[i] for i in ctc_targets(ids, symbols)] == ["h", "ə", "l", "o", "ʊ", "w", "ɜ", "ː", "l", "d"]
    assert [symbols[i] for i in ctc_targets(ids, symbols, skip=["ː"])] == [
        "h", "ə", "l", "ˈ", "o", "ʊ", " ", "w", "ˈ", "ɜ", "l", "d", ",",
    ]  # fmt: skip
    assert ContentConfig().vocab_size == len(symbols)
