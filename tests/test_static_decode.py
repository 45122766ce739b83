"""Fixed-shape decoding (voxar.models.static_decode): the static-cache step equals PatchLM.step, generation with it
equals dynamic generation, and the CUDA-graph replay equals the eager step (CUDA only)."""

from __future__ import annotations

import pytest
import torch

from voxar.errors import VoxarConfigError
from voxar.models.generate import generate
from voxar.models.heads import FlowHead, HeadConfig
from voxar.models.lm import LMConfig, PatchLM
from voxar.models.refenc import RefEncoderConfig
from voxar.models.static_decode import StaticDecoder

N_MELS, P, SPK = 8, 2, 16

pytestmark = pytest.mark.usefixtures("one_thread")


def _lm(chunk: int = 1, impl: str = "sdpa", pointer: bool = False, dwell: int = 0, feedback: bool = True) -> PatchLM:
    torch.manual_seed(0)
    ref = RefEncoderConfig(n_mels=N_MELS, channels=16, out_dim=SPK)
    cfg = LMConfig(
        vocab_size=40, n_mels=N_MELS, patch_size=P, d_model=32, n_layers=2, n_heads=4, ffn=64, speaker_dim=SPK,
        ref_encoder=ref, attn_impl=impl, chunk_size=chunk, max_patches=40, pointer=pointer, pointer_dwell=dwell,
        pointer_skip_ids=[0, 1, 2, 3, 4, 5],
    )  # fmt: skip
    lm = PatchLM(cfg).eval()
    lm.feedback = feedback
    with torch.no_grad():  # non-trivial normalisation and a non-zero <audio-bos>
        lm.set_mel_stats(torch.randn(N_MELS), torch.rand(N_MELS) + 0.5)
        if pointer:  # about half a phone a patch: the pointer stays on some phones and moves on others
            lm.pointer.adv_head.bias.copy_(torch.tensor([1.0, 0.0, -1.0, -2.0]))
    return lm


POINTERS = [dict(pointer=True), dict(pointer=True, dwell=3), dict(pointer=True, dwell=3, feedback=False)]


def _inputs():
    g = torch.Generator().manual_seed(1)
    text = torch.randint(4, 40, (2, 9), generator=g)
    text_lens = torch.tensor([9, 5])  # different prefix lengths: padded prefix slots must stay invisible
    ref = torch.randn(2, N_MELS, 30, generator=g)
    patches = torch.randn(2, 12, P * N_MELS, generator=g)
    return text, text_lens, ref, patches


def _step_both(lm, check=None):
    """Step the dynamic and the static decoder on the same patches; their outputs agree at every step (``check(dec,
    state)`` after each). -> ``(dec, state, patches, text)``."""
    text, text_lens, ref, patches = _inputs()
    with torch.no_grad():
        _, state = lm.prefill(text, text_lens, ref_mels=ref)
        _, state2 = lm.prefill(text, text_lens, ref_mels=ref)
        dec = StaticDecoder(lm, state2)
        for i in range(patches.shape[1]):
            want, state = lm.step(patches[:, i], state)
            got = dec.step(patches[:, i])
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
            if check is not None:
                check(dec, state)
    return dec, state, patches, text


@pytest.mark.parametrize("impl", ["math", "sdpa"])
def test_static_step_equals_dynamic_step(impl):
    dec, _, patches, text = _step_both(_lm(impl=impl))
    assert dec.steps_left == dec.capacity - (text.shape[1] + 3 + 1) - patches.shape[1]


def test_generation_with_the_static_decoder_equals_dynamic_generation():
    lm = _lm()
    head = FlowHead(HeadConfig(patch_dim=P * N_MELS, cond_dim=32, width=32, n_blocks=1, history=1, time_dim=16))
    text, text_lens, ref, _ = _inputs()
    kw = dict(ref_mels=ref, min_patches=6, max_patches=14)
    a, la = generate(lm, head, text, text_lens, generator=torch.Generator().manual_seed(3), **kw)
    b, lb = generate(lm, head, text, text_lens, generator=torch.Generator().manual_seed(3), decode="static", **kw)
    assert torch.equal(la, lb)
    torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_static_decoder_refuses_chunk_mode_training_mode_and_overflow():
    lm = _lm(chunk=2)
    text, text_lens, ref, patches = _inputs()
    with torch.no_grad():
        _, state = lm.prefill(text, text_lens, ref_mels=ref)
    with pytest.raises(VoxarConfigError, match="chunk size of 1"):
        StaticDecoder(lm, state)
    lm = _lm()
    with torch.no_grad():
        _, state = lm.prefill(text, text_lens, ref_mels=ref)
    with pytest.raises(VoxarConfigError, match="CUDA"):  # the LM is on the CPU
        StaticDecoder(lm, state, cuda_graph=True)
    dec = StaticDecoder(lm, state, capacity=state.caches[0].length + 2)
    dec.step(patches[:, 0]), dec.step(patches[:, 1])
    with pytest.raises(RuntimeError, match="full"):
        dec.step(patches[:, 2])
    lm.train()
    with pytest.raises(VoxarConfigError, match="eval mode"):
        StaticDecoder(lm, state)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("kw", [{}, POINTERS[2]])
def test_cuda_graph_replay_equals_eager_steps(kw):
    lm = _lm(**kw).cuda()
    text, text_lens, ref, patches = (t.cuda() for t in _inputs())
    with torch.no_grad():
        _, s1 = lm.prefill(text, text_lens, ref_mels=ref)
        _, s2 = lm.prefill(text, text_lens, ref_mels=ref)
    eager, graph = StaticDecoder(lm, s1), StaticDecoder(lm, s2, cuda_graph=True)
    for i in range(patches.shape[1]):
        torch.testing.assert_close(graph.step(patches[:, i]), eager.step(patches[:, i]), atol=1e-4, rtol=1e-4)
    assert graph.graph is not None


@pytest.mark.parametrize("kw", POINTERS)
def test_static_step_with_a_text_pointer_equals_dynamic_step(kw):
    """The pointer (and dwell) moves inside the static step exactly as PatchLM.step moves it."""

    def same_pointer(dec, state):
        assert torch.equal(dec.ptr, state.ptr) and torch.equal(dec.last_ptr, state.ptr_slots[:, -1])
        torch.testing.assert_close(dec.acc, state.ptr_acc)

    _, state, _, _ = _step_both(_lm(**kw), same_pointer)
    moves = state.ptr_slots.diff(dim=1)
    assert (moves == 0).any() and (moves > 0).any()  # stayed and moved: the dwell was exercised


@pytest.mark.parametrize("kw", POINTERS[1:])
def test_pointer_generation_with_the_static_decoder_equals_dynamic_generation(kw):
    lm = _lm(**kw)
    head = FlowHead(HeadConfig(patch_dim=P * N_MELS, cond_dim=32, width=32, n_blocks=1, history=0, time_dim=16))
    text, text_lens, ref, _ = _inputs()
    with torch.no_grad():
        lm.stop_head.net[-1].bias.fill_(-20.0)  # the pointer's tail ends each item, not the stop head
    kw = dict(ref_mels=ref, max_patches=38, pointer_tail=3)
    a, la = generate(lm, head, text, text_lens, generator=torch.Generator().manual_seed(3), **kw)
    b, lb = generate(lm, head, text, text_lens, generator=torch.Generator().manual_seed(3), decode="static", **kw)
    assert torch.equal(la, lb) and (la < 38 * P).all()
    torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
