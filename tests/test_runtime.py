"""The streaming TTS runtime: stream == offline, incremental text, click-free joins, cancellation, backpressure,
continuous batching, sinks and ``voxar tts --stream`` / ``voxar bench tts``. Random-weight tiny models: speed and
equality do not depend on training."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import run_voxar

from voxar.errors import VoxarAudioError, VoxarConfigError, VoxarTextError
from voxar.runtime.batching import ContinuousBatcher, Request
from voxar.runtime.builders import random_tts
from voxar.runtime.engine import StreamConfig, StreamingTTS
from voxar.runtime.sinks import FileSink, StdoutSink
from voxar.runtime.textstream import TextSegmenter, segments

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "Hello there. How are you?"


@pytest.fixture(scope="module")
def tts():
    torch.manual_seed(0)
    return random_tts("tiny", seed=0)


@pytest.fixture(scope="module")
def offline(tts):
    return tts.synthesize(TEXT, head="mf", seed=3)[0]


# ------------------------------------------------------------------------------------------------ text segmentation
def test_segmenter_releases_sentences_as_soon_as_they_end():
    seg = TextSegmenter()
    assert seg.feed("Hello there") == []
    assert seg.feed(".") == []  # the end is only known once whitespace follows
    assert seg.feed(" How") == ["Hello there."]
    assert seg.feed(" are you?\n") == ["How are you?"]
    assert seg.finish() == []


def test_segmenter_clause_and_length_rules():
    seg = TextSegmenter(min_chars=40, first_min_chars=20, max_chars=60)
    assert seg.feed("Short, ") == []  # a clause break before first_min_chars does not cut
    assert seg.feed("but now it is long enough, and") == ["Short, but now it is long enough,"]
    assert seg.feed(" then, more") == []  # later segments need min_chars before a clause break
    out = seg.feed(" words " * 10)
    assert out and all(len(s) <= 60 for s in out)  # run-on text is cut at a word boundary by max_chars
    rest = seg.finish()
    assert " ".join(out + rest).split() == ("and then, more" + " words" * 10).split()


def test_segments_of_pieces_cover_all_text():
    text = "One two three, four five six seven eight nine ten eleven; twelve. Thirteen"
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    out = list(segments(pieces))
    assert " ".join(out).split() == text.split()
    assert out[-1] == "Thirteen"


# ------------------------------------------------------------------------------------------------ stream == offline
@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("first_chunk,chunk", [(1, 4), (2, 3), (5, 1)])
def test_stream_equals_offline(tts, offline, overlap, first_chunk, chunk):
    engine = StreamingTTS(tts, StreamConfig(first_chunk=first_chunk, chunk=chunk, head="mf", seed=3, overlap=overlap))
    chunks = list(engine.stream(TEXT))
    out = np.concatenate([c.pcm for c in chunks])
    assert len(out) == len(offline)
    np.testing.assert_allclose(out, offline, atol=1e-5)
    assert chunks[-1].final and not any(c.final for c in chunks[:-1])
    patch = tts.cfg.lm.patch_size * tts.mel_cfg.hop_length
    first = chunks[0]
    # the first chunk covers first_chunk patches, minus the samples held back for the vocoder and the fade-out
    assert first.patches == first_chunk and len(first.pcm) <= first_chunk * patch
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(b.latency_ms >= a.latency_ms for a, b in zip(chunks, chunks[1:], strict=False))


def test_incremental_text_starts_before_the_text_is_complete(tts, offline):
    consumed = []

    def pieces():
        for i in range(0, len(TEXT), 2):
            consumed.append(i)
            yield TEXT[i : i + 2]

    engine = StreamingTTS(tts, StreamConfig(head="mf", seed=3, overlap=False))
    out, consumed_at_first = [], None
    for ch in engine.stream(pieces()):
        if consumed_at_first is None and len(ch.pcm):
            consumed_at_first = len(consumed)
        out.append(ch.pcm)
    assert consumed_at_first is not None and consumed_at_first < len(range(0, len(TEXT), 2))
    np.testing.assert_allclose(np.concatenate(out), offline, atol=1e-5)  # same segments as the offline split


def test_chunk_joins_are_click_free(tts):
    engine = StreamingTTS(tts, StreamConfig(head="mf", seed=1, chunk=2))
    chunks = [c.pcm for c in engine.stream("Good morning. Nice day, is it not?") if len(c.pcm)]
    within = max(float(np.max(np.abs(np.diff(c)))) for c in chunks if len(c) > 1)
    joins = [abs(float(b[0]) - float(a[-1])) for a, b in zip(chunks, chunks[1:], strict=False)]
    assert max(joins) <= within  # no boundary jumps more than the signal does inside a chunk
    sr = tts.sample_rate
    wav = np.concatenate(chunks)
    silent = np.flatnonzero(np.abs(wav) < 1e-9)
    assert len(silent) >= int(0.1 * sr)  # the pause between the sentences is there


# ------------------------------------------------------------------------------------------------ control flow
def test_cancel_mid_stream_stops_the_producer(tts):
    engine = StreamingTTS(tts, StreamConfig(head="mf", overlap=True, min_patches=200, max_patches=200))
    gen = engine.stream("A long sentence that would take a while.")
    first = next(gen)
    assert len(first.pcm) > 0
    producer = engine.last_producer
    gen.close()
    assert producer.thread is not None and not producer.thread.is_alive()
    assert producer.cancelled.is_set()
    assert producer.steps < 200  # it stopped long before the 200 patches


def test_slow_consumer_applies_backpressure(tts):
    cfg = StreamConfig(head="mf", overlap=True, max_queue=3, first_chunk=1, chunk=1, min_patches=80, max_patches=80)
    engine = StreamingTTS(tts, cfg)
    gen = engine.stream("Backpressure please.")
    next(gen)
    time.sleep(1.0)  # the consumer stalls; the LM could make all 80 patches in this time
    producer = engine.last_producer
    # consumed: 1 patch (+ the vocoder's look at the next); queued: at most max_queue; one more blocked in put()
    assert producer.steps <= 1 + 1 + cfg.max_queue + 1
    gen.close()


def test_bad_inputs(tts):
    engine = StreamingTTS(tts)
    with pytest.raises(VoxarTextError):
        next(engine.stream("   "))
    with pytest.raises(VoxarTextError):
        list(engine.stream(iter(["...", " ?!"])))
    with pytest.raises(VoxarConfigError):
        StreamConfig(first_chunk=0)
    with pytest.raises(VoxarConfigError):
        StreamConfig(autocast="int4")


def test_overlap_default_needs_a_spare_core(tts, monkeypatch):
    """overlap=None: the producer thread only where a core is left beyond torch's intra-op threads (or CUDA)."""
    from voxar.runtime import engine as engine_mod

    engine = StreamingTTS(tts, StreamConfig(head="mf", seed=3))
    monkeypatch.setattr(engine_mod, "available_cpus", lambda: 2)
    for threads, threaded in ((1, True), (2, False)):
        monkeypatch.setattr(torch, "get_num_threads", lambda n=threads: n)
        assert engine.overlap is threaded and engine_mod.auto_overlap(torch.device("cuda"))
        chunks = list(engine.stream(TEXT))
        assert (engine.last_producer.thread is not None) is threaded and chunks
    assert StreamingTTS(tts, StreamConfig(overlap=True)).overlap  # an explicit setting wins
    assert engine_mod.available_cpus() >= 1


def test_producer_errors_reach_the_consumer(tts):
    engine = StreamingTTS(tts, StreamConfig(overlap=True))
    with pytest.raises(VoxarAudioError, match="at least 0.5 s"):
        list(engine.stream(TEXT, prompt_wav=np.zeros(100, dtype=np.float32) + 0.5, prompt_text="hi"))


# ------------------------------------------------------------------------------------------------ batching
def test_continuous_batching_equals_single_streams(tts):
    texts = ["Hello there.", "How are you today, my friend?", "Fine."]
    outs: dict[int, list[np.ndarray]] = {}
    finals: list[int] = []

    def on_audio(req, pcm, final):
        outs.setdefault(req.tag, []).append(pcm)
        if final:
            finals.append(req.tag)

    batcher = ContinuousBatcher(tts, head="mf", chunk=4, max_batch=2)
    cond, prefix = tts._conditioning(None, None)
    reqs = [
        Request(tts.encode_sentences(t), cond, prefix, torch.Generator().manual_seed(i), on_audio, tag=i)
        for i, t in enumerate(texts)
    ]
    batcher.submit(reqs[0])
    batcher.step()
    batcher.step()  # the second stream joins two steps later, the third when a slot is free
    batcher.submit(reqs[1])
    batcher.submit(reqs[2])
    seen_batch = 0
    while not batcher.idle():
        seen_batch = max(seen_batch, batcher.step())
    assert seen_batch == 2 and sorted(finals) == [0, 1, 2] and all(r.finished for r in reqs)
    for i, t in enumerate(texts):
        ref = np.concatenate([tts.vocode(m) for m in tts.synthesize_mels(t, head="mf", seed=i)])
        np.testing.assert_allclose(np.concatenate(outs[i]), ref, atol=1e-5)


@pytest.mark.parametrize("decode", ["dynamic", "static"])
def test_stream_of_a_text_pointer_lm_equals_offline(decode):
    tts = random_tts("tiny", seed=1, pointer=True)
    with torch.no_grad():
        tts.model.lm.pointer.adv_head.bias.copy_(torch.tensor([1.0, 0.0, -1.0, -2.0]))
    offline = tts.synthesize(TEXT, head="mf", seed=3)[0]
    tts.set_decode(decode)
    engine = StreamingTTS(tts, StreamConfig(first_chunk=1, chunk=3, head="mf", seed=3, overlap=False))
    out = np.concatenate([c.pcm for c in engine.stream(TEXT)])
    assert len(out) == len(offline)
    np.testing.assert_allclose(out, offline, atol=1e-4)


@pytest.mark.parametrize("noise", ["patch", "utterance"])
def test_continuous_batching_of_a_text_pointer_lm_equals_single_streams(noise):
    """Pointer LMs (dwell input, no feedback): each stream's pointer moves as in single-stream decoding, and each
    segment ends by the pointer's tail (the stop head is silenced), with a prompt transcript too (text_start); each
    stream's starting noise is its own, per patch or one per utterance."""
    tts = random_tts("tiny", seed=1, pointer=True)
    tts.set_noise(noise)
    lm = tts.model.lm
    assert lm.pointer is not None and lm.feedback is False
    with torch.no_grad():  # about half a phone a patch
        lm.pointer.adv_head.bias.copy_(torch.tensor([1.0, 0.0, -1.0, -2.0]))
    texts = ["Hello there.", "How are you today? Fine.", "Fine."]
    outs: dict[int, list[np.ndarray]] = {}

    def on_audio(req, pcm, final):
        outs.setdefault(req.tag, []).append(pcm)

    prompt = (0.3 * np.sin(np.arange(16000) / 7.0)).astype(np.float32)
    batcher = ContinuousBatcher(tts, head="fm", steps=2, chunk=4, max_batch=2)
    conds = [tts._conditioning(None, None), tts._conditioning(prompt, "A tone."), tts._conditioning(None, None)]
    reqs = [
        Request(tts.encode_sentences(t), *conds[i], torch.Generator().manual_seed(i), on_audio, tag=i)
        for i, t in enumerate(texts)
    ]
    for r in reqs:
        batcher.submit(r)
    batcher.run()
    assert all(r.finished for r in reqs)
    for i, t in enumerate(texts):
        args = (prompt, "A tone.") if i == 1 else (None, None)
        mels = tts.synthesize_mels(t, *args, head="fm", steps=2, seed=i)
        # ended by the pointer, not by the length guard (4 patches a token + 25)
        assert all(m.shape[1] < 4 * (4 * len(t) + 25) for m in mels)
        ref = np.concatenate([tts.vocode(m) for m in mels])
        np.testing.assert_allclose(np.concatenate(outs[i]), ref, atol=1e-5)


def test_utterance_noise_starts_every_patch_of_every_sentence_from_one_draw(monkeypatch):
    from voxar.models.heads import FlowHead, HeadConfig, utterance_noise

    tts = random_tts("tiny", seed=1, pointer=True)
    with torch.no_grad():
        tts.model.lm.pointer.adv_head.bias.copy_(torch.tensor([1.0, 0.0, -1.0, -2.0]))
    seen: list[torch.Tensor | None] = []
    orig = FlowHead.sample_patch

    def spy(self, h, prev=None, steps=None, cfg_scale=None, generator=None, noise=None):
        seen.append(None if noise is None else noise.clone())
        return orig(self, h, prev, steps, cfg_scale, generator, noise)

    monkeypatch.setattr(FlowHead, "sample_patch", spy)
    text = "Hello there. How are you?"
    patchwise = tts.synthesize_mels(text, head="fm", steps=2, seed=4)
    assert len(seen) > 4 and all(n is None for n in seen)  # drawn inside, afresh for every patch
    seen.clear()
    tts.set_noise("utterance")
    mels = tts.synthesize_mels(text, head="fm", steps=2, seed=4)
    assert len(mels) == 2 and len(seen) == sum(m.shape[1] for m in mels) // 4
    used = utterance_noise(torch.Generator().manual_seed(4), 1, tts.model.lm.cfg.patch_dim)
    for n in seen:  # both sentences, every patch: the seed's one draw
        torch.testing.assert_close(n, used, rtol=0, atol=0)
    again = tts.synthesize_mels(text, head="fm", steps=2, seed=4)
    other = tts.synthesize_mels(text, head="fm", steps=2, seed=5)
    torch.testing.assert_close(torch.cat(again, -1), torch.cat(mels, -1), rtol=0, atol=0)
    assert not torch.equal(torch.cat(other, -1)[:, :8], torch.cat(mels, -1)[:, :8])
    assert not torch.equal(torch.cat(patchwise, -1)[:, :8], torch.cat(mels, -1)[:, :8])
    g = torch.Generator().manual_seed(4)
    torch.randn(3, generator=g)  # the generator's position does not matter, only its seed
    torch.testing.assert_close(utterance_noise(g, 1, used.shape[1]), used, rtol=0, atol=0)
    with pytest.raises(VoxarConfigError, match="noise"):
        tts.set_noise("frame")
    with pytest.raises(VoxarConfigError, match="noise"):
        HeadConfig(noise="frame")


def test_batching_needs_a_chunk_one_lm(tts):
    import copy

    other = copy.copy(tts)
    other.model = copy.deepcopy(tts.model)
    other.model.lm.cfg.chunk_size = 4
    with pytest.raises(VoxarConfigError, match="chunk_size 1"):
        ContinuousBatcher(other)


# ------------------------------------------------------------------------------------------------ sinks and CLI
def test_sinks_stream_wav_and_growing_file(tmp_path):
    buf = io.BytesIO()
    sink = StdoutSink(16000, "wav", stream=buf)
    tone = 0.5 * np.sin(np.arange(1600) / 5.0).astype(np.float32)
    sink.write(tone)
    sink.write(tone)
    data, sr = sf.read(io.BytesIO(buf.getvalue()), dtype="float32")
    assert sr == 16000 and len(data) == 3200
    np.testing.assert_allclose(data[:1600], tone, atol=1e-4)
    path = tmp_path / "grow.wav"
    fs = FileSink(path, 16000)
    fs.write(tone)
    assert sf.info(path).frames >= 0  # readable while open
    fs.close(ok=True)
    assert sf.info(path).frames == 1600
    failed = tmp_path / "failed.wav"
    fs = FileSink(failed, 16000)
    fs.write(tone)
    fs.close(ok=False)
    assert not failed.exists()  # no silently truncated output


@pytest.fixture(scope="module")
def model_dir(tts, tmp_path_factory):
    d = tmp_path_factory.mktemp("rt") / "tts"
    tts.save_pretrained(d)
    vd = d.parent / "vocoder"
    tts.vocoder.save_pretrained(vd)
    return d, vd


def test_cli_stream_raw_stdout_equals_offline_file(model_dir, tmp_path):
    d, vd = model_dir
    args = ["tts", "--text", TEXT, "--model", str(d), "--vocoder", str(vd), "--seed", "3", "--threads", "1"]
    off, patchwise = tmp_path / "off.wav", tmp_path / "patchwise.wav"
    assert run_voxar(*args, "--head", "mf", "--noise", "utterance", "-o", str(off)).returncode == 0
    assert run_voxar(*args, "--head", "mf", "--noise", "patch", "-o", str(patchwise)).returncode == 0
    res = run_voxar("-v", *args, "--noise", "utterance", "--stream", "-o", "-", "--format", "raw")  # default head mf
    assert res.returncode == 0, res.stderr
    streamed = np.frombuffer(res.stdout, dtype="<i2")
    ref, _ = sf.read(off, dtype="int16")
    assert len(streamed) == len(ref) and np.max(np.abs(streamed.astype(int) - ref)) <= 1
    other, _ = sf.read(patchwise, dtype="int16")
    assert len(other) != len(ref) or np.max(np.abs(other.astype(int) - ref)) > 1  # --noise reaches the heads
    err = res.stderr.decode()
    assert "chunk 0:" in err and "ready at" in err and "first audio after" in err


def test_cli_stream_stdin_to_growing_file(model_dir, tmp_path):
    d, vd = model_dir
    out = tmp_path / "s.wav"
    res = run_voxar(
        "tts",
        "--model",
        str(d),
        "--vocoder",
        str(vd),
        "--stream",
        "-o",
        str(out),
        "--threads",
        "1",
        input=b"Hi there.\nBye now.\n",
    )
    assert res.returncode == 0, res.stderr
    data, sr = sf.read(out)
    assert sr == 16000 and len(data) > 0.3 * sr


def test_cli_stream_play_on_alsa_file_device(model_dir, alsa_file_devices):
    env, _, spk = alsa_file_devices
    d, vd = model_dir
    res = run_voxar(
        "tts", "--text", "Hi.", "--model", str(d), "--vocoder", str(vd), "--play", "--output-device", "voxar_spk",
        "--threads", "1", env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert spk.stat().st_size > 0.1 * 16000 * 2  # the file PCM received the played samples
    bad = run_voxar("tts", "--text", "Hi.", "--model", str(d), "--play", "--output-device", "nope", env=env)
    assert "nope" in bad.stderr.decode()
    assert bad.returncode == 1 and len(bad.stderr.decode().strip().splitlines()) == 1


def test_bench_tts_json(tmp_path):
    out = tmp_path / "b.json"
    res = run_voxar("bench", "tts", "--size", "tiny", "--repeats", "2", "--seconds", "0.5", "-o", str(out))
    assert res.returncode == 0, res.stderr
    r = json.loads(out.read_text())
    assert r["mode"] == "single" and r["first_audio_ms"]["p50_ms"] > 0 and r["rtf"] > 0
    assert abs(r["audio_seconds"] - 0.48) < 0.05 and r["peak_rss_mb"] > 0
    res = run_voxar("bench", "tts", "--size", "tiny", "--streams", "3", "--seconds", "0.3", "--rounds", "1")
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    assert r["streams"] == 3 and r["requests_done"] >= 3 and "realtime_sustained" in r


def test_static_decode_streams_the_same_audio_and_benches(tts, offline, tmp_path):
    """``TTS.set_decode("static")`` (fixed-shape KV cache, the CUDA-graph path run eagerly) streams the audio of
    the default dynamic decoder; ``bench tts --decode static`` reports it; cuda-graph on a CPU is a one-line error."""
    tts.set_decode("static")
    try:
        got = StreamingTTS(tts, StreamConfig(head="mf", seed=3)).synthesize(TEXT)
    finally:
        tts.set_decode("dynamic")
    assert got.shape == offline.shape
    np.testing.assert_allclose(got, offline, atol=1e-4)
    with pytest.raises(VoxarConfigError, match="CUDA"):
        tts.set_decode("cuda-graph")
    out = tmp_path / "s.json"
    res = run_voxar("bench", "tts", "--size", "tiny", "--repeats", "1", "--seconds", "0.3", "--decode", "static", "-o",
                    str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    r = json.loads(out.read_text())
    assert r["decode"] == "static" and r["profile"]["lm_step_ms"] > 0
    bad = run_voxar("bench", "tts", "--size", "tiny", "--repeats", "1", "--seconds", "0.3", "--decode", "cuda-graph")
    assert bad.returncode == 1 and "CUDA" in bad.stderr.decode().strip().splitlines()[-1]


def test_warmup_leaves_the_stream_unchanged(tts, offline):
    engine = StreamingTTS(tts, StreamConfig(head="mf", seed=3))
    assert engine.warmup() > 0
    assert engine.cfg.min_patches is None and engine.cfg.overlap is None  # settings restored
    np.testing.assert_allclose(engine.synthesize(TEXT), offline, atol=1e-5)
