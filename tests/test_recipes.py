"""Recipes: the job runner, LibriTTS data preparation, test-set decoding plans, packing, and the egs/libritts and
egs/synth recipes run end to end (stages 0/1-9) on the tiny synthetic corpus, with reruns, resuming after SIGKILL,
the Vocos import and CPU DDP through torchrun."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "recipes" / "utils" / "run.sh"
LIBRITTS = REPO / "egs" / "libritts"
SYNTH = REPO / "egs" / "synth"
HAVE_ENGINES = shutil.which("espeak-ng") is not None and shutil.which("flite") is not None

# Tiny settings shared by the end-to-end runs: a few dozen steps per model, one torch thread, short generations, and
# only WER and SIM in the reports (quality is not asserted here, only that every stage produces its outputs).
TINY = [
    "--ngpu", "0", "--nj", "2", "--threads", "1", "--vocoder_max_steps", "20", "--tts_max_steps", "20",
    "--content_max_steps", "10", "--vc_max_steps", "10", "--decode_max_utts", "2",
    "--decode_args", "--head mf --max-seconds 4", "--eval_args", "--no-mcd --no-dnsmos --no-ceiling --plots 0",
    "--vc_eval_source", "false",
]  # fmt: skip


def bash(*args: str | Path, cwd: Path = LIBRITTS, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout, **kw
    )  # fmt: skip


def read_kv(path: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines())


# --------------------------------------------------------------------------------------------------- job runner
def test_runner_runs_a_job_range_with_logs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    r = bash(RUNNER, "--nj", "2", "JOB=1:3", tmp_path / "log" / "x.JOB.log", "echo", "job JOB", ">", out / "JOB.txt")
    assert r.returncode == 0, r.stderr
    for i in (1, 2, 3):
        assert (out / f"{i}.txt").read_text() == f"job {i}\n"  # JOB replaced in the command and the log name
        log = (tmp_path / "log" / f"x.{i}.log").read_text()
        assert log.startswith(f"# echo job\\ {i} > {out}/{i}.txt\n# Started at ")
        assert "# Accounting: time=" in log and log.rstrip().splitlines()[-1].startswith("# Ended (code 0) at ")
    single = bash(RUNNER, tmp_path / "one.log", "printf", "%s-%s", "a b", "c")
    assert single.returncode == 0
    assert "a b-c" in (tmp_path / "one.log").read_text()  # a multi-word argument stays one argument


def test_runner_nj_limits_concurrency(tmp_path):
    trace = tmp_path / "trace"
    script = f"echo start JOB >> {trace}; sleep 0.3; echo end JOB >> {trace}"
    r = bash(RUNNER, "--nj", "1", "JOB=1:3", tmp_path / "JOB.log", "bash", "-c", script)
    assert r.returncode == 0, r.stderr
    lines = trace.read_text().split("\n")[:-1]
    assert lines == ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]  # one job at a time


def test_runner_names_the_failing_jobs(tmp_path):
    r = bash(RUNNER, "--nj", "2", "JOB=1:3", tmp_path / "x.JOB.log", "test", "JOB", "-ne", "2")
    assert r.returncode == 1
    assert "1 / 3 job(s) failed" in r.stderr and f"{tmp_path}/x.2.log (code 1)" in r.stderr
    assert "x.1.log" not in r.stderr and "x.3.log" not in r.stderr
    assert "# Ended (code 0)" in (tmp_path / "x.3.log").read_text()  # the other jobs still ran
    assert "# Ended (code 1)" in (tmp_path / "x.2.log").read_text()
    r = bash(RUNNER, tmp_path / "only.log")
    assert r.returncode == 1 and "expected a log file and a command" in r.stderr
    r = bash(RUNNER, "--bogus", "1", tmp_path / "x.log", "true")
    assert r.returncode == 1 and "unknown option --bogus" in r.stderr


def test_runner_forwards_sigterm_to_its_jobs(tmp_path):
    flag, started = tmp_path / "got_term", tmp_path / "started"
    job = f"trap 'echo term > {flag}; exit 3' TERM; touch {started}; sleep 60 & wait"
    proc = subprocess.Popen(["bash", str(RUNNER), str(tmp_path / "t.log"), "bash", "-c", job], stderr=subprocess.PIPE)
    for _ in range(300):
        if started.exists():
            break
        time.sleep(0.1)
    assert started.exists()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and b"interrupted by SIGTERM" in err
    assert flag.read_text() == "term\n"  # the job got the signal (training saves a checkpoint on it)


# ----------------------------------------------------------------------------------------- stage-0/1 checks
def test_libritts_stage_options_are_validated():
    for args, message in [
        (["--stage", "5", "--stop_stage", "3"], "is after --stop_stage 3"),
        (["--stop_stage", "10"], "this recipe's stages are 0-9"),
        (["--stage", "x"], "--stage must be a non-negative integer"),
        (["--bogus", "1"], "invalid option --bogus"),
        (["--vc", "maybe"], "takes true or false"),
    ]:
        r = bash("run.sh", *args)
        assert r.returncode == 1, args
        assert message in r.stderr, (args, r.stderr)
    r = bash("run.sh", "--stop_stage", "12", cwd=SYNTH)
    assert r.returncode == 1 and "this recipe's stages are 1-9" in r.stderr
    r = bash("run.sh", "--help")
    assert r.returncode == 0 and "--db DIR" in r.stdout


def test_libritts_stage0_explains_how_to_get_the_corpus(tmp_path):
    r = bash("run.sh", "--stop_stage", "0")
    assert r.returncode == 1
    assert "no LibriTTS directory given: pass --db" in r.stderr and "https://www.openslr.org/60/" in r.stderr
    r = bash("run.sh", "--stop_stage", "0", "--db", tmp_path / "nowhere")
    assert r.returncode == 1 and "directory not found" in r.stderr and "openslr" in r.stderr
    (tmp_path / "LibriTTS" / "dev-clean").mkdir(parents=True)
    r = bash("run.sh", "--stop_stage", "1", "--db", tmp_path / "LibriTTS", "--datadir", tmp_path / "data")
    assert r.returncode == 1
    assert "subset(s) train-clean-100, test-clean not found (it holds no LibriTTS subset)" in r.stderr
    assert not (tmp_path / "data").exists()  # stage 0 stopped the run


# ---------------------------------------------------------------------------------------- LibriTTS data prep
def _fake_libritts(root: Path) -> None:
    """Two readers in train-clean-100 (one text only in the chapter's trans.tsv), one in dev-clean and test-clean."""
    wav = 0.3 * np.sin(2 * np.pi * 220 * np.arange(24000) / 24000).astype(np.float32)
    utts = {
        ("train-clean-100", "19", "198"): ["000000_000000", "000000_000001", "000001_000000"],
        ("train-clean-100", "26", "495"): ["000000_000000", "000000_000002"],
        ("dev-clean", "84", "121"): ["000000_000000", "000000_000001"],
        ("test-clean", "121", "127"): ["000000_000000", "000000_000001", "000000_000002"],
    }
    for (subset, spk, chapter), names in utts.items():
        folder = root / subset / spk / chapter
        folder.mkdir(parents=True)
        trans = []
        for k, name in enumerate(names):
            utt = f"{spk}_{chapter}_{name}"
            sf.write(folder / f"{utt}.wav", wav[: 12000 + 6000 * k], 24000, subtype="PCM_16")
            text = f"Chapter {k + 1} of Mr. Smith's book."
            trans.append(f"{utt}\t{text}\t{text}\n")
            if not (spk == "26" and k == 1):
                (folder / f"{utt}.original.txt").write_text(text)
                (folder / f"{utt}.normalized.txt").write_text(text)
        (folder / f"{spk}_{chapter}.trans.tsv").write_text("".join(trans))
    (root / "speakers.tsv").write_text("READER\tGENDER\tSUBSET\tNAME\n19\tF\ttrain-clean-100\tKara\n26\tM\tx\tDenny\n")


def test_prep_libritts_writes_kaldi_dirs(tmp_path):
    from voxar.bin.prep_libritts import main, round_robin, scan_subset

    _fake_libritts(tmp_path / "LT")
    assert main(["--db", str(tmp_path / "LT"), "--out", str(tmp_path / "data"), "--no-progress"]) == 0
    train = tmp_path / "data" / "train"
    text = read_kv(train / "text")
    assert sorted(text) == [
        "19_198_000000_000000", "19_198_000000_000001", "19_198_000001_000000", "26_495_000000_000000",
        "26_495_000000_000002",
    ]  # fmt: skip
    assert text["26_495_000000_000002"] == "Chapter two of Mister Smith's book."  # from trans.tsv, normalised
    assert read_kv(train / "text.original")["19_198_000000_000000"] == "Chapter 1 of Mr. Smith's book."
    assert set(read_kv(train / "utt2spk").values()) == {"19", "26"}
    assert read_kv(train / "spk2gender") == {"19": "f", "26": "m"}
    assert float(read_kv(train / "utt2dur")["19_198_000000_000001"]) == pytest.approx(0.75)
    assert Path(read_kv(train / "wav.scp")["19_198_000000_000000"]).is_absolute()
    assert (
        len(read_kv(tmp_path / "data" / "test" / "text")) == 3
        and not (tmp_path / "data" / "test" / "spk2gender").exists()
    )
    # Size limits take utterances round-robin over speakers; the duration range drops utterances.
    assert main(["--db", str(tmp_path / "LT"), "--out", str(tmp_path / "d2"), "--max-utts", "2", "--min-dur", "0.6",
                 "--no-progress"]) == 0  # fmt: skip
    assert sorted(read_kv(tmp_path / "d2" / "train" / "utt2spk").values()) == ["19", "26"]
    assert len(read_kv(tmp_path / "d2" / "dev" / "text")) == 1  # the 0.5 s utterance is too short
    utts, _ = scan_subset(tmp_path / "LT", "train-clean-100")
    assert [u.spk for u in round_robin(utts, 3)] == ["19", "19", "26"]


def test_prep_libritts_check_mode(tmp_path, capsys):
    from voxar.bin.prep_libritts import main

    _fake_libritts(tmp_path / "LT")
    assert main(["--db", str(tmp_path / "LT"), "--check"]) == 0
    assert main(["--db", str(tmp_path / "LT"), "--check", "--train-subsets", "train-clean-100,train-other-500"]) == 1
    err = capsys.readouterr().err
    assert "subset(s) train-other-500 not found (it holds dev-clean, test-clean, train-clean-100)" in err
    assert not (tmp_path / "data").exists()


# ------------------------------------------------------------------------------------------- decode plan
def _kaldi(path: Path, utts: dict[str, tuple[str, float]], wav_dir: Path) -> None:
    from voxar.data.kaldi import KaldiDir, write_data_dir

    wav_dir.mkdir(parents=True, exist_ok=True)
    for utt, (_, dur) in utts.items():
        sf.write(wav_dir / f"{utt}.wav", np.full(int(16000 * dur), 0.1, np.float32), 16000)
    write_data_dir(
        KaldiDir(
            wav_scp={u: str(wav_dir / f"{u}.wav") for u in utts},
            text={u: f"text of {u}" for u in utts},
            utt2spk={u: spk for u, (spk, _) in utts.items()},
            utt2dur={u: d for u, (_, d) in utts.items()},
        ),
        path,
    )


def test_decode_plan_picks_another_recording_of_the_speaker(tmp_path):
    from voxar.bin.decode_tts import plan

    test = {"a_1": ("a", 2.0), "a_2": ("a", 0.5), "a_3": ("a", 3.0), "b_1": ("b", 2.0), "c_1": ("c", 2.0)}
    _kaldi(tmp_path / "test", test, tmp_path / "wav")
    _kaldi(tmp_path / "train", {"b_9": ("b", 4.0), "b_8": ("b", 0.2)}, tmp_path / "wav")
    jobs = plan(tmp_path / "test", [tmp_path / "train"])
    prompts = {j.utt: j.prompt_utt for j in jobs}
    # next utterance of the speaker (cyclic, sorted), skipping prompts under 1 s; else the extra pool; else left out
    assert prompts == {"a_1": "a_3", "a_2": "a_3", "a_3": "a_1", "b_1": "b_9"}
    assert all(j.prompt_wav != j.ref for j in jobs)
    assert jobs == plan(tmp_path / "test", [tmp_path / "train"])  # deterministic
    parts = [plan(tmp_path / "test", [tmp_path / "train"], part=k, parts=2) for k in (1, 2)]
    assert sorted(j.utt for p in parts for j in p) == sorted(prompts) and not {j.utt for j in parts[0]} & {
        j.utt for j in parts[1]
    }
    few = plan(tmp_path / "test", [], max_utts=4)
    assert [j.utt for j in few] == ["a_1", "a_2"]  # round-robin a_1, b_1, c_1, a_2; b and c have no prompt here


def test_pack_models_sums_wall_time_over_resumed_runs(tmp_path):
    from voxar.bin.pack_models import read_train_log

    recs = [(10, 30.0), (20, 60.0), (20, 61.0), (30, 25.0), (40, 50.0), (40, 52.0)]  # resumed at step 20
    lines = [json.dumps({"step": s, "split": "valid" if i in (2, 5) else "train", "time": t, "loss": 1.0})
             for i, (s, t) in enumerate(recs)]  # fmt: skip
    (tmp_path / "train_log.jsonl").write_text("\n".join(lines) + "\n")
    log = read_train_log(tmp_path)
    assert log["steps"] == 40 and log["seconds"] == 61.0 + 52.0
    assert log["valid"]["step"] == 40 and log["train"]["step"] == 40


def test_pack_models_rejects_bad_input(tmp_path, capsys):
    from voxar.bin.pack_models import main

    assert main(["--out", str(tmp_path / "pack"), "--model", f"tts={tmp_path / 'none'}"]) == 1
    assert "no model directory" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "pack"), "--model", "codec=x"]) == 1
    assert "name must be one of vocoder, tts, content, vc" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "pack"), "--model", "tts=x", "--eval", f"tts={tmp_path / 'e.json'}"]) == 1
    assert "e.json: file not found" in capsys.readouterr().err
    assert not (tmp_path / "pack").exists()


# ------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The tiny synth corpus (egs/synth stage 1) with its LibriTTS-layout copy, in a temporary directory."""
    if not HAVE_ENGINES:
        pytest.skip("espeak-ng and flite are needed")
    pytest.importorskip("pyworld")
    root = tmp_path_factory.mktemp("corpus")
    cmd = ["run.sh", "--size", "tiny", "--layout", "libritts", "--stop_stage", "1", "--nj", "2", "--sim", "false",
           "--datadir", root / "data", "--wavdir", root / "wav", "--expdir", root / "exp"]  # fmt: skip
    r = bash(*cmd, cwd=SYNTH)
    assert r.returncode == 0, r.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def libritts_data(corpus, tmp_path_factory):
    """egs/libritts stages 0-1 alone: Kaldi dirs from the LibriTTS-shaped tiny corpus."""
    out = tmp_path_factory.mktemp("libritts_data")
    r = bash("run.sh", "--db", corpus / "data" / "LibriTTS", "--stop_stage", "1", "--datadir", out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def libritts_run(corpus, tmp_path_factory):
    """egs/libritts stages 0-9 on the LibriTTS-shaped tiny corpus."""
    out = tmp_path_factory.mktemp("libritts")
    cmd = ["run.sh", "--db", corpus / "data" / "LibriTTS", "--size", "tiny", *TINY,
           "--datadir", out / "data", "--dumpdir", out / "dump", "--expdir", out / "exp"]  # fmt: skip
    r = bash(*cmd)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-6000:]
    return out, cmd, r


def _check_report(path: Path) -> dict:
    report = json.loads(path.read_text())
    for metric in ("wer", "sim"):
        assert report["metrics"][metric]["generated"]["n"] >= 1, metric
    assert (
        0 <= report["metrics"]["wer"]["generated"]["wer"] and -1 <= report["metrics"]["sim"]["generated"]["mean"] <= 1
    )
    return report


def _check_pack(exp: Path, kinds: list[str], systems: dict[str, str]) -> None:
    for kind in kinds:
        d = exp / "pack" / kind
        for name in ("config.yaml", "model.safetensors", "README.md", "train_config.yaml"):
            assert (d / name).is_file(), d / name
        card = (d / "README.md").read_text()
        assert f"# voxar {kind} model" in card and "## Training data" in card and "Trained for " in card
        if kind in systems:
            assert f"({systems[kind]})" in card and "| WER % (corpus)" in card and "| SIM (cosine)" in card


@pytest.mark.slow
def test_libritts_recipe_end_to_end(libritts_run):
    from voxar.models.modeldir import read_model_header

    out, _, r = libritts_run
    for stage in range(10):
        assert f"Stage {stage}:" in r.stderr, stage
    text = read_kv(out / "data" / "train" / "text")
    assert all(re.fullmatch(r"\d+_\d+_\d{6}_\d{6}", u) for u in text)
    assert all(u.startswith(spk + "_") for u, spk in read_kv(out / "data" / "train" / "utt2spk").items())
    assert read_model_header(out / "exp" / "tts_tiny" / "model", "tts")["config"]["preset"] == "vocos24k"
    dec = out / "exp" / "tts_tiny" / "decode_test"
    rows = [ln.split("\t") for ln in (dec / "list.tsv").read_text().splitlines() if not ln.startswith("#")]
    assert len(rows) == 2 and all(sf.info(str(dec / row[1])).samplerate == 24000 for row in rows)
    prompts = [ln.split("\t") for ln in (dec / "prompts.tsv").read_text().splitlines() if not ln.startswith("#")]
    assert all(p[0] != p[1] and p[1].split("_")[0] == p[0].split("_")[0] for p in prompts)  # same speaker, not itself
    _check_report(dec / "eval" / "eval.json")
    assert "--stage 4 --stop_stage 4" in (out / "exp" / "tts_tiny" / "run.sh").read_text()
    _check_pack(out / "exp", ["vocoder", "tts"], {"tts": "tts", "vocoder": "tts"})
    assert "LibriTTS train-clean-100" in (out / "exp" / "pack" / "tts" / "README.md").read_text()
    _check_report(out / "exp" / "vc_tiny" / "decode_test" / "eval" / "eval.json")
    _check_pack(out / "exp", ["content", "vc"], {"vc": "vc", "content": "vc"})
    assert "Phone error rate" in (out / "exp" / "pack" / "content" / "README.md").read_text()


@pytest.mark.slow
def test_libritts_rerun_skips_finished_stages(libritts_run):
    out, cmd, _ = libritts_run
    stamp = (out / "exp" / "tts_tiny" / "model" / "model.safetensors").stat().st_mtime_ns
    r = bash(*cmd, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Stage 1: already done" in r.stderr
    for stage in range(2, 10):
        assert re.search(rf"Stage {stage}: .*already done", r.stderr), stage
    assert "training the" not in r.stderr
    assert (out / "exp" / "tts_tiny" / "model" / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_training_killed_mid_run_resumes_from_its_checkpoint(libritts_data, tmp_path):
    exp = tmp_path / "exp"
    cmd = ["bash", "run.sh", "--db", "unused", "--size", "tiny", "--stage", "3", "--stop_stage", "3", "--ngpu", "0",
           "--threads", "1", "--vocoder_max_steps", "100", "--vocoder_args", "--override save_every=5 log_every=5",
           "--datadir", str(libritts_data), "--expdir", str(exp), "--vc", "false"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=LIBRITTS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    last = exp / "vocoder_tiny" / "last.pt"
    try:
        for _ in range(1200):
            if last.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert last.exists() and proc.poll() is None, "training did not checkpoint in time"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole recipe: run.sh, tts.sh, the runner and the trainer
        proc.wait(timeout=60)
    assert not (exp / "vocoder_tiny" / ".done").exists()
    r = subprocess.run(cmd, cwd=LIBRITTS, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (exp / "vocoder_tiny" / "train.log").read_text()
    resumed = re.search(r"resuming from \S+ at step (\d+)", log)
    assert resumed and int(resumed.group(1)) >= 5, log[-2000:]
    steps = [json.loads(ln)["step"] for ln in (exp / "vocoder_tiny" / "train_log.jsonl").read_text().splitlines()]
    assert max(steps) == 100 and (exp / "vocoder_tiny" / ".done").is_file()


@pytest.mark.slow
def test_synth_recipe_end_to_end(corpus, tmp_path):
    cmd = ["run.sh", "--size", "tiny", "--layout", "libritts", "--stage", "1", "--sim", "false", *TINY,
           "--datadir", corpus / "data", "--wavdir", corpus / "wav", "--expdir", corpus / "exp",
           "--dumpdir", tmp_path / "dump"]  # fmt: skip
    r = bash(*cmd, cwd=SYNTH)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-6000:]
    assert "Stage 1: already done" in r.stderr
    exp = corpus / "exp"
    _check_report(exp / "tts_tiny" / "decode_test" / "eval" / "eval.json")
    _check_pack(exp, ["vocoder", "tts", "content", "vc"], {"tts": "tts", "vc": "vc"})
    assert "voxar synth corpus (size tiny, seed 0)" in (exp / "pack" / "tts" / "README.md").read_text()
    _check_report(exp / "vc_tiny" / "decode_test" / "eval" / "eval.json")
    card = (exp / "pack" / "vocoder" / "README.md").read_text()
    assert "(tts)" in card and "(vc)" in card  # the vocoder card carries both systems' figures


# ------------------------------------------------------------------------------------------- stage 3 variants
def _official_vocos(src: Path) -> dict:
    """Official-layout Vocos files (config.yaml + pytorch_model.bin) of a small random voxar vocoder."""
    import torch
    import yaml

    from voxar.models.vocoder import Vocoder, VocoderConfig

    torch.manual_seed(0)
    cfg = VocoderConfig(preset="vocos24k", n_mels=100, dim=32, intermediate_dim=48, num_layers=2, n_fft=1024,
                        hop_length=256, padding="center")  # fmt: skip
    ours = {k: v + 0.01 * torch.randn_like(v) for k, v in Vocoder(cfg).state_dict().items()}
    renames = [
        (r"embed\.conv\.", "backbone.embed."),
        (r"^norm\.", "backbone.norm."),
        (r"blocks\.(\d+)\.dwconv\.conv\.", r"backbone.convnext.\1.dwconv."),
        (r"blocks\.(\d+)\.", r"backbone.convnext.\1."),
        (r"final_norm\.", "backbone.final_layer_norm."),
    ]
    official = {}
    for key, value in ours.items():
        name = key
        for pattern, repl in renames:
            name, n = re.subn(pattern, repl, name)
            if n:
                break
        official[name] = value
    config = {
        "feature_extractor": {"class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
                              "init_args": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100,
                                            "padding": "center"}},
        "backbone": {"class_path": "vocos.models.VocosBackbone",
                     "init_args": {"input_channels": 100, "dim": 32, "intermediate_dim": 48, "num_layers": 2}},
        "head": {"class_path": "vocos.heads.ISTFTHead",
                 "init_args": {"dim": 32, "n_fft": 1024, "hop_length": 256, "padding": "center"}},
    }  # fmt: skip
    src.mkdir(parents=True)
    (src / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(official, src / "pytorch_model.bin")
    return ours


def test_stage3_imports_the_official_vocos_checkpoint(tmp_path):
    import torch

    from voxar.models.vocoder import Vocoder

    weights = _official_vocos(tmp_path / "vocos")
    cmd = ["run.sh", "--db", "unused", "--size", "tiny", "--stage", "3", "--stop_stage", "3", "--vc", "false",
           "--vocos_dir", tmp_path / "vocos", "--expdir", tmp_path / "exp"]  # fmt: skip
    r = bash(*cmd, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    model = Vocoder.from_pretrained(tmp_path / "exp" / "vocoder_vocos" / "model", preset="vocos24k")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, weights[key], rtol=0, atol=0)
    again = bash(*cmd, timeout=300)
    assert again.returncode == 0 and "Stage 3: already done" in again.stderr


@pytest.mark.slow
def test_stage3_trains_with_torchrun_on_two_cpu_processes(libritts_data, tmp_path):
    cmd = ["run.sh", "--db", "unused", "--size", "tiny", "--stage", "3", "--stop_stage", "3", "--vc", "false",
           "--ngpu", "0", "--nproc", "2", "--threads", "1", "--vocoder_max_steps", "4",
           "--datadir", libritts_data, "--expdir", tmp_path / "exp"]  # fmt: skip
    r = bash(*cmd)
    exp = tmp_path / "exp" / "vocoder_tiny"
    log = (exp / "train.log").read_text() if (exp / "train.log").exists() else r.stderr
    assert r.returncode == 0, log[-3000:]
    assert log.startswith(
        "# python -m torch.distributed.run --nproc_per_node 2 --standalone -m voxar.bin.train_vocoder"
    )
    assert "x 2 process(es)" in log and (exp / "model" / "model.safetensors").is_file()


def test_vocoder_card_shows_resynthesis_first(tmp_path):
    """The vocoder's own figures (resynthesis of recordings) lead its card; the TTS card does not show them."""
    from voxar.bin.pack_models import _eval_section

    def report(name: str, sim: float) -> Path:
        path = tmp_path / f"{name}.json"
        metrics = {"sim": {"generated": {"mean": sim, "std": 0.01, "n": 3}, "ceiling": None}}
        path.write_text(json.dumps({"n_scored": 3, "n_items": 3, "created": "now", "metrics": metrics}))
        return path

    evals = {"vc": report("vc", 0.701), "resynth": report("resynth", 0.923)}
    text = "\n".join(_eval_section("vocoder", evals))
    assert text.index("(resynth)") < text.index("(vc)") and "0.923" in text and "0.701" in text
    assert "(resynth)" not in "\n".join(_eval_section("tts", evals))


def test_card_names_a_warm_started_chain(tmp_path):
    """A run.sh with --init-from makes the card say the steps count from the warm start and show every command."""
    from voxar.bin.pack_models import _train_section

    (tmp_path / "train_log.jsonl").write_text(json.dumps({"step": 5, "split": "train", "time": 1.0}) + "\n")
    (tmp_path / "run.sh").write_text("# chain\npython -m a --max-steps 5\npython -m b --init-from x --max-steps 5\n")
    text = "\n".join(_train_section(tmp_path, tmp_path))
    assert "warm-started" in text and "(2 commands)" in text and "python -m b --init-from x" in text
    (tmp_path / "run.sh").write_text("python -m a --max-steps 5\n")
    assert "warm-started" not in "\n".join(_train_section(tmp_path, tmp_path))
