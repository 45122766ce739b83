"""Synthetic corpus: sentences, speaker plan, WORLD timbre, engine voices, the egs/synth recipe, LibriTTS layout."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxar.corpus.sentences import (
    clock_pair,
    generate_sentences,
    make_sentences,
    money_pair,
    number_words,
    ordinal_words,
    sentence_key,
    split_sentences,
    vocabulary,
    word_count,
)
from voxar.corpus.speakers import check_plan, make_speaker_plan, utterance_id, utterance_voice
from voxar.errors import VoxarConfigError, VoxarError

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs" / "synth"
HAVE_ESPEAK = shutil.which("espeak-ng") is not None
HAVE_FLITE = shutil.which("flite") is not None
needs_engines = pytest.mark.skipif(not (HAVE_ESPEAK and HAVE_FLITE), reason="espeak-ng and flite are needed")


# --------------------------------------------------------------------------------------------- sentences


def test_number_words():
    assert number_words(0) == "zero"
    assert number_words(13) == "thirteen"
    assert number_words(42) == "forty two"
    assert number_words(305) == "three hundred five"
    assert number_words(2024) == "two thousand twenty four"
    assert ordinal_words(1) == "first"
    assert ordinal_words(22) == "twenty second"
    assert ordinal_words(40) == "fortieth"
    assert clock_pair(6, 30) == ("6:30", "six thirty")
    assert clock_pair(9, 0) == ("9:00", "nine o'clock")
    assert clock_pair(7, 5) == ("7:05", "seven oh five")
    assert money_pair(3, 50) == ("$3.50", "three dollars and fifty cents")
    assert money_pair(1) == ("$1", "one dollar")


def test_sentences_deterministic_varied_unique():
    a = generate_sentences(400, seed=3)
    assert a == generate_sentences(400, seed=3)
    assert make_sentences(50, seed=3) == [s.spoken for s in a[:50]]
    assert {s.spoken for s in generate_sentences(50, seed=4)} != {s.spoken for s in a[:50]}
    keys = [sentence_key(s.spoken) for s in a]
    assert len(set(keys)) == len(keys)
    counts = [word_count(s.spoken) for s in a]
    assert min(counts) >= 4 and max(counts) <= 20
    assert len(set(counts)) >= 10  # lengths spread over the range
    ends = {s.spoken[-1] for s in a}
    assert ends == {".", "?", "!"}
    assert len({s.spoken.split()[0] for s in a}) >= 30  # many different openings
    written = [s for s in a if s.original != s.spoken]
    assert len(written) >= 20  # numbers, times, money, titles
    assert all(not re.search(r"\d|\$|%", s.spoken) for s in a)
    assert any(re.search(r"\d", s.original) for s in written)
    words = {w for s in a for w in sentence_key(s.spoken).split()}
    assert len(words) >= 500
    assert all(s.spoken[0].isupper() for s in a)


def test_sentence_splits_disjoint():
    sets = split_sentences({"train": 300, "dev": 40, "test": 40}, seed=1)
    assert [len(v) for v in sets.values()] == [300, 40, 40]
    keys = {k: {sentence_key(s.spoken) for s in v} for k, v in sets.items()}
    assert not keys["train"] & keys["dev"]
    assert not keys["train"] & keys["test"]
    assert not keys["dev"] & keys["test"]


def test_vocabulary_known_to_pocketsphinx():
    pocketsphinx = pytest.importorskip("pocketsphinx")
    dict_path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    if not dict_path.is_file():
        pytest.skip("pocketsphinx dictionary not found")
    known = {line.split()[0].lower() for line in dict_path.read_text(encoding="utf-8").splitlines() if line.strip()}
    vocab = vocabulary()
    assert len(vocab) >= 400
    missing = sorted(vocab - known)
    assert not missing, f"words missing from the pocketsphinx dictionary: {missing[:20]}"


# --------------------------------------------------------------------------------------------- speakers


def test_speaker_plan_deterministic_and_distinct_ids():
    plan = make_speaker_plan(78, seed=0)
    assert plan == make_speaker_plan(78, seed=0)
    assert plan != make_speaker_plan(78, seed=1)
    ids = [s.spk_id for s in plan]
    assert len(set(ids)) == 78
    assert all(re.fullmatch(r"(espk-[a-z0-9]+-[a-z0-9]+|flt-[a-z]+)-[a-z]", i) for i in ids)
    for a in ids:
        assert not any(b != a and b.startswith(a) for b in ids)
    assert {s.voice.engine for s in plan} == {"espeak", "flite"}
    assert sum(s.gender == "f" for s in plan) >= 30 and sum(s.gender == "m" for s in plan) >= 30
    # No two untransformed speakers share a base voice; most speakers are transformed.
    plain = [(s.voice.engine, s.voice.voice, s.voice.variant) for s in plan if s.timbre.is_identity]
    assert len(plain) == len(set(plain))
    assert sum(not s.timbre.is_identity for s in plan) >= 50
    scales = [s.timbre.f0_scale for s in plan]
    assert max(scales) / min(scales) > 2.0  # F0 spread widely
    assert len({s.voice.variant for s in plan if s.voice.engine == "espeak"}) >= 25
    plain_only = make_speaker_plan(10, seed=0, transforms=False)
    assert all(s.timbre.is_identity for s in plain_only)


def test_utterance_ids_and_jitter():
    spk = make_speaker_plan(3, seed=0)[1]
    uid = utterance_id(spk.spk_id, 7)
    assert uid.startswith(spk.spk_id + "_") and " " not in uid
    v1, v2 = utterance_voice(spk, 11), utterance_voice(spk, 12)
    assert v1 == utterance_voice(spk, 11)
    for v in (v1, v2):
        assert abs(v.speed / spk.voice.speed - 1) <= 0.031
        assert abs(v.pitch - spk.voice.pitch) <= 2
        assert (v.engine, v.voice, v.variant) == (spk.voice.engine, spk.voice.voice, spk.voice.variant)


def test_large_size_extends_full_without_changing_it():
    """``--size large`` = ``full`` (same speakers, dev/test and train utterances: ids, texts, voices) plus more train
    utterances per train speaker, on sentences no other split uses."""
    from voxar.corpus.build import SIZES, plan_corpus

    spk_full, full = plan_corpus("full", seed=0)
    spk_large, large = plan_corpus("large", seed=0)
    assert spk_full == spk_large
    by_id = {u.utt_id: u for u in large}
    assert all(by_id.get(u.utt_id) == u for u in full)  # every full utterance unchanged (same audio fingerprint)
    extra = [u for u in large if u.utt_id not in {f.utt_id for f in full}]
    train_spk = {u.speaker.spk_id for u in full if u.split == "train"}
    assert len(extra) == len(train_spk) * SIZES["large"].extra_train_utts
    assert {u.split for u in extra} == {"train"} and {u.speaker.spk_id for u in extra} == train_spk
    eval_texts = {u.spoken for u in large if u.split != "train"}
    assert not eval_texts & {u.spoken for u in extra}
    assert len({u.spoken for u in large if u.split == "train"}) == sum(u.split == "train" for u in large)
    assert len(by_id) == len(large)  # unique ids


def test_check_plan_rejects_prefix_ids():
    plan = make_speaker_plan(2, seed=0)
    bad = [plan[0], dataclasses.replace(plan[1], spk_id=plan[0].spk_id + "b")]
    with pytest.raises(VoxarConfigError, match="prefix"):
        check_plan(bad)


# --------------------------------------------------------------------------------------------- WORLD timbre


def _voiced_signal(f0: float, sr: int = 16000, seconds: float = 1.2) -> np.ndarray:
    """A glottal-pulse-like harmonic tone with a slow 3 % vibrato, shaped by two formant-ish resonances."""
    t = np.arange(int(seconds * sr)) / sr
    inst = f0 * (1 + 0.03 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(inst) / sr
    wav = sum(
        (1.0 / k) * np.sin(k * phase) * (1.0 + 2.0 * np.exp(-(((k * f0 - 700) / 250) ** 2))) for k in range(1, 30)
    )
    return (0.3 * wav / np.max(np.abs(wav))).astype(np.float32)


def test_world_transform_scales_f0_and_keeps_length():
    pytest.importorskip("pyworld")
    from voxar.corpus.timbre import Timbre, median_f0, world_transform

    sr = 16000
    wav = _voiced_signal(120.0)
    base = median_f0(wav, sr)
    assert abs(base - 120.0) < 6.0
    for scale in (0.8, 1.5):
        out = world_transform(wav, sr, Timbre(f0_scale=scale, vtl_alpha=1.1))
        assert out.shape == wav.shape and out.dtype == np.float32
        assert np.isfinite(out).all() and np.abs(out).max() > 0.01
        assert median_f0(out, sr) / base == pytest.approx(scale, rel=0.04)
    again = world_transform(wav, sr, Timbre(f0_scale=1.5, vtl_alpha=1.1))
    assert np.array_equal(again, world_transform(wav, sr, Timbre(f0_scale=1.5, vtl_alpha=1.1)))


def test_warp_frequency_moves_peaks():
    from voxar.corpus.timbre import warp_frequency

    bins = np.arange(257)
    env = np.exp(-0.5 * ((bins - 100) / 5.0) ** 2)[None, :] + 1e-3  # (1, K): one formant at bin 100
    assert int(np.argmax(warp_frequency(env, 1.2)[0])) == 120
    assert int(np.argmax(warp_frequency(env, 0.8)[0])) == 80
    assert np.allclose(warp_frequency(env, 1.0), env)


# --------------------------------------------------------------------------------------------- engine voices


@needs_engines
@pytest.mark.parametrize(
    "spec_args", [("espeak", "en-gb-scotland", "f2"), ("espeak", "en-gb", "m3"), ("flite", "slt", "")]
)
def test_engine_synthesis(spec_args):
    from voxar.audio import loudness_db
    from voxar.corpus.voices import VoiceSpec, synthesize

    engine, voice, variant = spec_args
    pitch = 0.0 if engine == "flite" else 50.0
    spec = VoiceSpec(engine, voice, variant, pitch=pitch, pitch_range=0.0 if engine == "flite" else 100.0)
    wav = synthesize("The old man walked to the station after lunch.", spec)
    assert wav.dtype == np.float32 and wav.ndim == 1
    seconds = len(wav) / 16000
    assert 1.5 < seconds < 5.0
    assert loudness_db(wav, 16000) == pytest.approx(-23.0, abs=1.0)
    assert np.abs(wav).max() <= 10 ** (-1 / 20) + 1e-4
    # Trimmed: no more than ~0.15 s of near-silence at either end.
    edge = int(0.15 * 16000)
    assert np.abs(wav[:edge]).max() > 1e-3 and np.abs(wav[-edge:]).max() > 1e-3
    faster = synthesize(
        "The old man walked to the station after lunch.", spec.__class__(**{**spec.__dict__, "speed": 1.4})
    )
    assert len(faster) < 0.85 * len(wav)


def test_en_gb_variants_differ():
    if not HAVE_ESPEAK:
        pytest.skip("espeak-ng missing")
    from voxar.corpus.voices import VoiceSpec, render

    a, _ = render("Hello there.", VoiceSpec("espeak", "en-gb", "m3"))
    b, _ = render("Hello there.", VoiceSpec("espeak", "en-gb", "f2"))
    assert len(a) != len(b) or not np.array_equal(a, b)


def test_missing_binary_is_a_clear_error(monkeypatch, tmp_path):
    from voxar.corpus.voices import VoiceSpec, synthesize

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(VoxarError, match="espeak-ng.*not found"):
        synthesize("hello", VoiceSpec("espeak", "en-us", "m3"))
    with pytest.raises(VoxarError, match="flite.*not found"):
        synthesize("hello", VoiceSpec("flite", "awb", pitch=0.0, pitch_range=0.0))


def test_bad_voice_spec():
    from voxar.corpus.voices import VoiceSpec

    with pytest.raises(VoxarError, match="festival"):
        VoiceSpec("festival", "kal")  # type: ignore[arg-type]
    with pytest.raises(VoxarError, match="not one of"):
        VoiceSpec("espeak", "fr-fr")


# --------------------------------------------------------------------------------------------- parse_options.sh


def _bash(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", script, "test.sh", *args], capture_output=True, text=True, cwd=RECIPE, timeout=30
    )


PO_SCRIPT = """set -euo pipefail
stop_stage=100
use_gpu=false
name=x
usage="Usage: test.sh [--stop_stage N]"
. utils/parse_options.sh
echo "stop_stage=$stop_stage use_gpu=$use_gpu name=$name rest=$*"
"""


def test_parse_options_grammar():
    r = _bash(PO_SCRIPT, "--stop-stage", "3", "--use_gpu", "true", "--name=a b", "pos1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "stop_stage=3 use_gpu=true name=a b rest=pos1"
    r = _bash(PO_SCRIPT, "--help")
    assert r.returncode == 0 and "Usage: test.sh" in r.stdout
    r = _bash(PO_SCRIPT, "--nonexistent", "1")
    assert r.returncode == 1 and "invalid option --nonexistent" in r.stderr
    r = _bash(PO_SCRIPT, "--use_gpu", "yes")
    assert r.returncode == 1 and "true or false" in r.stderr
    r = _bash(PO_SCRIPT, "--stop_stage")
    assert r.returncode == 1 and "needs a value" in r.stderr


def test_recipe_refuses_missing_stages(tmp_path):
    r = subprocess.run(
        ["bash", "run.sh", "--stop_stage", "10", "--datadir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        cwd=RECIPE,
        timeout=60,
    )
    assert r.returncode == 1
    assert "this recipe's stages are 1-9" in r.stderr
    assert not (tmp_path / "d").exists()  # refused before doing any work


# --------------------------------------------------------------------------------------------- recipe, tiny


@pytest.fixture(scope="module")
def tiny_recipe(tmp_path_factory):
    """egs/synth stage 1 (tiny, nj=2) with every output in a temporary directory."""
    if not (HAVE_ESPEAK and HAVE_FLITE):
        pytest.skip("espeak-ng and flite are needed")
    pytest.importorskip("pyworld")
    out = tmp_path_factory.mktemp("synth")
    cmd = ["bash", "run.sh", "--size", "tiny", "--stop_stage", "1", "--nj", "2", "--sim", "false"]
    cmd += ["--datadir", str(out / "data"), "--wavdir", str(out / "wav"), "--expdir", str(out / "exp")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=RECIPE, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, cmd, r


def _read(path: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines())


def test_recipe_tiny_builds_valid_data(tiny_recipe):
    from voxar.data.validate import validate_data_dir

    out, cmd, r = tiny_recipe
    data = out / "data"
    for split in ("train", "dev", "test"):
        problems = validate_data_dir(data / split)
        assert not [p for p in problems if p.severity == "error"], problems
        for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "spk2gender", "text.original"):
            assert (data / split / name).is_file()
    text = {s: _read(data / s / "text") for s in ("train", "dev", "test")}
    spk = {s: set(_read(data / s / "utt2spk").values()) for s in ("train", "dev", "test")}
    assert len(spk["train"]) == 6
    for split in ("dev", "test"):
        assert spk[split] - spk["train"], f"{split} has no unseen speaker"
        assert spk[split] & spk["train"], f"{split} has no seen speaker"
        assert not set(text[split].values()) & set(text["train"].values())
    assert not set(text["dev"].values()) & set(text["test"].values())
    wav_scp = _read(data / "train" / "wav.scp")
    first = Path(next(iter(wav_scp.values())))
    assert first.is_absolute() and first.is_relative_to(out / "wav")
    info = sf.info(str(first))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    durs = [float(v) for v in _read(data / "train" / "utt2dur").values()]
    assert 60 < sum(durs) + sum(float(v) for s in ("dev", "test") for v in _read(data / s / "utt2dur").values()) < 300
    report = json.loads((out / "exp" / "corpus_report.json").read_text())
    assert report["total_speakers"] == 8 and report["splits"]["train"]["utterances"] == 30
    assert report["splits"]["dev"]["unseen_speakers"]
    assert (data / ".stage1.done").is_file()
    # A rerun with the same settings skips the stage.
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=RECIPE, timeout=120)
    assert again.returncode == 0 and "already done" in again.stderr


def test_rebuild_is_deterministic_and_resumes(tiny_recipe):
    from voxar.corpus.build import build_corpus

    out, _, _ = tiny_recipe
    data, wav = out / "data", out / "wav"
    texts = {s: (data / s / "text").read_bytes() for s in ("train", "dev", "test")}
    utt2spk = (data / "train" / "utt2spk").read_bytes()
    sample = Path(next(iter(_read(data / "dev" / "wav.scp").values())))
    audio = sample.read_bytes()
    sample.unlink()
    # nj=1 in this process re-makes only the deleted file, byte for byte as the nj=2 recipe run made it.
    summary = build_corpus(data, wav, size="tiny", seed=0, nj=1, progress=False)
    assert summary["synthesised_utterances"] == 1
    assert sample.read_bytes() == audio
    assert {s: (data / s / "text").read_bytes() for s in texts} == texts
    assert (data / "train" / "utt2spk").read_bytes() == utt2spk


def test_libritts_layout(tiny_recipe, tmp_path):
    from voxar.corpus.build import build_corpus

    out, _, _ = tiny_recipe
    root = tmp_path / "LibriTTS"
    summary = build_corpus(
        tmp_path / "data", out / "wav", size="tiny", layout="libritts", libritts_dir=root, progress=False
    )
    assert summary["synthesised_utterances"] == 0  # the audio is reused
    wavs = sorted(root.rglob("*.wav"))
    assert len(wavs) == 40
    assert {p.relative_to(root).parts[0] for p in wavs} == {"train-clean-100", "dev-clean", "test-clean"}
    for p in wavs:
        subset, spk, chapter, name = p.relative_to(root).parts
        assert re.fullmatch(rf"{spk}_{chapter}_\d{{6}}_\d{{6}}\.wav", name)
        stem = name[: -len(".wav")]
        assert (p.parent / f"{stem}.normalized.txt").is_file() and (p.parent / f"{stem}.original.txt").is_file()
    info = sf.info(str(wavs[0]))
    assert (info.samplerate, info.subtype) == (24000, "PCM_16")
    src16 = sf.info(str(next((out / "wav").rglob("*.wav"))))
    assert src16.samplerate == 16000
    trans = sorted(root.rglob("*.trans.tsv"))
    assert trans
    lines = [line.split("\t") for t in trans for line in t.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 40 and all(len(parts) == 3 for parts in lines)
    assert any(orig != norm for _, orig, norm in lines) or all(orig == norm for _, orig, norm in lines)
    for utt, orig, norm in lines:
        spk, chapter = utt.split("_")[:2]
        folder = next(root.glob(f"*/{spk}/{chapter}"))
        assert (folder / f"{utt}.original.txt").read_text(encoding="utf-8") == orig
        assert (folder / f"{utt}.normalized.txt").read_text(encoding="utf-8") == norm
        assert not re.search(r"\d", norm)
    speakers = (root / "speakers.tsv").read_text(encoding="utf-8").splitlines()
    assert speakers[0].split("\t") == ["READER", "GENDER", "SUBSET", "NAME"]
    assert len(speakers) == 9
    numbers = {row.split("\t")[0] for row in speakers[1:]}
    assert all(n.isdigit() for n in numbers)
    assert {p.relative_to(root).parts[1] for p in wavs} == numbers


def test_report_speaker_similarity(tiny_recipe, tmp_path):
    pytest.importorskip("resemblyzer")
    from voxar.corpus.report import corpus_report

    out, _, _ = tiny_recipe
    dirs = [out / "data" / s for s in ("dev", "test")]  # 6 speakers, 2 of them with 3 utterances
    report = corpus_report(dirs, tmp_path / "r.json", max_utts_per_spk=2)
    sim = report["speaker_similarity"]
    assert sim["n_speakers"] == 6 and sim["n_utterances"] == 8
    assert sim["n_within_pairs"] == 2
    assert -1 <= sim["across"] < sim["within"] <= 1
    assert sim["targets"] == {"across_max": 0.8, "within_min": 0.88}
    assert isinstance(sim["pass"], bool)
    assert json.loads((tmp_path / "r.json").read_text())["speaker_similarity"]["within"] == sim["within"]


def test_similarity_stats_on_known_embeddings():
    from voxar.corpus.report import similarity_stats

    e1 = np.array([1.0, 0.0])
    e2 = np.array([0.6, 0.8])
    emb = np.stack([e1, e1, e2, e2])  # (4, 2): two speakers, identical utterances each
    stats = similarity_stats(emb, ["a", "a", "b", "b"])
    assert stats["within"] == pytest.approx(1.0)
    assert stats["across"] == pytest.approx(0.6)
    assert stats["n_within_pairs"] == 2 and stats["n_across_pairs"] == 4
    assert stats["most_similar_pairs"][0]["speakers"] == ["a", "b"]
