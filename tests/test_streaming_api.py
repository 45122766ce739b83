"""The streaming API (voxar.modules.streaming) and the streamable convolutions (voxar.modules.conv)."""

from __future__ import annotations

import pytest
import torch

from voxar.modules import (
    SameConv1d,
    StreamingConv1d,
    StreamingModule,
    chunk_schedule,
    clone_state,
    run_chunked,
    streaming,
)

SCHEDULES = [1, 3, 4, 16, [2, 0, 5, 1, 9, 3]]


pytestmark = pytest.mark.usefixtures("one_thread")


def _conv(kind: str, groups: bool, dilation: int) -> StreamingConv1d:
    torch.manual_seed(0)
    channels = 6
    g = channels if groups else 1
    if kind == "causal":
        return StreamingConv1d(channels, channels, 7, dilation=dilation, groups=g)
    if kind == "same":
        return SameConv1d(channels, channels, 7, dilation=dilation, groups=g)
    return StreamingConv1d(channels, channels, 5, dilation=dilation, groups=g, lookahead=1)  # asymmetric


@pytest.mark.parametrize("kind", ["causal", "same", "lookahead1"])
@pytest.mark.parametrize("groups", [False, True], ids=["dense", "depthwise"])
@pytest.mark.parametrize("dilation", [1, 2])
def test_conv_chunked_equals_full(kind, groups, dilation):
    conv = _conv(kind, groups, dilation)
    x = torch.randn(2, 6, 37)
    with torch.no_grad():
        full = conv(x)
        assert full.shape == x.shape
        for chunks in SCHEDULES:
            streamed = run_chunked(conv, x, chunks)
            torch.testing.assert_close(streamed, full, rtol=1e-5, atol=1e-6, msg=f"chunks {chunks}")


@pytest.mark.parametrize("groups, bias", [(1, True), (1, False), (8, True), (8, False), (2, True)])
def test_small_step_kernel_equals_conv1d(groups, bias):
    """The few-frame inference kernel (unfold + matmul / multiply-sum) equals nn.Conv1d (grouped: falls back)."""
    torch.manual_seed(0)
    conv = StreamingConv1d(8, 8, 5, groups=groups, bias=bias)
    for n in (1, 2, 4):
        buf = torch.randn(3, 8, 4 + n)
        with torch.no_grad():
            torch.testing.assert_close(conv._small_step(buf), conv.conv(buf), rtol=1e-5, atol=1e-6)
    x = torch.randn(1, 8, 9)
    with torch.no_grad():
        full = conv(x)
        torch.testing.assert_close(run_chunked(conv, x, 1), full, rtol=1e-5, atol=1e-6)  # 1-frame steps
    out = run_chunked(conv, x, 1)  # with gradients enabled the plain conv1d path runs
    assert out.requires_grad


@pytest.mark.parametrize("kind", ["causal", "same"])
def test_conv_matches_torch_padding(kind):
    """StreamingConv1d = nn.Conv1d with left padding; SameConv1d = nn.Conv1d(padding=3)."""
    conv = _conv(kind, True, 1)
    x = torch.randn(1, 6, 20)
    ref = torch.nn.functional.conv1d(
        torch.nn.functional.pad(x, (6, 0) if kind == "causal" else (3, 3)), conv.conv.weight, conv.conv.bias, groups=6
    )
    torch.testing.assert_close(conv(x), ref)


def test_conv_streaming_emits_only_final_frames():
    """After n inputs, a conv with lookahead a has emitted exactly n - a outputs, and flush emits the rest."""
    conv = SameConv1d(3, 3, 7)
    state = conv.init_state(1)
    emitted = 0
    for n in range(1, 11):
        y, state = conv.step(torch.randn(1, 3, 1), state)
        emitted += y.shape[-1]
        assert emitted == max(0, n - conv.lookahead)
    assert conv.flush(state).shape[-1] == conv.lookahead
    assert StreamingConv1d(3, 3, 7).flush(StreamingConv1d(3, 3, 7).init_state(1)) is None


@pytest.mark.parametrize("kind", ["causal", "same"])
def test_conv_causality_by_gradient(kind):
    """Output t depends on inputs in [t - left_pad, t + lookahead] and on nothing else."""
    conv = _conv(kind, False, 2)
    x = torch.randn(1, 6, 30, requires_grad=True)
    t = 15
    conv(x)[..., t].sum().backward()
    touched = (x.grad.abs().sum(1)[0] > 0).nonzero().flatten()
    assert touched.min().item() == t - conv.left_pad
    assert touched.max().item() == t + conv.lookahead


def test_stream_context_manager_reset_snapshot():
    conv = SameConv1d(4, 4, 7, dilation=3)
    x = torch.randn(3, 4, 25)
    with torch.no_grad():
        full = conv(x)
        with streaming(conv, batch_size=3) as s:
            first = s.step(x[..., :10])
            snap = s.snapshot()
            rest = torch.cat([s.step(x[..., 10:]), s.flush()], dim=-1)
            torch.testing.assert_close(torch.cat([first, rest], -1), full)
            with pytest.raises(RuntimeError, match="flushed"):
                s.step(x)
            # roll back to the snapshot and take a different continuation
            s.restore(snap)
            other = torch.randn(3, 4, 15)
            alt = torch.cat([s.step(other), s.flush()], dim=-1)
            ref = conv(torch.cat([x[..., :10], other], -1))[..., first.shape[-1] :]
            torch.testing.assert_close(alt, ref)
            # reset starts a fresh stream that reproduces the full pass
            s.reset()
            torch.testing.assert_close(torch.cat([s.step(x), s.flush()], -1), full)
        with conv.streaming(3) as s2:
            assert s2.step(x).shape[-1] == x.shape[-1] - conv.lookahead


def test_clone_state_is_independent():
    conv = StreamingConv1d(2, 2, 3)
    state = conv.init_state(1)
    _, state = conv.step(torch.ones(1, 2, 4), state)
    copy = clone_state(state)
    state.cache.add_(1.0)
    assert not torch.equal(copy.cache, state.cache)


def test_chunk_schedule_and_errors():
    assert chunk_schedule(10, [3, 4]) == [3, 4, 3]
    assert chunk_schedule(5, 16) == [5]
    assert sum(chunk_schedule(37, [2, 0, 5])) == 37
    with pytest.raises(ValueError):
        chunk_schedule(5, [0])
    with pytest.raises(TypeError):
        with streaming(torch.nn.Linear(2, 2), 1):  # type: ignore[arg-type]
            pass


def test_batch_items_are_independent():
    conv = SameConv1d(3, 3, 5)
    x = torch.randn(2, 3, 12)
    with torch.no_grad():
        both = run_chunked(conv, x, 3)
        one = run_chunked(conv, x[1:], 3)
    torch.testing.assert_close(both[1:], one)


def test_base_class_requires_step():
    class Bare(StreamingModule):
        pass

    with pytest.raises(NotImplementedError):
        Bare().init_state(1)
