"""The MeanVC-style VC model (voxar.models.vc): streaming == offline, causality, train == inference attention, bounded
state, mean-flow loss and its JVP, save/load and input errors. Small random models; inputs synthesised in code."""

from __future__ import annotations

import pytest
import torch

from voxar.errors import VoxarAudioError, VoxarConfigError, VoxarError
from voxar.models.heads import jvp_dudt
from voxar.models.refenc import RefEncoderConfig
from voxar.models.vc import VCConfig, VCModel, describe, noise_seed
from voxar.models.vc_blocks import past_band
from voxar.models.vc_loss import teacher_forced
from voxar.modules.streaming import chunk_schedule, clone_state

# torch.func.jvp's decompositions call torch.jit.script internally, which warns on torch >= 2.10
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_thread"),
]

DC = 12  # content dim of the test models


def make_model(seed: int = 0, **overrides) -> VCModel:
    """A small VC model whose zero-initialised AdaLN layers are randomised, so every path shapes the output."""
    torch.manual_seed(seed)
    small = dict(
        content_dim=DC, dim=32, n_heads=2, n_layers=2, timbre_dim=16, timbre_heads=2, time_dim=16,
        chunk_size=4, lookback=3, speaker=RefEncoderConfig(channels=16, n_layers=2, out_dim=8),
    )  # fmt: skip
    model = VCModel(VCConfig(**{**small, **overrides}))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ada" in name or name.startswith("out."):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
        model.set_mel_stats(-5.0 + torch.randn(80, generator=g), 1.0 + torch.rand(80, generator=g))
    return model.eval()


def inputs(b: int = 2, t: int = 37, r: int = 23, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, DC, t, generator=g), -5.0 + 2.0 * torch.randn(1, 80, r, generator=g)


def streamed(model: VCModel, bnf: torch.Tensor, target, sizes, **kw) -> torch.Tensor:
    state = model.init_state(bnf.shape[0], target=target, **kw)
    outs, start = [], 0
    for n in chunk_schedule(bnf.shape[-1], sizes):
        y, state = model.step(bnf[..., start : start + n], state)
        assert y.shape[-1] % model.cfg.chunk_size == 0
        outs.append(y)
        start += n
    tail = model.flush(state)
    return torch.cat(outs + ([tail] if tail is not None else []), dim=-1)


# ----------------------------------------------------------------------------------------------------- config
def test_named_sizes_grids_and_config_errors():
    tiny, small = VCConfig.named("tiny"), VCConfig.named("small")
    assert (tiny.chunk_size, tiny.dim, tiny.n_layers, tiny.n_heads) == (4, 128, 2, 2)
    assert 8 <= tiny.lookback <= 10 and 8 <= small.lookback <= 10
    assert (small.dim, small.n_layers, small.timbre_blocks, small.timbre_heads) == (512, 4, 2, 4)
    assert VCConfig() == tiny
    assert VCConfig.named("tiny", content_dim=64).content_dim == 64
    assert tiny.grid(1) == [1.0, 0.0] and tiny.grid(2) == [1.0, 0.8, 0.0]
    assert VCConfig(mode="fm").grid(4) == [1.0, 0.75, 0.5, 0.25, 0.0]
    for bad in ({"mode": "ddpm"}, {"jvp": "magic"}, {"cond_drop": 2.0}, {"dim": 30, "n_heads": 4}, {"lookback": 0}):
        with pytest.raises(VoxarConfigError):
            VCConfig(**bad)
    with pytest.raises(VoxarConfigError, match="n_mels"):
        VCConfig(n_mels=40)  # the speaker encoder still reads 80 bins
    with pytest.raises(VoxarConfigError, match="unknown VC size"):
        VCConfig.named("huge")
    model = VCModel(tiny)
    assert model.lookahead == 3 and "vc mf" in describe(model)


def test_past_band_is_the_chunk_rule():
    # training: past = chunks 0..n-2; query chunk i sees the `lookback` chunks before it
    band = past_band(5, 4, 2)
    expected = [[j in (i - 2, i - 1) for j in range(4)] for i in range(5)]
    assert band.tolist() == expected
    # streaming: one query chunk, a cache of `lookback` chunks -> all of it
    assert past_band(1, 3, 3).all()


# ----------------------------------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("steps", [1, 2])
def test_chunked_streaming_equals_offline(steps):
    model = make_model()
    bnf, ref = inputs()
    offline = model.convert(bnf, ref, steps=steps, seed=7)
    assert offline.shape == (2, 80, 37) and torch.isfinite(offline).all()
    target = model.prepare_target(ref)
    for sizes in (1, 3, 4, 7, [2, 0, 5], 40):
        chunked = streamed(model, bnf, target, sizes, seed=7, steps=steps)
        torch.testing.assert_close(chunked, offline, atol=1e-5, rtol=1e-5)
    # the seed matters, and a different seed still streams identically
    other = model.convert(bnf, ref, steps=steps, seed=8)
    assert (other - offline).abs().max() > 1e-3
    torch.testing.assert_close(streamed(model, bnf, target, 3, seed=8, steps=steps), other, atol=1e-5, rtol=1e-5)


def test_fm_euler_with_guidance_streams_like_offline():
    model = make_model(mode="fm", fm_steps=3)
    bnf, ref = inputs(t=21)
    offline = model.convert(bnf, ref, seed=1, cfg_scale=2.0)
    unguided = model.convert(bnf, ref, seed=1, cfg_scale=1.0)
    assert (offline - unguided).abs().max() > 1e-3  # the guidance pass changes the result
    chunked = streamed(model, bnf, model.prepare_target(ref), [1, 6], seed=1, cfg_scale=2.0)
    torch.testing.assert_close(chunked, offline, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("steps", [1, 2])
def test_causality_later_content_does_not_change_earlier_chunks(steps):
    model = make_model()
    bnf, ref = inputs(b=1, t=40)
    c = model.cfg.chunk_size
    base = model.convert(bnf, ref, steps=steps, seed=3)
    for k in (0, 2, 5):  # perturb every content frame from chunk k+1 on
        pert = bnf.clone()
        pert[..., (k + 1) * c :] += 3.0 * torch.randn_like(pert[..., (k + 1) * c :])
        out = model.convert(pert, ref, steps=steps, seed=3)
        torch.testing.assert_close(out[..., : (k + 1) * c], base[..., : (k + 1) * c], atol=1e-6, rtol=0)
        assert (out[..., (k + 1) * c :] - base[..., (k + 1) * c :]).abs().max() > 1e-3
    # within a chunk the model is bidirectional: the chunk's last frame changes its first frame (lookahead C - 1)
    pert = bnf.clone()
    pert[..., c - 1] += 3.0 * torch.randn(DC)  # (a constant shift would vanish in the input LayerNorm)
    out = model.convert(pert, ref, steps=steps, seed=3)
    assert (out[..., 0] - base[..., 0]).abs().max() > 1e-4
    assert model.lookahead == c - 1


@pytest.mark.parametrize(("mode", "steps"), [("mf", 1), ("mf", 2), ("fm", 3)])
def test_convert_follows_the_sampling_grid_with_per_chunk_seeded_noise(mode, steps):
    """convert == the explicit recursion: noise of chunk k from noise_seed(seed, k); z <- z - (t0 - t1) u(z, r, t0)
    with r = t1 (MF) or r = t0 (FM Euler) on the config's grid; the result becomes the clean past of the next chunk."""
    model = make_model(mode=mode)
    bnf, ref = inputs(b=2, t=4 * 5 + 2)
    c, b = model.cfg.chunk_size, 2
    target = model.prepare_target(ref)
    state = model.init_state(b, target=target)
    grid = model.cfg.grid(steps)
    parts = []
    for k in range(-(-bnf.shape[-1] // c)):
        sl = slice(k * c, min(bnf.shape[-1], (k + 1) * c))
        g = torch.Generator().manual_seed(noise_seed(5, k))
        z = torch.randn(b, c, 80, generator=g)[:, : sl.stop - sl.start].transpose(1, 2)  # (B, C, M) -> (B, M, m)
        for t0, t1 in zip(grid[:-1], grid[1:], strict=True):
            t, r = torch.full((b,), t0), torch.full((b,), t1 if mode == "mf" else t0)
            z = z - (t0 - t1) * model.chunk_velocity(state, bnf[..., sl], z, t, r)
        mel = model.denormalize(z)
        parts.append(mel)
        if sl.stop - sl.start == c:
            model.push_clean(state, mel, bnf[..., sl])
    expected = torch.cat(parts, dim=-1)
    got = model.convert(bnf, ref, steps=steps, seed=5, cfg_scale=1.0)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_target_prepared_once_serves_a_batch_of_streams():
    model = make_model()
    bnf, ref = inputs(b=3, t=14)
    batched = model.convert(bnf, ref, seed=2)
    single = model.convert(bnf[:1], ref, seed=2)
    torch.testing.assert_close(batched[:1], single, atol=1e-5, rtol=1e-5)
    # the reference drives the output: another voice gives another mel
    other = model.convert(bnf, ref.flip(-1) + 1.0, seed=2)
    assert (other - batched).abs().max() > 1e-3


def test_state_is_bounded_and_clonable():
    model = make_model()
    bnf, ref = inputs(b=1, t=4 * 30)
    state = model.init_state(1, target=model.prepare_target(ref), seed=0)

    def numel(s) -> int:
        return s.cache_k.numel() + s.cache_v.numel() + s.buffer.numel() + s.rope_cos.numel()

    sizes = []
    for k in range(30):
        _, state = model.step(bnf[..., 4 * k : 4 * k + 4], state)
        sizes.append(numel(state))
    assert len(set(sizes)) == 1, sizes  # nothing grows with the stream
    lc = model.cfg.lookback * model.cfg.chunk_size
    assert state.cache_k.shape[3] == lc and state.n_cached == model.cfg.lookback and state.chunk_index == 30
    # snapshot / rollback: a cloned state continues exactly like the original
    snap = clone_state(state)
    more = torch.randn(1, DC, 8)
    y1, _ = model.step(more, state)
    y2, _ = model.step(more, snap)
    torch.testing.assert_close(y1, y2, atol=0, rtol=0)


# ----------------------------------------------------------------------------------------------------- training path
def test_teacher_forced_training_pass_equals_cached_recursion():
    """The parallel training pass ([clean ; noisy], all chunks at once) and the streaming recursion (K/V cache of
    clean chunks) compute the same thing: identical masks, positions and functions."""
    model = make_model()
    g = torch.Generator().manual_seed(5)
    b, t_len, c = 2, 4 * 9 + 3, model.cfg.chunk_size  # 10 chunks > lookback 3, last one partial
    mel = -5.0 + torch.randn(b, 80, t_len, generator=g)
    bnf = torch.randn(b, DC, t_len, generator=g)
    z = torch.randn(b, 80, t_len, generator=g)
    n = -(-t_len // c)
    t = torch.rand(b, n, generator=g)
    r = t * torch.rand(b, n, generator=g)
    with torch.no_grad():
        target = model.prepare_target(-5.0 + torch.randn(b, 80, 17, generator=g))
        u_train = teacher_forced(model, mel, bnf, target, z, t, r)
        state = model.init_state(b, target=target)
        parts = []
        for k in range(n):
            sl = slice(k * c, min(t_len, (k + 1) * c))
            parts.append(model.chunk_velocity(state, bnf[..., sl], z[..., sl], t[:, k], r[:, k]))
            if sl.stop - sl.start == c:
                model.push_clean(state, mel[..., sl], bnf[..., sl])
    u_stream = torch.cat(parts, dim=-1)
    assert u_train.abs().max() > 1e-2
    torch.testing.assert_close(u_train, u_stream, atol=1e-5, rtol=1e-4)
    # padding never leaks: a shorter item in the batch gives the same output on its valid frames
    short = 4 * 5 + 1
    with torch.no_grad():
        u_pad = teacher_forced(model, mel, bnf, target, z, t, r, mel_lens=torch.tensor([t_len, short]))
        target1 = type(target)(target.spk[1:], target.spk_frame[1:], [(k[1:], v[1:]) for k, v in target.memory])
        n1 = -(-short // c)
        u_alone = teacher_forced(model, mel[1:, :, :short], bnf[1:, :, :short], target1, z[1:, :, :short],
                                 t[1:, :n1], r[1:, :n1])  # fmt: skip
    torch.testing.assert_close(u_pad[1:, :, :short], u_alone, atol=1e-5, rtol=1e-4)


def test_jvp_of_the_whole_noisy_stream_matches_finite_differences():
    model = make_model().double()
    g = torch.Generator().manual_seed(3)
    b, t_len = 2, 18
    mel = -5.0 + torch.randn(b, 80, t_len, generator=g, dtype=torch.float64)
    bnf = torch.randn(b, DC, t_len, generator=g, dtype=torch.float64)
    z = torch.randn(b, 80, t_len, generator=g, dtype=torch.float64)
    v = torch.randn(b, 80, t_len, generator=g, dtype=torch.float64)
    n = -(-t_len // model.cfg.chunk_size)
    t = 0.2 + 0.7 * torch.rand(b, n, generator=g, dtype=torch.float64)
    r = t * torch.rand(b, n, generator=g, dtype=torch.float64)
    target = model.prepare_target(-5.0 + torch.randn(b, 80, 11, generator=g, dtype=torch.float64))

    def fn(z_, r_, t_):
        return teacher_forced(model, mel, bnf, target, z_, t_, r_)

    u_func, d_func = jvp_dudt(fn, z, r, t, v, "func")
    u_fd, d_fd = jvp_dudt(fn, z, r, t, v, "fd", eps=1e-5)
    _, d_ag = jvp_dudt(fn, z, r, t, v, "autograd")
    torch.testing.assert_close(u_func, u_fd)
    assert d_func.abs().max() > 1e-3
    assert (d_func - d_fd).norm() / d_func.norm() < 1e-6
    assert (d_func - d_ag).norm() / d_func.norm() < 1e-10
    # the primal keeps its graph: gradients reach the clean stream, the speaker and the timbre encoders
    u_func.square().mean().backward()
    for name in ("clean_in.weight", "speaker.proj.weight", "timbre.in_proj.weight", "blocks.0.qkv_proj.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


@pytest.mark.parametrize("mode", ["mf", "fm"])
def test_loss_is_finite_and_trains_every_part(mode):
    model = make_model(mode=mode).train()
    g = torch.Generator().manual_seed(0)
    mel = -5.0 + torch.randn(3, 80, 30, generator=g)
    bnf = torch.randn(3, DC, 30, generator=g)
    ref = -5.0 + torch.randn(3, 80, 25, generator=g)
    lens, ref_lens = torch.tensor([30, 22, 13]), torch.tensor([25, 10, 18])
    loss, stats = model.loss(mel, bnf, ref, lens, ref_lens, progress=0.3, generator=g)
    assert torch.isfinite(loss) and float(stats["mse"]) > 0
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    missing = [n for n, gr in grads.items() if gr is None or not torch.isfinite(gr).all()]
    assert not missing, missing
    for prefix in ("speaker.", "timbre.", "clean_in.", "noisy_in.", "blocks.", "t_emb.", "cond_"):
        assert any(gr.abs().sum() > 0 for n, gr in grads.items() if n.startswith(prefix)), prefix
    # padded frames do not matter: changing them leaves the loss unchanged (same random draws)
    mel2, bnf2 = mel.clone(), bnf.clone()
    mel2[2, :, 13:] += 50.0
    bnf2[1, :, 22:] -= 9.0
    loss2, _ = model.loss(mel2, bnf2, ref, lens, ref_lens, progress=0.3, generator=torch.Generator().manual_seed(0))
    loss1, _ = model.loss(mel, bnf, ref, lens, ref_lens, progress=0.3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss1, loss2)


def test_fresh_model_sends_gradient_everywhere():
    """From initialisation (zero AdaLN gates, small output layer) the output layer and the input paths get gradient
    at once, and after one update (the gates open) every trainable part does: nothing is stuck."""
    torch.manual_seed(0)
    model = VCModel(VCConfig(content_dim=DC, dim=32, timbre_dim=16, time_dim=16, lookback=2, cond_drop=0.0))
    g = torch.Generator().manual_seed(0)
    mel, bnf, ref = torch.randn(2, 80, 12, generator=g), torch.randn(2, DC, 12, generator=g), torch.randn(2, 80, 9)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(2):
        opt.zero_grad()
        model.loss(mel, bnf, ref, generator=g)[0].backward()
        prefixes = ["final_ada", "out.", "noisy_in.", "timbre.", "speaker.", "cond_", "blocks.0.ada"]
        if step == 1:
            prefixes += ["clean_in.", "blocks.0.qkv_proj", "blocks.1.mlp", "spk_ada", "t_emb", "dt_emb"]
        for prefix in prefixes:
            grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
            assert any(gr is not None and gr.abs().sum() > 0 for gr in grads), (step, prefix)
        opt.step()


def test_mf_loss_jvp_backends_agree():
    model = make_model().train()
    g = torch.Generator().manual_seed(1)
    mel, bnf = -5.0 + torch.randn(4, 80, 20, generator=g), torch.randn(4, DC, 20, generator=g)
    ref = -5.0 + torch.randn(4, 80, 15, generator=g)
    values = {}
    for jvp in ("func", "fd"):
        model.cfg.jvp = jvp
        model.cfg.mf_ratio_start = model.cfg.mf_ratio_end = 1.0  # every item trains an interval (JVP)
        values[jvp] = float(model.loss(mel, bnf, ref, generator=torch.Generator().manual_seed(2))[0].detach())
    assert abs(values["func"] - values["fd"]) / values["func"] < 1e-3, values


def test_short_overfit_lowers_the_loss():
    """A few dozen Adam steps on two fixed utterances: the loss falls (the objective is learnable)."""
    model = make_model(mf_omega=1.0, cond_drop=0.0).train()
    g = torch.Generator().manual_seed(0)
    base = torch.linspace(-8, -3, 80)[None, :, None]
    mel = base + 0.5 * torch.sin(torch.arange(24.0) / 3)[None, None] * torch.randn(2, 80, 1, generator=g)
    bnf = torch.randn(2, DC, 24, generator=g)
    ref = mel.flip(-1)
    model.set_mel_stats(mel.mean(dim=(0, 2)), mel.std(dim=(0, 2)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss, stats = model.loss(mel, bnf, ref, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(stats["mse"]))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)


# ----------------------------------------------------------------------------------------------------- files, errors
def test_save_and_load_round_trip(tmp_path):
    model = make_model()
    bnf, ref = inputs(t=10)
    path = model.save_pretrained(tmp_path / "vc")
    loaded = VCModel.from_pretrained(path, content_dim=DC, n_mels=80, preset="16k")
    assert loaded.cfg == model.cfg and not loaded.training
    torch.testing.assert_close(loaded.mel_std, model.mel_std)
    torch.testing.assert_close(loaded.convert(bnf, ref, seed=4), model.convert(bnf, ref, seed=4), atol=0, rtol=0)
    with pytest.raises(VoxarConfigError, match="content_dim"):
        VCModel.from_pretrained(path, content_dim=96)
    with pytest.raises(VoxarConfigError, match="n_mels"):
        VCModel.from_pretrained(path, n_mels=100)
    from voxar.models.modeldir import save_model_dir

    save_model_dir(model, model.cfg, "tts", tmp_path / "tts")
    with pytest.raises(VoxarConfigError, match="expected a 'vc' model"):
        VCModel.from_pretrained(tmp_path / "tts")
    with pytest.raises(VoxarConfigError, match="not found"):
        VCModel.from_pretrained(tmp_path / "missing")


def test_bad_inputs_are_clear_errors():
    model = make_model()
    bnf, ref = inputs(t=8)
    with pytest.raises(VoxarConfigError, match="content_dim 12"):
        model.convert(torch.randn(1, DC + 1, 8), ref)
    with pytest.raises(VoxarError, match="content features"):
        model.convert(torch.randn(DC, 8), ref)
    with pytest.raises(VoxarConfigError, match="mel"):
        model.convert(bnf, torch.randn(1, 79, 20))
    with pytest.raises(VoxarAudioError, match="no frames"):
        model.convert(bnf, torch.randn(1, 80, 0))
    with pytest.raises(VoxarAudioError, match="NaN"):
        model.convert(bnf, torch.full((1, 80, 5), float("nan")))
    with pytest.raises(VoxarAudioError, match="no frames"):
        model.convert(bnf[..., :0], ref)
    with pytest.raises(VoxarError, match="prepare_target"):
        model.init_state(1)
    target = model.prepare_target(inputs(t=8)[1].repeat(2, 1, 1))
    with pytest.raises(VoxarError, match="2 streams"):
        model.init_state(3, target=target)
    with pytest.raises(VoxarError, match="one content frame per mel frame"):
        model.loss(torch.randn(1, 80, 8), torch.randn(1, DC, 9), ref)
