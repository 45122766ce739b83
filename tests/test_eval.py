"""Tests of the evaluation toolkit (voxar.eval): text normalisation, WER, SIM, DNSMOS, MCD, input reading, reports.

Speech is synthesised with the Debian ``flite`` and ``espeak-ng`` binaries (installed by ``make test``); other audio is
made in code. Recogniser, encoder and synthesised files are shared per module to keep the run short.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxar.errors import VoxarAudioError, VoxarError

FLITE = shutil.which("flite")
ESPEAK = shutil.which("espeak-ng")
needs_flite = pytest.mark.skipif(FLITE is None, reason="the flite binary is not installed (Debian package flite)")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="the espeak-ng binary is not installed")

FOX = "the quick brown fox jumps over the lazy dog"
HOME = "I would like to go home now."
WEATHER = "The weather is nice today!"


class Speech:
    """Synthesises sentences into a directory once, keyed by (engine, voice, text)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[tuple[str, str, str], Path] = {}

    def path(self, text: str, voice: str = "slt", engine: str = "flite") -> Path:
        key = (engine, voice, text)
        if key not in self.cache:
            out = self.root / f"{engine}_{voice}_{len(self.cache)}.wav"
            if engine == "flite":
                cmd = [FLITE, "-voice", voice, "-t", text, "-o", str(out)]
            else:
                cmd = [ESPEAK, "-v", voice, "-w", str(out), text]
            subprocess.run(cmd, check=True, capture_output=True, timeout=60)
            self.cache[key] = out
        return self.cache[key]

    def load(self, text: str, voice: str = "slt", engine: str = "flite") -> tuple[np.ndarray, int]:
        wav, sr = sf.read(self.path(text, voice, engine), dtype="float32")
        return wav, sr


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Speech:
    return Speech(tmp_path_factory.mktemp("speech"))


@pytest.fixture(scope="module")
def asr():
    from voxar.eval.asr import PocketSphinxASR

    return PocketSphinxASR()


@pytest.fixture(scope="module")
def encoder():
    from voxar.eval.speaker import SpeakerEncoder

    return SpeakerEncoder("cpu")


def _chirp(sr: int = 16000, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * (200 * t + 900 * t**2))).astype(np.float32)


# ------------------------------------------------------------------------------------------------ text / WER


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("It's 3 o'clock.", "it's three o'clock"),
        ("\u2018Quoted\u2019 words' end", "quoted words end"),
        ("don\u2019t   STOP\tnow", "don't stop now"),
        ("twenty-one well-known rock'n'roll", "twenty one well known rock'n'roll"),
        ("Dr. Smith paid $5.", "doctor smith paid five dollars"),
        ("?!...", ""),
        ("Café naïve", "café naïve"),
    ],
)
def test_normalize_for_wer(text, expected):
    from voxar.eval.textnorm import normalize_for_wer

    assert normalize_for_wer(text) == expected


def test_wer_counts_corpus_level():
    from voxar.eval.asr import wer

    out = wer(["The cat sat on the mat.", "Hello world"], ["the cat sat on mat", "hello big world"])
    assert (out["substitutions"], out["deletions"], out["insertions"], out["hits"]) == (0, 1, 1, 7)
    assert out["ref_words"] == 8
    assert out["wer"] == pytest.approx(2 / 8)
    # Corpus-level WER weights words, not utterances: 1 error in a 1-word ref + 0 in a 9-word ref = 1/10.
    assert wer(["yes", FOX], ["no", FOX])["wer"] == pytest.approx(0.1)
    assert wer(["Hello, World! It's 3."], ["hello world it's three"])["wer"] == 0.0
    assert wer(["a b"], ["c d e f"])["wer"] == pytest.approx(2.0)  # insertions can push WER above 1
    with pytest.raises(ValueError):
        wer(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        wer(["?!"], ["anything"])


# ------------------------------------------------------------------------------------------------ MCD / log-mel


def test_freqt_is_allpass_warping():
    from voxar.eval.mcd import freqt, sp_to_mcep

    w = np.linspace(0, np.pi, 513)
    env = 1e-3 + np.exp(-(((w - 0.5) / 0.1) ** 2)) + 0.3 * np.exp(-(((w - 1.5) / 0.2) ** 2))  # (513,) power
    for alpha in (0.0, 0.42):
        mc = sp_to_mcep(env[None], order=200, alpha=alpha)[0]  # (201,)
        warped = w + 2 * np.arctan(alpha * np.sin(w) / (1 - alpha * np.cos(w)))
        rebuilt = np.cos(np.outer(warped, np.arange(201))) @ mc  # log amplitude on the warped axis
        assert np.max(np.abs(rebuilt - 0.5 * np.log(env))) < 1e-4
    c = np.random.default_rng(0).normal(size=(3, 10))
    np.testing.assert_allclose(freqt(c, order=9, alpha=0.0), c, atol=1e-12)


def test_dtw_path_is_optimal():
    from voxar.eval.mcd import dtw_path

    rng = np.random.default_rng(1)
    for n, m in ((1, 1), (1, 5), (6, 1), (7, 9), (12, 5)):
        d = rng.random((n, m))
        acc = np.full((n + 1, m + 1), np.inf)
        acc[0, 0] = 0
        for i in range(1, n + 1):
            for j in range(1, m + 1):
                acc[i, j] = d[i - 1, j - 1] + min(acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
        pi, pj = dtw_path(d)
        assert (pi[0], pj[0], pi[-1], pj[-1]) == (0, 0, n - 1, m - 1)
        steps = np.stack([np.diff(pi), np.diff(pj)], axis=1)
        assert all(tuple(s) in {(1, 0), (0, 1), (1, 1)} for s in steps)
        assert d[pi, pj].sum() == pytest.approx(acc[n, m], rel=1e-9)


@needs_flite
def test_mcd_and_logmel_l1(speech):
    from voxar.eval.mcd import logmel_l1, mcd

    wav, sr = speech.load(FOX)
    other, sr2 = speech.load(FOX, voice="rms")
    assert sr == sr2 == 16000
    assert mcd(wav, wav, sr) < 1e-6
    assert logmel_l1(wav, wav, sr) == 0.0
    d_voice = mcd(wav, other, sr)
    assert 2.0 < d_voice < 30.0
    noisy = wav + np.random.default_rng(0).normal(0, 1e-3, wav.size).astype(np.float32)
    assert 0.0 < mcd(wav, noisy, sr) < d_voice
    # Halving the amplitude shifts every (unclamped) log-mel bin by ln 2.
    assert logmel_l1(wav, 0.5 * wav, sr) == pytest.approx(np.log(2), abs=0.01)
    assert logmel_l1(wav, wav[: wav.size // 2], sr) is None  # not time-aligned
    with pytest.raises(VoxarAudioError):
        mcd(wav, np.zeros_like(wav), sr)


# ------------------------------------------------------------------------------------------------ SIM


@needs_flite
@needs_espeak
def test_speaker_similarity(speech, encoder):
    from voxar.eval.speaker import cosine

    fox, sr = speech.load(FOX)
    e_fox = encoder.embed(fox, sr)
    assert e_fox.shape == (256,) and e_fox.dtype == np.float32
    assert np.linalg.norm(e_fox) == pytest.approx(1.0, abs=1e-5)
    assert cosine(e_fox, encoder.embed(fox, sr)) > 0.99  # the same recording
    same_voice = cosine(e_fox, encoder.embed(*speech.load(HOME)))
    kal = cosine(e_fox, encoder.embed(*speech.load(HOME, voice="kal")))  # 8 kHz male diphone voice
    espeak = cosine(e_fox, encoder.embed(*speech.load(HOME, voice="en-us", engine="espeak")))
    assert same_voice > max(kal, espeak)
    many = encoder.embed_many([fox, fox[: sr // 2]], sr)
    assert many.shape == (2, 256)
    with pytest.raises(VoxarAudioError):
        encoder.embed(np.zeros(sr, np.float32), sr)


# ------------------------------------------------------------------------------------------------ ASR


@needs_flite
def test_pocketsphinx_on_clear_speech(speech, asr):
    from voxar.eval.asr import wer

    wav, sr = speech.load(FOX)
    hyp = asr.transcribe(wav, sr)
    assert wer([FOX], [hyp])["wer"] <= 0.12, hyp  # measured: exact transcript (WER 0) for flite slt
    assert asr.transcribe(0.05 * wav, sr) == hyp  # peak-normalised: the level does not matter
    assert asr.transcribe(np.zeros(sr, np.float32), sr) == ""


# ------------------------------------------------------------------------------------------------ DNSMOS


@needs_flite
def test_dnsmos_range_and_noise(speech, tmp_path):
    from voxar.eval.dnsmos import dnsmos
    from voxar.eval.inputs import Item
    from voxar.eval.report import evaluate

    wav, sr = speech.load(FOX)
    clean = dnsmos(wav, sr)
    assert set(clean) == {"sig", "bak", "ovrl", "p808"}
    assert all(1.0 <= v <= 5.0 for v in clean.values()), clean
    noisy = np.clip(wav + np.random.default_rng(0).normal(0, 0.05, wav.size), -1, 1).astype(np.float32)
    assert dnsmos(noisy, sr)["bak"] < clean["bak"]  # audible white noise: worse background score
    with pytest.raises(VoxarAudioError):
        dnsmos(np.zeros(sr, np.float32), sr)
    # DNSMOS inside evaluate(): generated and ceiling columns.
    item = Item("fox", speech.path(FOX, "rms"), FOX, ref=speech.path(FOX), spk=None)
    res = evaluate([item], wer=False, sim=False, mcd=False, outdir=tmp_path, plots=0, progress=False)
    ovrl = res["metrics"]["dnsmos_ovrl"]
    assert ovrl["generated"]["n"] == ovrl["ceiling"]["n"] == 1
    assert ovrl["ceiling"]["mean"] == pytest.approx(clean["ovrl"], abs=1e-6)  # the reference is the clean file
    assert "speechmos" in res["tools"]["dnsmos"] and not (tmp_path / "mels.png").exists()


# ------------------------------------------------------------------------------------------------ inputs


def _write_wav(path: Path, wav: np.ndarray | None = None, sr: int = 16000) -> Path:
    sf.write(path, _chirp(sr) if wav is None else wav, sr)
    return path


def test_read_list_reports_bad_lines(tmp_path):
    from voxar.eval.inputs import read_inputs

    _write_wav(tmp_path / "a.wav")
    _write_wav(tmp_path / "b.wav")
    (tmp_path / "garbage.wav").write_bytes(b"not a riff file at all")
    lines = [
        "# utt\twav\ttext\tref\tspk",  # 1 comment
        "u1\ta.wav\tHello there, world\tb.wav\tspk1",  # 2 good, ref + speaker
        "",  # 3 blank
        "u2\tmissing.wav\tsome text",  # 4 missing file
        "u3\ta.wav\t   ",  # 5 empty transcript
        "u4 a.wav spaces instead of tabs",  # 6 malformed
        "u5\ta.wav",  # 7 too few fields
        "u6\tgarbage.wav\tunreadable audio",  # 8 unreadable
        "u1\tb.wav\tduplicate id",  # 9 duplicate
        "u7\tb.wav\tno reference here\t-\tspk2",  # 10 good, speaker only
        "u8\ta.wav\tmissing reference\tnope.wav",  # 11 missing reference
    ]
    lst = tmp_path / "list.tsv"
    lst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items, problems = read_inputs(lst)
    assert [(it.utt, it.wav.name, it.ref and it.ref.name, it.spk) for it in items] == [
        ("u1", "a.wav", "b.wav", "spk1"),
        ("u7", "b.wav", None, "spk2"),
    ]
    assert items[0].text == "Hello there, world"
    assert [p.line for p in problems] == [4, 5, 6, 7, 8, 9, 11]
    text = [str(p) for p in problems]
    assert all(t.startswith(f"{lst}:") for t in text)
    assert "not found" in text[0] and "empty transcript" in text[1] and "TAB" in text[2]
    assert "got 2 field" in text[3] and "unreadable" in text[4] and "duplicate" in text[5] and "reference" in text[6]
    (tmp_path / "bad.tsv").write_text("u1\tmissing.wav\thello\n", encoding="utf-8")
    with pytest.raises(VoxarError, match="no usable utterances"):
        read_inputs(tmp_path / "bad.tsv")


def test_read_kaldi_dir_and_ref_dir(tmp_path, monkeypatch):
    from voxar.eval.inputs import read_inputs

    monkeypatch.chdir(tmp_path)  # Kaldi paths are relative to the working directory
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    for u in ("u1", "u2", "u3"):
        _write_wav(gen / f"{u}.wav")
        _write_wav(ref / f"{u}.wav")
    (gen / "wav.scp").write_text("u1 gen/u1.wav\nu2 gen/u2.wav\nu3 gen/u3.wav\nu4 gen/none.wav\n")
    (gen / "text").write_text("u1 first sentence\nu2\nu4 missing audio\n")
    (ref / "wav.scp").write_text("u1 ref/u1.wav\n")
    (ref / "utt2spk").write_text("u1 spkA\n")
    items, problems = read_inputs(gen, ref_dir=ref)
    assert [(it.utt, it.ref, it.spk) for it in items] == [("u1", Path("ref/u1.wav"), "spkA")]
    msgs = [str(p) for p in problems]
    assert any("text:2" in m and "empty transcript" in m for m in msgs)
    assert any("wav.scp:3" in m and "no transcript" in m for m in msgs)
    assert any("wav.scp:4" in m and "not found" in m for m in msgs)
    (gen / "text").write_text("u1 first sentence\nu2 second one\n")
    (gen / "ref.scp").write_text("u2 ref/u2.wav\n")
    items, problems = read_inputs(gen, ref_dir=ref)
    assert [(it.utt, it.ref) for it in items] == [("u1", Path("ref/u1.wav")), ("u2", Path("ref/u2.wav"))]
    assert not any("kept without reference" in str(p) for p in problems)


# ------------------------------------------------------------------------------------------------ end to end


@needs_flite
def test_evaluate_end_to_end(speech, tmp_path):
    from voxar.eval.inputs import read_inputs
    from voxar.eval.report import evaluate

    silent = _write_wav(tmp_path / "silent.wav", np.zeros(16000, np.float32))
    rows = [
        f"fox\t{speech.path(FOX, 'rms')}\t{FOX}\t{speech.path(FOX)}\tslt",
        f"quiet\t{silent}\t{WEATHER}\t{speech.path(WEATHER)}\tslt",
        "broken line",
    ]
    lst = tmp_path / "list.tsv"
    lst.write_text("\n".join(rows) + "\n")
    items, problems = read_inputs(lst)
    assert len(items) == 2 and len(problems) == 1
    out = tmp_path / "eval"
    result = evaluate(items, dnsmos=False, outdir=out, plots=2, progress=False, problems=problems)
    for name in ("eval.json", "eval_utts.jsonl", "eval.md", "mels.png"):
        assert (out / name).is_file(), name
    assert (out / "mels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((out / "eval.json").read_text())
    assert on_disk["metrics"] == result["metrics"]
    assert set(on_disk["tools"]) >= {"asr", "sim", "mcd"} and "pocketsphinx" in on_disk["tools"]["asr"]
    assert "pocketsphinx" in on_disk["metrics"]["wer"]["tool"]
    assert on_disk["input_problems"] == [str(problems[0])]
    m = result["metrics"]
    recs = {json.loads(line)["utt"]: json.loads(line) for line in (out / "eval_utts.jsonl").read_text().splitlines()}
    # The silent utterance is transcribed as nothing: 5 deletions; the references decode (almost) perfectly.
    assert recs["quiet"]["hyp"] == "" and recs["quiet"]["wer"]["deletions"] == 5
    assert m["wer"]["generated"]["ref_words"] == 9 + 5 and m["wer"]["generated"]["n"] == 2
    assert m["wer"]["generated"]["wer"] > m["wer"]["ceiling"]["wer"]
    # SIM: rms vs slt is a different voice; the ceiling (slt vs slt, other sentence) is higher.
    assert m["sim"]["generated"]["n"] == 1 and m["sim"]["ceiling"]["n"] == 2
    assert m["sim"]["ceiling"]["mean"] > m["sim"]["generated"]["mean"]
    assert recs["fox"]["sim_ceiling_partner"] == "quiet" and recs["quiet"]["sim_ceiling_partner"] == "fox"
    assert {e["metric"] for e in result["utterance_errors"]} >= {"sim", "mcd"}  # silence: no embedding, no MCD
    assert m["mcd"]["generated"]["n"] == 1 and m["mcd"]["generated"]["mean"] > 0
    md = (out / "eval.md").read_text()
    assert "| metric | generated | ground truth ceiling | n |" in md and "WER" in md and "SIM" in md


def test_cli_eval_command(tmp_path):
    import typer
    from typer.testing import CliRunner

    from voxar.eval.cli import eval_command

    noise = np.random.default_rng(0).uniform(-0.4, 0.4, 24000).astype(np.float32)  # broadband: no log floor
    a = _write_wav(tmp_path / "a.wav", noise)
    b = _write_wav(tmp_path / "b.wav", 0.5 * noise)
    lst = tmp_path / "list.tsv"
    lst.write_text(f"x\t{a}\tchirp one\t{b}\ny\tmissing.wav\tchirp two\n")
    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("noop")(lambda: None)  # two commands, so "eval" is addressed by name as in voxar
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["eval", str(lst), "-o", str(out), "--no-wer", "--no-sim", "--no-dnsmos", "--plots", "1", "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(out / "eval.json")
    assert "list.tsv:2" in res.stderr and "not found" in res.stderr
    assert "| MCD dB (DTW) ↓ |" in res.stderr
    result = json.loads((out / "eval.json").read_text())
    assert result["metrics"]["logmel_l1"]["generated"]["mean"] == pytest.approx(np.log(2), abs=0.02)
    assert "wer" not in result["metrics"] and "sim" not in result["metrics"]


def test_missing_eval_extra_gives_install_hint():
    code = textwrap.dedent(
        """
        import sys
        from importlib.abc import MetaPathFinder
        BLOCKED = {"pocketsphinx", "resemblyzer", "speechmos", "pyworld", "matplotlib"}
        class Block(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        from voxar.errors import VoxarError
        from voxar.eval.asr import PocketSphinxASR
        from voxar.eval.dnsmos import dnsmos_tool_name
        from voxar.eval.mcd import mcd_tool_name
        from voxar.eval.plots import plot_mel_pairs
        from voxar.eval.speaker import SpeakerEncoder
        calls = [PocketSphinxASR, SpeakerEncoder, dnsmos_tool_name, mcd_tool_name,
                 lambda: plot_mel_pairs([("u", None, np.zeros((2, 2)))], "x.png")]
        for call in calls:
            try:
                call()
            except VoxarError as e:
                print(e)
            else:
                print("NO ERROR")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 5, r.stdout
    assert all("voxar[eval]" in line for line in lines), lines


def test_ground_truth_run_scores_each_recording_once(speech, tmp_path, monkeypatch):
    """Scoring recordings against themselves (the ceiling run) reuses results instead of decoding twice."""
    from voxar.eval import asr as asr_mod
    from voxar.eval.inputs import read_inputs
    from voxar.eval.report import evaluate

    calls = []
    real = asr_mod.PocketSphinxASR.transcribe

    def counting(self, wav, sr):
        calls.append(len(wav))
        return real(self, wav, sr)

    monkeypatch.setattr(asr_mod.PocketSphinxASR, "transcribe", counting)
    rows = [f"{u}\t{speech.path(t)}\t{t}\t{speech.path(t)}\tslt" for u, t in (("a", FOX), ("b", WEATHER))]
    (tmp_path / "list.tsv").write_text("\n".join(rows) + "\n")
    items, _ = read_inputs(tmp_path / "list.tsv")
    result = evaluate(items, dnsmos=False, mcd=False, outdir=tmp_path / "eval", plots=0, progress=False)
    assert len(calls) == 2
    m = result["metrics"]
    assert m["wer"]["generated"]["wer"] == m["wer"]["ceiling"]["wer"]
    assert m["sim"]["generated"]["mean"] > 0.999 and m["sim"]["ceiling"]["n"] == 2


@needs_flite
def test_phone_error_rate_reads_the_text_and_aggregates(speech, tmp_path):
    """PER with the packaged content encoder: a clear recording of the text scores far lower than the same recording
    scored against another sentence, and ``evaluate(per=True)`` sums edit distances over phones, with a ceiling."""
    from voxar.eval.inputs import read_inputs
    from voxar.eval.per import PhoneRecognizer
    from voxar.eval.report import evaluate

    rec = PhoneRecognizer()
    wav, sr = speech.load(FOX, "slt")
    if sr != 16000:
        import soxr

        wav, sr = soxr.resample(wav, sr, 16000), 16000
    right, wrong = rec.score(FOX, wav, sr), rec.score(WEATHER + " " + HOME, wav, sr)
    assert right["ref_phones"] == len(rec.targets(FOX)) > 20
    assert right["per"] < 0.5 < wrong["per"], (right, wrong)
    assert right["hyp"] and all(s in rec.symbols for s in right["hyp"].split())
    with pytest.raises(VoxarError, match="content model"):
        PhoneRecognizer(tmp_path)
    lst = tmp_path / "list.tsv"
    lst.write_text(f"a\t{speech.path(FOX, 'rms')}\t{FOX}\t{speech.path(FOX)}\tslt\n"
                   f"b\t{speech.path(HOME, 'rms')}\t{WEATHER}\t{speech.path(HOME)}\tslt\n")  # fmt: skip
    items, _ = read_inputs(lst)
    result = evaluate(items, wer=False, sim=False, dnsmos=False, mcd=False, per=True, outdir=tmp_path / "e", plots=0,
                      progress=False)  # fmt: skip
    per = result["metrics"]["per"]
    recs = [json.loads(line) for line in (tmp_path / "e" / "eval_utts.jsonl").read_text().splitlines()]
    assert per["generated"]["errors"] == sum(r["per"]["errors"] for r in recs)
    assert per["generated"]["ref_phones"] == sum(r["per"]["ref_phones"] for r in recs)
    assert per["ceiling"]["n"] == 2 and per["generated"]["per"] > per["ceiling"]["per"]  # "b" reads another text
    assert "content encoder" in per["tool"] and "PER" in (tmp_path / "e" / "eval.md").read_text()
