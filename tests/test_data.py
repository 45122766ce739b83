"""Tests of the data layer: Kaldi directories, validation, the `voxar data` CLI, feature dumps, dataset, sampler."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from voxar.data.cli import app
from voxar.data.kaldi import (
    KaldiDir,
    combine_data_dirs,
    fix_data_dir,
    read_data_dir,
    read_kv,
    subset_data_dir,
    write_data_dir,
    write_kv,
)
from voxar.data.validate import count_errors, validate_data_dir
from voxar.errors import VoxarDataError

SR = 16000
runner = CliRunner()


def _tone(seconds: float, freq: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A sine plus a little noise, float32 ``(T,)``."""
    t = np.arange(int(round(seconds * sr))) / sr
    noise = np.random.default_rng(seed).normal(0.0, 0.01, t.shape)
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def make_data_dir(root: Path, n: int = 6, *, sr: int = SR, name: str = "data", prefix: str = "") -> Path:
    """A valid data dir with ``n`` utterances over two speakers, wavs of 0.5 to ~1.2 s written under root/wavs."""
    wavs = root / f"wavs_{name}"
    wavs.mkdir(parents=True, exist_ok=True)
    kd = KaldiDir()
    for i in range(n):
        spk = f"{prefix}spk{'AB'[i % 2]}"
        utt = f"{spk}-{i:03d}"
        path = wavs / f"{utt}.wav"
        sf.write(path, _tone(0.5 + 0.13 * i, 200 + 50 * i, sr, seed=i), sr)
        kd.wav_scp[utt] = str(path)
        kd.text[utt] = f"hello world number {i}"
        kd.utt2spk[utt] = spk
    write_data_dir(kd, root / name)
    return root / name


def _keys(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines()]


# ----------------------------------------------------------------------------------------------- kaldi


def test_write_read_round_trip_sorted_c_locale(tmp_path: Path) -> None:
    keys = ["b-2", "B_1", "a-1", "A-10", "A-9", "a_0"]
    kd = KaldiDir(
        wav_scp={k: f"/audio/{k}.wav" for k in keys},
        text={k: f"some  words for {k}" for k in keys},
        utt2spk={k: k.split("-")[0].split("_")[0] for k in keys},
        utt2dur={k: 1.25 + i for i, k in enumerate(keys)},
    )
    write_data_dir(kd, tmp_path / "d")
    for name in ("wav.scp", "text", "utt2spk", "utt2dur"):
        got = _keys(tmp_path / "d" / name)
        assert got == sorted(keys, key=lambda k: k.encode("utf-8")), name  # byte order: uppercase first
    back = read_data_dir(tmp_path / "d")
    assert back.wav_scp == kd.wav_scp
    assert back.text["b-2"] == "some  words for b-2"  # inner spaces kept
    assert back.utt2spk == kd.utt2spk
    assert back.utt2dur == kd.utt2dur
    assert back.segments is None
    spk2utt = read_kv(tmp_path / "d" / "spk2utt")
    assert spk2utt == {spk: " ".join(utts) for spk, utts in kd.spk2utt.items()}
    assert spk2utt["A"] == "A-10 A-9"
    assert not list((tmp_path / "d").glob("*.tmp"))


def test_segments_round_trip_and_kv_errors(tmp_path: Path) -> None:
    kd = KaldiDir(
        wav_scp={"rec1": "/a/rec1.wav"},
        text={"s-1": "one", "s-2": "two"},
        utt2spk={"s-1": "s", "s-2": "s"},
        segments={"s-1": ("rec1", 0.0, 1.5), "s-2": ("rec1", 1.5, 2.125)},
    )
    write_data_dir(kd, tmp_path / "d")
    assert (tmp_path / "d" / "segments").read_text().splitlines() == ["s-1 rec1 0 1.5", "s-2 rec1 1.5 2.125"]
    back = read_data_dir(tmp_path / "d")
    assert back.segments == kd.segments
    assert back.recording_of("s-2") == ("rec1", 1.5, 2.125)

    (tmp_path / "kv").write_text("a 1\nb 2\na 3\n")
    with pytest.raises(VoxarDataError, match=r"kv:3: duplicate key 'a'"):
        read_kv(tmp_path / "kv")
    assert read_kv(tmp_path / "kv", strict=False) == {"a": "1", "b": "2"}
    with pytest.raises(VoxarDataError, match="whitespace"):
        write_kv(tmp_path / "kv2", {"bad key": "x"})
    with pytest.raises(VoxarDataError, match="data directory not found"):
        read_data_dir(tmp_path / "kv")  # a file, not a directory
    (tmp_path / "empty").mkdir()
    with pytest.raises(VoxarDataError, match="required file wav.scp is missing"):
        read_data_dir(tmp_path / "empty")


def test_fix_drops_inconsistent_utts(tmp_path: Path) -> None:
    d = make_data_dir(tmp_path)
    # Break it: an extra transcript without speaker, a speaker without audio, unsorted text.
    text_lines = (d / "text").read_text().splitlines()
    (d / "text").write_text("\n".join(reversed(text_lines + ["zz-9 orphan words"])) + "\n")
    with open(d / "utt2spk", "a") as f:
        f.write("spkA-999 spkA\n")
    errors, _ = count_errors(validate_data_dir(d))
    assert errors >= 3
    report = fix_data_dir(d)
    assert report.kept == 6
    assert report.dropped == 2
    assert report.dropped_utts == ["spkA-999", "zz-9"]
    assert validate_data_dir(d) == []
    assert (d / ".backup" / "text").is_file()
    assert "spkA-999" in read_kv(d / ".backup" / "utt2spk")


def test_subset_variants(tmp_path: Path) -> None:
    d = make_data_dir(tmp_path)
    utts = read_data_dir(d).utts
    assert subset_data_dir(d, tmp_path / "f", first=2).utts == utts[:2]
    assert subset_data_dir(d, tmp_path / "l", last=2).utts == utts[-2:]
    r1 = subset_data_dir(d, tmp_path / "r1", random_n=3, seed=5).utts
    r2 = subset_data_dir(d, tmp_path / "r2", random_n=3, seed=5).utts
    assert r1 == r2 and len(r1) == 3 and set(r1) <= set(utts)
    (tmp_path / "ul").write_text(f"{utts[4]}\n{utts[1]}\nunknown-utt\n")
    assert subset_data_dir(d, tmp_path / "u", utt_list=tmp_path / "ul").utts == sorted([utts[1], utts[4]])
    sub = subset_data_dir(d, tmp_path / "s", spk_list=["spkB"])
    assert set(sub.utt2spk.values()) == {"spkB"} and len(sub.utts) == 3
    assert validate_data_dir(tmp_path / "s") == []
    assert read_kv(tmp_path / "s" / "spk2utt") == {"spkB": " ".join(sub.utts)}
    with pytest.raises(VoxarDataError, match="exactly one"):
        subset_data_dir(d, tmp_path / "x", first=1, last=1)


def test_combine_and_duplicates(tmp_path: Path) -> None:
    a = make_data_dir(tmp_path, 4, name="a", prefix="a")
    b = make_data_dir(tmp_path, 3, name="b", prefix="b")
    out = combine_data_dirs(tmp_path / "ab", [a, b])
    assert len(out.utts) == 7
    assert validate_data_dir(tmp_path / "ab") == []
    assert set(read_kv(tmp_path / "ab" / "spk2utt")) == {"aspkA", "aspkB", "bspkA", "bspkB"}
    with pytest.raises(VoxarDataError, match="aspkA-000.*in both"):
        combine_data_dirs(tmp_path / "aa", [a, tmp_path / "ab"])


# ----------------------------------------------------------------------------------------------- validate


def test_validate_good_dir(tmp_path: Path) -> None:
    d = make_data_dir(tmp_path)
    assert validate_data_dir(d) == []
    assert validate_data_dir(d, check_audio=False) == []


def _broken_dir(tmp_path: Path) -> Path:
    d = make_data_dir(tmp_path, 4)
    wavs = read_kv(d / "wav.scp")
    Path(wavs["spkA-000"]).unlink()  # missing wav file
    sf.write(wavs["spkB-001"], _tone(0.05, 300), SR)  # too-short audio
    Path(wavs["spkA-002"]).write_bytes(b"RIFF\x00\x00garbage")  # unreadable audio
    (d / "text").write_text(
        "spkA-002 third one\n"
        "spkA-000 first one\n"  # unsorted
        "spkB-001\n"  # empty transcript
        "spkB-003 fourth\n"
        "spkB-003 fourth again\n"  # duplicate key
        "spkC-009 nobody speaks this\n"  # no speaker, no audio
    )
    return d


def test_validate_broken_dir_lists_every_problem(tmp_path: Path) -> None:
    d = _broken_dir(tmp_path)
    problems = validate_data_dir(d)
    lines = [str(p) for p in problems]

    def find(file: str, key: str, text: str) -> list[str]:
        return [p for p in problems if p.file == file and p.key == key and text in p.message]

    assert find("wav.scp", "spkA-000", "audio file not found"), lines
    assert find("text", "spkA-000", "not sorted"), lines
    assert find("text", "spkB-001", "empty transcript"), lines
    assert find("text", "spkB-003", "duplicate key (first on line 4)"), lines
    assert find("text", "spkC-009", "no speaker"), lines
    assert find("text", "spkC-009", "no audio"), lines
    assert find("wav.scp", "spkB-001", "too short"), lines
    assert find("wav.scp", "spkA-002", "unreadable audio file"), lines
    assert all(p.severity == "error" for p in problems)
    dup = find("text", "spkB-003", "duplicate")[0]
    assert dup.line == 5 and str(dup).startswith("ERROR text:5 spkB-003 duplicate key")
    # Duration limits are parameters.
    assert not any("too short" in p.message for p in validate_data_dir(d, min_dur=0.01))
    assert any("too long" in p.message for p in validate_data_dir(d, max_dur=0.6))


def test_validate_spk2utt_segments_piped_and_prefix(tmp_path: Path) -> None:
    rec = tmp_path / "rec.wav"
    sf.write(rec, _tone(2.0, 220), SR)
    d = tmp_path / "d"
    d.mkdir()
    (d / "wav.scp").write_text(f"rec1 {rec}\nrec2 sox in.flac -t wav - |\n")
    (d / "segments").write_text("x-1 rec1 0.0 0.9\nx-2 rec1 1.5 1.2\nx-3 rec9 0 1\ny-4 rec2 0 1\n")
    (d / "text").write_text("x-1 a\nx-2 b\nx-3 c\ny-4 d\n")
    (d / "utt2spk").write_text("x-1 x\nx-2 x\nx-3 x\ny-4 z\n")
    (d / "spk2utt").write_text("x x-1 x-3\nz x-2 y-4\n")
    problems = validate_data_dir(d)
    msgs = {(p.file, p.key, p.severity): p.message for p in problems}
    assert "piped commands" in msgs[("wav.scp", "rec2", "error")]
    assert "0 <= start < end" in msgs[("segments", "x-2", "error")]
    assert "rec9" in msgs[("segments", "x-3", "error")]
    assert "belongs to speaker 'x'" in msgs[("spk2utt", "z", "error")]
    assert "not a prefix" in msgs[("utt2spk", "y-4", "warning")]
    # A segment past the end of its recording.
    (d / "segments").write_text("x-1 rec1 0.0 0.9\nx-2 rec1 2.5 3.0\nx-3 rec1 1.0 1.9\ny-4 rec1 1.0 2.5\n")
    (d / "wav.scp").write_text(f"rec1 {rec}\n")
    (d / "spk2utt").write_text("x x-1 x-2 x-3\nz y-4\n")
    problems = validate_data_dir(d)
    msgs = {(p.file, p.key, p.severity): p.message for p in problems}
    assert "after the end" in msgs[("segments", "x-2", "error")]
    assert "after the end" in msgs[("segments", "y-4", "warning")]
    assert count_errors(problems) == (1, 2)


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    good = make_data_dir(tmp_path / "g")
    result = runner.invoke(app, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "0 error(s)" in result.stderr
    bad = _broken_dir(tmp_path / "b")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "ERROR text:5 spkB-003 duplicate key" in result.stdout
    assert "FAILED" in result.stderr
    result = runner.invoke(app, ["validate", str(bad), "--json", "--no-check-audio"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["errors"] == len(report["problems"]) > 0
    assert not any("audio file not found" in p["message"] for p in report["problems"])


def test_cli_fix_subset_combine_info(tmp_path: Path) -> None:
    d = make_data_dir(tmp_path)
    with open(d / "text", "a") as f:
        f.write("zzz extra\n")
    result = runner.invoke(app, ["fix", str(d)])
    assert result.exit_code == 0, result.output
    assert "dropped 1" in result.stderr
    result = runner.invoke(app, ["subset", str(d), str(tmp_path / "s"), "--first", "2"])
    assert result.exit_code == 0, result.output
    assert len(read_kv(tmp_path / "s" / "utt2spk")) == 2
    result = runner.invoke(app, ["subset", str(d), str(tmp_path / "s2"), "--random", "3", "--seed", "1"])
    assert result.exit_code == 0 and len(read_kv(tmp_path / "s2" / "utt2spk")) == 3
    result = runner.invoke(app, ["subset", str(d), str(tmp_path / "s3")])
    assert result.exit_code != 0
    other = make_data_dir(tmp_path, 2, name="o", prefix="o")
    result = runner.invoke(app, ["combine", str(tmp_path / "c"), str(d), str(other)])
    assert result.exit_code == 0, result.output
    assert len(read_kv(tmp_path / "c" / "utt2spk")) == 8
    result = runner.invoke(app, ["info", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "utterances: 8" in result.stdout and "speakers: 4" in result.stdout
    expected_hours = sum(sf.info(p).duration for p in read_kv(tmp_path / "c" / "wav.scp").values()) / 3600
    assert f"hours: {expected_hours:.3f}" in result.stdout
    result = runner.invoke(app, ["combine", str(tmp_path / "c2"), str(d), str(d)])
    assert isinstance(result.exception, VoxarDataError)  # propagates to voxar.cli.main


# ----------------------------------------------------------------------------------------------- dump


@pytest.fixture(scope="module")
def dumped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A data dir of 6 utterances and its dump (nj=1, shards of 4)."""
    from voxar.data.dump import dump_features

    root = tmp_path_factory.mktemp("dump")
    d = make_data_dir(root)
    summary = dump_features(d, root / "dump1", "16k", nj=1, shard_size=4, progress=False)
    assert (summary.utts, summary.skipped, summary.shards, summary.resumed_shards) == (6, 0, 2, 0)
    return d, root / "dump1"


def test_dump_layout_and_features(dumped: tuple[Path, Path]) -> None:
    from voxar.audio import LogMelSpectrogram, MelConfig, load_audio
    from voxar.config import load_config

    d, out = dumped
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    kd = read_data_dir(d)
    assert [e["utt"] for e in manifest] == kd.utts
    assert [e["shard"] for e in manifest] == ["feats.00000.safetensors"] * 4 + ["feats.00001.safetensors"] * 2
    assert load_config(MelConfig, out / "mel.yaml") == MelConfig.preset("16k")
    assert (out / "skipped.txt").read_text() == ""
    cfg = MelConfig.preset("16k")
    mel_fn = LogMelSpectrogram(cfg)
    all_frames = []
    for e in manifest:
        feats = load_file(str(out / e["shard"]))[e["utt"]]
        wav, _ = load_audio(kd.wav_scp[e["utt"]], sr=16000)
        assert feats.shape == (80, cfg.frames(len(wav))) == (80, e["frames"])
        assert e["spk"] == kd.utt2spk[e["utt"]] and e["text"] == kd.text[e["utt"]]
        assert e["duration"] == pytest.approx(len(wav) / 16000)
        torch.testing.assert_close(feats, mel_fn(torch.from_numpy(wav)), atol=1e-4, rtol=1e-4)
        all_frames.append(feats)
    frames = torch.cat(all_frames, dim=1).double()  # (80, total frames)
    stats = load_file(str(out / "stats.safetensors"))
    assert int(stats["count"]) == frames.shape[1]
    torch.testing.assert_close(stats["mean"], frames.mean(dim=1).float(), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(stats["std"], frames.std(dim=1, unbiased=False).float(), atol=1e-4, rtol=1e-4)


def test_dump_parallel_identical_and_resume(dumped: tuple[Path, Path], tmp_path: Path) -> None:
    from voxar.data.dump import dump_features

    d, out1 = dumped
    out2 = tmp_path / "dump2"
    summary = dump_features(d, out2, "16k", nj=2, shard_size=4, progress=False)
    assert summary.utts == 6 and summary.shards == 2
    for shard in ("feats.00000.safetensors", "feats.00001.safetensors"):
        a, b = load_file(str(out1 / shard)), load_file(str(out2 / shard))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert (out1 / "manifest.jsonl").read_text() == (out2 / "manifest.jsonl").read_text()

    # Resume: finished shards are not rewritten; a deleted one is recomputed.
    mtime0 = (out2 / "feats.00000.safetensors").stat().st_mtime_ns
    (out2 / "feats.00001.done").unlink()
    summary = dump_features(d, out2, "16k", nj=1, shard_size=4, progress=False)
    assert summary.resumed_shards == 1 and summary.utts == 6
    assert (out2 / "feats.00000.safetensors").stat().st_mtime_ns == mtime0
    assert (out2 / "feats.00001.done").is_file()
    summary = dump_features(d, out2, "16k", nj=1, shard_size=4, progress=False)
    assert summary.resumed_shards == 2
    with pytest.raises(VoxarDataError, match="different mel config.*sample_rate"):
        dump_features(d, out2, "vocos24k", shard_size=4, progress=False)
    # Without resume the config may change; every shard is recomputed.
    summary = dump_features(d, out2, "vocos24k", shard_size=3, resume=False, progress=False)
    assert summary.resumed_shards == 0 and summary.shards == 2
    assert load_file(str(out2 / "feats.00000.safetensors"))["spkA-000"].shape[0] == 100


def test_dump_skips_corrupt_and_honours_segments(tmp_path: Path) -> None:
    from voxar.audio import LogMelSpectrogram, MelConfig
    from voxar.data.dump import dump_features

    d = make_data_dir(tmp_path, 4)
    wavs = read_kv(d / "wav.scp")
    Path(wavs["spkB-001"]).write_bytes(b"RIFF not really a wave file")
    summary = dump_features(d, tmp_path / "out", "16k", shard_size=2, progress=False)
    assert summary.utts == 3 and summary.skipped == 1
    skipped = (tmp_path / "out" / "skipped.txt").read_text().splitlines()
    assert len(skipped) == 1 and skipped[0].startswith("spkB-001 ") and "spkB-001.wav" in skipped[0]
    assert "spkB-001" not in (tmp_path / "out" / "manifest.jsonl").read_text()

    # Segments: a 48 kHz recording cut into two utterances, resampled to 16 kHz.
    rec = np.concatenate([_tone(1.0, 300, 48000), _tone(1.0, 700, 48000, seed=3)])
    sf.write(tmp_path / "rec.wav", rec, 48000)
    kd = KaldiDir(
        wav_scp={"rec": str(tmp_path / "rec.wav")},
        text={"s-1": "low", "s-2": "high"},
        utt2spk={"s-1": "s", "s-2": "s"},
        segments={"s-1": ("rec", 0.0, 1.0), "s-2": ("rec", 1.0, 2.0)},
    )
    write_data_dir(kd, tmp_path / "seg")
    summary = dump_features(tmp_path / "seg", tmp_path / "segout", "16k", progress=False)
    assert summary.utts == 2
    feats = load_file(str(tmp_path / "segout" / "feats.00000.safetensors"))
    mel = LogMelSpectrogram(MelConfig.preset("16k"))
    expect = mel(torch.from_numpy(_tone(1.0, 700, 16000, seed=3)))
    assert feats["s-2"].shape == expect.shape == (80, 101)
    # The high tone dominates s-2 and the low one s-1 (bin of max energy, averaged over frames).
    assert feats["s-2"].mean(dim=1).argmax() > feats["s-1"].mean(dim=1).argmax()
    assert (feats["s-2"].mean(dim=1).argmax() - expect.mean(dim=1).argmax()).abs() <= 1


def test_dump_cli_and_bin(tmp_path: Path) -> None:
    from voxar.bin.dump_feats import main

    d = make_data_dir(tmp_path, 3)
    result = runner.invoke(app, ["dump", str(d), str(tmp_path / "o1"), "--preset", "16k", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "3 utterance(s)" in result.stderr
    assert main([str(d), str(tmp_path / "o2"), "--shard-size", "2", "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "o2").glob("feats.*.safetensors")) == [
        "feats.00000.safetensors",
        "feats.00001.safetensors",
    ]
    assert main([str(tmp_path / "missing"), str(tmp_path / "o3"), "--no-progress"]) == 1


# ----------------------------------------------------------------------------------------------- dataset


def test_dataset_and_collate(dumped: tuple[Path, Path]) -> None:
    from voxar.data.dataset import MelDataset, collate_mels, load_cmvn

    _, out = dumped
    ds = MelDataset(out)
    assert len(ds) == 6
    item = ds[2]
    assert set(item) == {"utt", "spk", "text", "mel", "frames"}
    assert item["mel"].shape == (80, item["frames"]) and item["mel"].dtype == torch.float32
    assert ds.lengths == [ds[i]["frames"] for i in range(6)]
    assert ds.mel_config().n_mels == 80
    batch = collate_mels([ds[0], ds[5], ds[3]])
    lengths = [ds.lengths[i] for i in (0, 5, 3)]
    assert batch["mels"].shape == (3, 80, max(lengths))
    assert batch["lengths"].tolist() == lengths
    assert batch["mask"].shape == (3, max(lengths)) and batch["mask"].dtype == torch.bool
    assert batch["mask"].sum(dim=1).tolist() == lengths
    assert batch["utts"] == [ds[0]["utt"], ds[5]["utt"], ds[3]["utt"]]
    torch.testing.assert_close(batch["mels"][0, :, : lengths[0]], ds[0]["mel"])
    assert (batch["mels"][0, :, lengths[0] :] == 0).all()
    short = MelDataset(out, max_frames=sorted(ds.lengths)[2])
    assert len(short) == 3 and max(short.lengths) <= sorted(ds.lengths)[2]
    mean, std = load_cmvn(out)
    assert mean.shape == std.shape == (80,) and (std > 0).all()
    # Works through a DataLoader with a worker process (handles are reopened per process).
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_mels, num_workers=1)
    seen = [u for b in loader for u in b["utts"]]
    assert seen == [e["utt"] for e in ds.entries]
    with pytest.raises(VoxarDataError, match="manifest not found"):
        MelDataset(out.parent / "data")  # a data dir, not a dump


# ----------------------------------------------------------------------------------------------- sampler


def _lengths(n: int = 200, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(20, 400, size=n).tolist() + [900]  # one item over the budget


def test_sampler_budget_and_coverage() -> None:
    from voxar.data.sampler import DynamicBatchSampler

    lengths = _lengths()
    sampler = DynamicBatchSampler(lengths, max_frames=800, num_buckets=5, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for b in batches:
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 800
    assert [200] in batches  # the over-long item alone
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))

    # Bucketing pads less than batching items of any length together.
    def padded(bs: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) for b in bs)

    one_bucket = list(DynamicBatchSampler(lengths, max_frames=800, num_buckets=1, seed=3))
    assert sorted(i for b in one_bucket for i in b) == list(range(len(lengths)))
    assert padded(batches) < padded(one_bucket)


def test_sampler_epochs_deterministic() -> None:
    from voxar.data.sampler import DynamicBatchSampler

    lengths = _lengths()
    s1 = DynamicBatchSampler(lengths, max_frames=800, seed=1)
    s2 = DynamicBatchSampler(lengths, max_frames=800, seed=1)
    e0 = list(s1)
    assert e0 == list(s2)
    s1.set_epoch(1)
    s2.set_epoch(1)
    e1 = list(s1)
    assert e1 == list(s2) and e1 != e0
    assert sorted(i for b in e1 for i in b) == list(range(len(lengths)))
    s1.set_epoch(0)
    assert list(s1) == e0
    fixed = DynamicBatchSampler(lengths, max_frames=800, shuffle=False)
    first = list(fixed)
    fixed.set_epoch(5)
    assert list(fixed) == first


@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_ddp_split(drop_last: bool) -> None:
    from voxar.data.sampler import DynamicBatchSampler

    lengths = _lengths(97, seed=4)
    uneven = 0
    for replicas in (2, 3):
        for epoch in (0, 1, 2):
            ranks = []
            for rank in range(replicas):
                s = DynamicBatchSampler(
                    lengths, max_frames=700, seed=2, num_replicas=replicas, rank=rank, drop_last=drop_last
                )
                s.set_epoch(epoch)
                ranks.append(list(s))
                assert len(s) == len(ranks[-1])
            single = DynamicBatchSampler(lengths, max_frames=700, seed=2, num_replicas=1, rank=0)
            single.set_epoch(epoch)
            total = len(single)
            uneven += total % replicas != 0
            expected = total // replicas if drop_last else -(-total // replicas)
            assert [len(r) for r in ranks] == [expected] * replicas  # same number of steps on every rank
            cover = [{i for b in batches for i in b} for batches in ranks]
            for a in range(replicas):
                for b in range(a + 1, replicas):
                    assert not cover[a] & cover[b]  # disjoint across ranks
            union = set().union(*cover)
            if drop_last:
                assert len(union) < len(lengths) or total % replicas == 0
            else:
                assert union == set(range(len(lengths)))
            # The split is the single-replica epoch, dealt out batch by batch (plus padding repeats).
            assert {tuple(b) for r in ranks for b in r} <= {tuple(b) for b in single}
    assert uneven > 0  # padding/dropping was exercised
    with pytest.raises(ValueError):
        DynamicBatchSampler(lengths, max_frames=700, num_replicas=2, rank=2)


def test_dump_files_are_world_readable(tmp_path):
    """safetensors writes 0600 files; dumps are shared data and must be readable like any other file."""
    import stat

    import numpy as np
    import soundfile as sf

    from voxar.data.dump import dump_features
    from voxar.data.kaldi import KaldiDir, write_data_dir

    wav = tmp_path / "a.wav"
    sf.write(wav, (0.1 * np.sin(np.arange(8000) / 5)).astype(np.float32), 16000)
    write_data_dir(KaldiDir(wav_scp={"s1-a": str(wav)}, text={"s1-a": "hi"}, utt2spk={"s1-a": "s1"}), tmp_path / "d")
    dump_features(tmp_path / "d", tmp_path / "dump", "16k", progress=False)
    for f in (tmp_path / "dump").glob("*.safetensors"):
        assert stat.S_IMODE(f.stat().st_mode) & 0o044 == 0o044, f
