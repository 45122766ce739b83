"""The flow head (FM and MF modes), the JVP backends, the stop head and the generation length guards.

Toy data: a 2-D mixture of three Gaussians, the component given as the condition (one-hot "LM state"), so every
conditional is a Gaussian with known mean and covariance.
"""

from __future__ import annotations

import pytest
import torch

from voxar.config import from_dict, to_dict
from voxar.errors import VoxarConfigError
from voxar.models.heads import (
    FlowHead,
    HeadConfig,
    StopHead,
    history_from_sequence,
    history_push,
    jvp_dudt,
    length_limits,
    stop_loss,
    stop_now,
    stop_targets,
)

MEANS = torch.tensor([[-1.5, 1.0], [1.5, 1.0], [0.0, -1.5]])
SCALES = torch.tensor([[[0.6, 0.0], [0.3, 0.3]], [[0.3, 0.0], [-0.3, 0.5]], [[0.8, 0.0], [0.0, 0.3]]])
COVS = SCALES @ SCALES.transpose(1, 2)

# torch.func.jvp's decompositions call torch.jit.script internally, which warns on torch >= 2.10
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("one_thread"),
]


def _toy(labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    noise = torch.randn(labels.shape[0], 2, generator=g)
    return MEANS[labels] + torch.einsum("nij,nj->ni", SCALES[labels], noise)


def _train_toy(mode: str, steps: int, **overrides) -> tuple[FlowHead, list[float]]:
    torch.manual_seed(0)
    toy = dict(patch_dim=2, cond_dim=3, width=64, n_blocks=1, history=0, time_dim=32, cond_drop=0.1)
    cfg = HeadConfig(mode=mode, mf_omega=1.0, mf_t_mu=0.0, mf_t_sigma=1.5, **toy, **overrides)
    head = FlowHead(cfg)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / 30) * (1 - i / steps))
    g = torch.Generator().manual_seed(0)
    mses = []
    for _ in range(steps):
        labels = torch.randint(0, 3, (256,), generator=g)
        loss, stats = head.loss(_toy(labels, g), torch.eye(3)[labels], generator=g)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        mses.append(float(stats["mse"]))
    return head, mses


def _errors(head: FlowHead, steps: int) -> tuple[float, float]:
    """Worst (over the 3 labels) mean error and relative covariance error of 3000 samples per label."""
    g = torch.Generator().manual_seed(1)
    mean_err, cov_err = 0.0, 0.0
    for label in range(3):
        x = head.sample_patch(torch.eye(3)[[label] * 3000], steps=steps, cfg_scale=1.0, generator=g)
        mean_err = max(mean_err, float((x.mean(0) - MEANS[label]).norm()))
        cov_err = max(cov_err, float((torch.cov(x.T) - COVS[label]).norm() / COVS[label].norm()))
    return mean_err, cov_err


def _random_head(**overrides) -> FlowHead:
    """A head whose zero-initialised modulations are randomised, so every path is exercised."""
    torch.manual_seed(0)
    head = FlowHead(HeadConfig(patch_dim=6, cond_dim=5, width=32, n_blocks=2, history=1, time_dim=16, **overrides))
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return head


# ------------------------------------------------------------------------------------------------ config
def test_head_config_round_trip_and_grids():
    for name in ("tiny", "small"):
        cfg = HeadConfig.named(name, mode="mf")
        assert from_dict(HeadConfig, to_dict(cfg)) == cfg
    assert HeadConfig.named("tiny").history == 1 and HeadConfig.named("small").history == 2
    cfg = HeadConfig(mode="mf")
    assert cfg.grid(1) == [1.0, 0.0] and cfg.grid() == [1.0, 0.8, 0.0] and cfg.grid(4) == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert HeadConfig(mode="mf", mf_schedule=[1.0, 0.6, 0.0]).grid() == [1.0, 0.6, 0.0]
    assert len(HeadConfig(mode="fm", fm_steps=8).grid()) == 9
    for bad in ({"mode": "ddpm"}, {"mf_schedule": [1.0, 0.2]}, {"jvp": "magic"}, {"cond_drop": 1.5}):
        with pytest.raises(VoxarConfigError):
            from_dict(HeadConfig, bad)


# ------------------------------------------------------------------------------------------------ JVP
def test_jvp_backends_agree_with_finite_differences():
    head = _random_head()
    g = torch.Generator().manual_seed(0)
    n = 16
    z, v, hist = torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g)
    h = torch.randn(n, 5, generator=g)
    t = 0.2 + 0.7 * torch.rand(n, generator=g)
    r = t * torch.rand(n, generator=g)

    def fn(z_, r_, t_):
        return head(z_, t_, r_, h, hist)

    u_func, d_func = jvp_dudt(fn, z, r, t, v, "func")
    u_fd, d_fd = jvp_dudt(fn, z, r, t, v, "fd", eps=1e-3)
    u_ag, d_ag = jvp_dudt(fn, z, r, t, v, "autograd")
    torch.testing.assert_close(u_func, u_fd)
    assert d_func.norm() > 1e-3
    assert (d_func - d_fd).norm() / d_func.norm() < 1e-3
    assert (d_func - d_ag).norm() / d_func.norm() < 1e-5
    # float64 oracle: same function, exact arithmetic up to 1e-12
    head64, h64, hist64 = head.double(), h.double(), hist.double()

    def fn64(z_, r_, t_):
        return head64(z_, t_, r_, h64, hist64)

    d64 = jvp_dudt(fn64, z.double(), r.double(), t.double(), v.double(), "fd", eps=1e-5)[1]
    assert (d_func.double() - d64).norm() / d64.norm() < 1e-4


def test_jvp_primal_carries_gradients_to_head_and_condition():
    """MF trains the head and, through the closure constant h, the LM: u from torch.func.jvp must backprop."""
    head = _random_head()
    h = torch.randn(4, 5, requires_grad=True)
    z, v, hist = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 6)
    t, r = torch.full((4,), 0.7), torch.full((4,), 0.2)
    u, dudt = jvp_dudt(lambda a, b, c: head(a, c, b, h, hist), z, r, t, v, "func")
    assert not dudt.requires_grad
    u.square().sum().backward()
    assert h.grad is not None and h.grad.abs().sum() > 0
    assert head.in_proj.weight.grad.abs().sum() > 0


def test_mf_loss_split_and_jvp_modes_agree():
    """Skipping the JVP where r = t changes nothing; the finite-difference backend gives the same loss."""
    head = _random_head(mode="mf", mf_omega=2.0, mf_kappa=0.5)
    x, h, hist = torch.randn(64, 6), torch.randn(64, 5), torch.randn(64, 6)
    values = {}
    for split, jvp in ((True, "func"), (False, "func"), (True, "fd"), (True, "autograd")):
        head.cfg.split_jvp, head.cfg.jvp = split, jvp
        values[split, jvp] = head.loss(x, h, hist, progress=0.5, generator=torch.Generator().manual_seed(3))[0]
    ref = values[True, "func"]
    assert torch.isfinite(ref)
    for key, value in values.items():
        torch.testing.assert_close(value, ref, rtol=1e-3, atol=1e-5, msg=str(key))


# ------------------------------------------------------------------------------------------------ toy training
def test_fm_learns_conditional_gaussians():
    head, mses = _train_toy("fm", 300)
    assert sum(mses[-50:]) / 50 < 0.6 * sum(mses[:10]) / 10
    mean_err, cov_err = _errors(head, 16)
    assert mean_err < 0.15 and cov_err < 0.4, (mean_err, cov_err)
    # one Euler step of an FM model collapses towards the conditional mean: the reason for mean flows
    assert _errors(head, 1)[1] > 0.8


def test_mf_one_and_two_step_samples_match_data():
    head, mses = _train_toy("mf", 600)
    assert all(torch.isfinite(torch.tensor(mses)))
    assert sum(mses[-50:]) / 50 < 0.6 * sum(mses[:10]) / 10
    mean1, cov1 = _errors(head, 1)
    mean2, cov2 = _errors(head, 2)
    assert mean1 < 0.15 and cov1 < 0.4, (mean1, cov1)
    assert mean2 < 0.15 and cov2 < 0.3, (mean2, cov2)
    assert max(mean2, cov2) <= 1.1 * max(mean1, cov1) + 0.02, ((mean1, cov1), (mean2, cov2))


# ------------------------------------------------------------------------------------------------ sampling
@pytest.mark.parametrize("mode", ["fm", "mf"])
def test_sampling_is_deterministic_and_batch_invariant(mode):
    head = _random_head(mode=mode, fm_solver="midpoint")
    h, hist = torch.randn(5, 5), torch.randn(5, 6)
    a = head.sample_patch(h, hist, generator=torch.Generator().manual_seed(7))
    b = head.sample_patch(h, hist, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (head.sample_patch(h, hist, generator=torch.Generator().manual_seed(8)) - a).abs().max() > 1e-4
    noise = torch.randn(5, 6, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(head.sample_patch(h, hist, noise=noise), a)
    one_by_one = torch.cat([head.sample_patch(h[i : i + 1], hist[i : i + 1], noise=noise[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(one_by_one, a, atol=1e-5, rtol=1e-5)


def test_fm_temperature_zero_one_step_gives_the_conditional_mean():
    """Temperature scales the starting noise: 0 with one FM Euler step is the head's estimate of ``E[x | h]`` (the
    toy's component means once trained), the same for every noise draw, and its spread is gone."""
    head, _ = _train_toy("fm", 300)
    head.cfg.temperature = 0.0
    cond = torch.eye(3)
    a = head.sample_patch(cond, steps=1, cfg_scale=1.0, generator=torch.Generator().manual_seed(0))
    b = head.sample_patch(cond, steps=1, cfg_scale=1.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert float((a - MEANS).norm(dim=-1).max()) < 0.35, a  # the means are >= 2.9 apart
    head.cfg.temperature = 0.5  # half the noise: the same as sampling the halved noise at temperature 1
    noise = torch.randn(3, 2, generator=torch.Generator().manual_seed(2))
    half = head.sample_patch(cond, steps=4, cfg_scale=1.0, noise=noise)
    head.cfg.temperature = 1.0
    torch.testing.assert_close(half, head.sample_patch(cond, steps=4, cfg_scale=1.0, noise=0.5 * noise))
    for bad in (-0.1, 2.5):
        with pytest.raises(VoxarConfigError, match="temperature"):
            HeadConfig(temperature=bad)


def test_cfg_scale_one_is_unguided_and_zero_is_unconditional():
    head = _random_head(fm_steps=4)
    h, hist, noise = torch.randn(5, 5), torch.randn(5, 6), torch.randn(5, 6)

    def euler(drop: bool) -> torch.Tensor:
        z, grid = noise.clone(), head.cfg.grid()
        with torch.no_grad():
            for t0, t1 in zip(grid[:-1], grid[1:], strict=True):
                t = torch.full((5,), t0)
                z = z - (t0 - t1) * head(z, t, t, h, hist, torch.full((5,), drop))
        return z

    torch.testing.assert_close(head.sample_patch(h, hist, cfg_scale=1.0, noise=noise), euler(False))
    torch.testing.assert_close(
        head.sample_patch(h, hist, cfg_scale=0.0, noise=noise), euler(True), atol=1e-5, rtol=1e-5
    )
    guided = head.sample_patch(h, hist, cfg_scale=2.0, noise=noise)
    assert (guided - euler(False)).abs().max() > 1e-4
    assert head.default_cfg_scale == 1.5 and _random_head(mode="mf").default_cfg_scale == 1.0


def test_history_helpers_match():
    seq = torch.randn(2, 5, 3)
    hist = history_from_sequence(seq, 2)
    assert hist.shape == (2, 5, 6)
    torch.testing.assert_close(hist[:, 0], torch.zeros(2, 6))
    torch.testing.assert_close(hist[:, 3], torch.cat([seq[:, 1], seq[:, 2]], -1))
    running = torch.zeros(2, 6)
    for i in range(5):
        torch.testing.assert_close(running, hist[:, i])
        running = history_push(running, seq[:, i])
    assert history_from_sequence(seq, 0).shape == (2, 5, 0)


# ------------------------------------------------------------------------------------------------ stop / lengths
def test_stop_targets_and_weighted_bce():
    lengths = torch.tensor([4, 2])
    assert stop_targets(lengths, 5).tolist() == [[0, 0, 0, 1, 0], [0, 1, 0, 0, 0]]
    assert stop_targets(lengths, 5, n_positive=2).tolist() == [[0, 0, 1, 1, 0], [1, 1, 0, 0, 0]]
    zeros = torch.zeros(2, 5)
    log2 = torch.log(torch.tensor(2.0))
    # 2 positives weighted 50, 4 negatives, padding ignored: (2 * 50 + 4) * log 2 / 6
    torch.testing.assert_close(stop_loss(zeros, lengths, pos_weight=50.0), (2 * 50 + 4) * log2 / 6)
    padded = zeros.clone()
    padded[:, 4] = 100.0
    padded[1, 2:] = -100.0
    torch.testing.assert_close(stop_loss(padded, lengths, 50.0), stop_loss(zeros, lengths, 50.0))
    logits = torch.zeros(2, 5, requires_grad=True)
    stop_loss(logits, lengths, pos_weight=80.0).backward()
    assert logits.grad[0, 3] < 0 and logits.grad[0, 0] > 0
    assert logits.grad[0, 3].abs() == pytest.approx(80 * logits.grad[0, 0].abs().item(), rel=1e-5)
    head = StopHead(8)
    assert head(torch.randn(2, 5, 8)).shape == (2, 5)


def test_length_guards():
    text_lens = torch.tensor([0, 3, 100])
    lo, hi = length_limits(text_lens, min_patches=2, max_patches=200)
    assert lo.tolist() == [2, 2, 2] and hi.tolist() == [25, 37, 200]
    lo, hi = length_limits(text_lens, prompt_patches=30)
    assert lo.tolist() == [1, 1, 1] and hi.tolist() == [1, 7, 395]
    high, low = torch.full((3,), 5.0), torch.full((3,), -5.0)
    assert stop_now(high, 1, lo, hi).tolist() == [True, True, True]
    lo2 = torch.tensor([1, 3, 3])
    assert stop_now(high, 2, lo2, hi).tolist() == [True, False, False]  # never before min_len
    assert stop_now(low, 7, lo, hi).tolist() == [True, True, False]  # always at max_len
    assert stop_now(torch.zeros(3), 3, lo, hi, threshold=0.4).tolist() == [True, True, True]
