"""The diagonal text-attention prior (voxar.models.align) and the attention-probability taps it reads."""

from __future__ import annotations

import pytest
import torch

from voxar.models.align import alignment_prior_loss, diagonal_penalty
from voxar.models.lm import LMConfig, PatchLM
from voxar.modules.transformer import Transformer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_penalty_is_zero_on_the_diagonal_and_grows_off_it():
    w = diagonal_penalty(torch.tensor([10, 5]), torch.tensor([10, 20]), m=10, lt=20, sigma=0.2)  # (B, m, lt)
    assert w.shape == (2, 10, 20)
    idx = torch.arange(10)
    assert torch.allclose(w[0, idx, idx], torch.zeros(10), atol=1e-6)  # same length: the main diagonal
    assert w[0, 0, 9] > 0.9 and w[0, 9, 0] > 0.9
    assert (w[0, :, 10:] == 0).all()  # text keys past the item's length
    assert (w[1, 5:] == 0).all()  # queries past the item's length
    assert w[1, 0, 1] < 0.01 < w[1, 0, 10]  # 5 queries over 20 tokens: query 0 reads tokens ~0-3


def test_loss_ranks_diagonal_below_uniform_below_anti_diagonal():
    m, lt = 12, 12
    eye = torch.eye(m)
    uniform = torch.full((m, lt), 1.0 / lt)
    anti = eye.flip(1)

    def loss(a: torch.Tensor) -> float:
        probs = [a[None, None].expand(1, 2, m, lt)]  # (B, H, T, S) with queries and keys at offset 0
        n = torch.tensor([m])
        return float(alignment_prior_loss(probs, slice(0, None), slice(0, None), n, torch.tensor([lt])))

    assert loss(eye) < 1e-6 < loss(uniform) < loss(anti)
    # a head that escapes to non-text keys (speaker, speech history) is penalised by the mass term
    escape = torch.zeros(1, 2, m, lt + 4)  # (B, H, T, S): text keys 0..lt-1, then 4 other keys
    escape[0, 0, :, :lt] = eye  # head 0 reads the text along the diagonal
    escape[0, 1, :, lt:] = 0.25  # head 1 attends only to the other keys
    n = torch.tensor([m])
    both = alignment_prior_loss([escape], slice(0, None), slice(0, lt), n, torch.tensor([lt]))
    first = alignment_prior_loss([escape], slice(0, None), slice(0, lt), n, torch.tensor([lt]), heads=1)
    assert float(first) < 1e-6 and float(both) == pytest.approx(0.5, abs=1e-5)  # mean of 0 and 1
    with pytest.raises(ValueError):
        alignment_prior_loss([], slice(0, None), slice(0, None), torch.tensor([1]), torch.tensor([1]))


def test_transformer_probability_tap_matches_plain_output():
    torch.manual_seed(0)
    net = Transformer(32, 3, 4, 64, attn_impl="sdpa").eval()
    x, pos = torch.randn(2, 7, 32), torch.arange(7).expand(2, -1)
    mask = torch.ones(7, 7, dtype=torch.bool).tril()[None, None]
    probs: list[torch.Tensor] = []
    y_tap = net(x, pos, mask, probs_from=(0, 2), probs_out=probs)
    assert torch.allclose(y_tap, net(x, pos, mask), atol=1e-5)  # math kernel on tapped layers == sdpa
    assert len(probs) == 2 and probs[0].shape == (2, 4, 7, 7)
    assert torch.allclose(probs[1].sum(-1), torch.ones(2, 4, 7), atol=1e-5)
    assert (probs[0].triu(1) == 0).all()  # the mask holds in the tapped probabilities


def test_lm_forward_returns_a_differentiable_alignment_loss():
    torch.manual_seed(0)
    dims = dict(vocab_size=40, n_mels=8, patch_size=2, d_model=32, n_layers=2, n_heads=4, ffn=64, ref_encoder=None)
    lm = PatchLM(LMConfig(**dims, speaker_dim=16)).train()
    text, text_lens = torch.randint(4, 40, (2, 9)), torch.tensor([9, 5])
    mels, mel_lens = torch.randn(2, 8, 20), torch.tensor([20, 11])
    assert "align" not in lm(text, text_lens, mels, mel_lens)
    out = lm(text, text_lens, mels, mel_lens, align_layers=(1,))
    assert out["align"].ndim == 0 and 0 < out["align"].item() < 2
    out["align"].backward()
    assert lm.text_emb.weight.grad is not None and lm.text_emb.weight.grad.abs().sum() > 0
    # prompt continuation: the prior spans prompt + target patches against the whole text
    out = lm(text, text_lens, mels, mel_lens, prompt_mels=mels[:, :, :8], prompt_lens=torch.tensor([8, 6]),
             align_layers=(0, 1))  # fmt: skip
    assert torch.isfinite(out["align"])


def test_a_few_steps_on_the_prior_make_attention_diagonal():
    """The prior is learnable: 60 Adam steps on it alone cut the off-diagonal text mass by at least half."""
    torch.manual_seed(0)
    dims = dict(vocab_size=40, n_mels=8, patch_size=2, d_model=32, n_layers=2, n_heads=4, ffn=64, ref_encoder=None)
    lm = PatchLM(LMConfig(**dims, speaker_dim=16, dropout=0.0, patch_dropout=0.0, input_noise=0.0)).train()
    text, text_lens = torch.randint(4, 40, (2, 12)), torch.tensor([12, 8])
    mels, mel_lens = torch.randn(2, 8, 40), torch.tensor([40, 26])
    opt = torch.optim.Adam(lm.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = lm(text, text_lens, mels, mel_lens, align_layers=(1,))["align"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first, (first, loss.item())


def test_train_config_validates_the_prior():
    from voxar.bin.train_tts import TTSTrainConfig
    from voxar.errors import VoxarConfigError

    lm = LMConfig(n_layers=2)
    assert TTSTrainConfig(lm=lm).loss_kwargs()["align_layers"] == ()  # off by default
    assert TTSTrainConfig(lm=lm, align_weight=0.2, align_layers=[0, 1]).loss_kwargs()["align_layers"] == (0, 1)
    with pytest.raises(VoxarConfigError, match="align_layers"):
        TTSTrainConfig(lm=lm, align_weight=0.2, align_layers=[2])
    with pytest.raises(VoxarConfigError, match="align_sigma"):
        TTSTrainConfig(lm=lm, align_sigma=0.0)
    with pytest.raises(VoxarConfigError, match="align_heads"):
        TTSTrainConfig(lm=lm, align_heads=5)  # LMConfig() has 4 heads
