"""Dump log-mel features of a Kaldi data directory into resumable safetensors shards.

Layout of ``out_dir``:

- ``feats.{shard:05d}.safetensors``: one float32 tensor ``(n_mels, frames)`` per utterance, keyed by utterance id;
- ``feats.{shard:05d}.done``: JSON side-record written after its shard (manifest lines, skipped utterances and
  partial CMVN sums), so a rerun skips finished shards;
- ``manifest.jsonl``: one JSON object per utterance: ``utt``, ``spk``, ``text``, ``shard``, ``frames``, ``duration``;
- ``mel.yaml``: the :class:`voxar.audio.MelConfig` used (a rerun with another config is refused);
- ``stats.safetensors``: CMVN statistics over all frames: ``mean`` and ``std`` ``(n_mels,)`` float32, ``count``;
- ``skipped.txt``: ``<utt> <reason>`` for each utterance that could not be read.

Utterances are sorted and cut into shards of ``shard_size``; shard ``i`` always holds the same utterances for the same
data directory and shard size, which is what makes resuming safe. Work is spread over ``nj`` spawned processes
(each with one torch thread; the in-process path also uses one thread, so results do not depend on ``nj``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxar.config import from_dict, load_config, save_config, to_dict
from voxar.data.kaldi import read_data_dir, resolve_wav
from voxar.errors import VoxarAudioError, VoxarConfigError, VoxarDataError

if TYPE_CHECKING:
    from voxar.audio import MelConfig

logger = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
MEL_CONFIG = "mel.yaml"
STATS = "stats.safetensors"
SKIPPED = "skipped.txt"
STD_FLOOR = 1e-5


def shard_name(index: int) -> str:
    """File name of shard ``index``: ``feats.00012.safetensors``."""
    return f"feats.{index:05d}.safetensors"


@dataclass
class DumpSummary:
    """What :func:`dump_features` did."""

    utts: int  # utterances written
    skipped: int  # utterances that could not be read
    shards: int  # shards in the dump
    resumed_shards: int  # shards found finished and not recomputed
    frames: int  # feature frames over all utterances


# ----------------------------------------------------------------------------------------------- worker side


class _ShardWorker:
    """Computes shards; one per process (holds the mel module and the last decoded recording)."""

    def __init__(self, cfg_dict: dict[str, Any]) -> None:
        from voxar.audio import LogMelSpectrogram, MelConfig

        self.cfg = from_dict(MelConfig, cfg_dict)
        self.mel = LogMelSpectrogram(self.cfg).eval()
        self._reco: tuple[str, Any] | None = None  # (path, (T,) float32 samples at cfg.sample_rate)

    def _load(self, path: str, start: float | None, end: float | None) -> Any:
        from voxar.audio import load_audio

        if start is None:
            return load_audio(path, sr=self.cfg.sample_rate)[0]
        if self._reco is None or self._reco[0] != path:
            # A recording holds many segments: decode it once (no length limit), keep it for the next segment.
            self._reco = (path, load_audio(path, sr=self.cfg.sample_rate, max_seconds=None)[0])
        wav = self._reco[1]
        sr = self.cfg.sample_rate
        first, last = round(start * sr), min(round((end if end is not None else start) * sr), len(wav))
        if first >= len(wav):
            raise VoxarAudioError(f"{path}: segment starts at {start} s, after the end ({len(wav) / sr:.3f} s)")
        return wav[first:last]

    def _min_samples(self) -> int:
        cfg = self.cfg
        return cfg.n_fft // 2 + 1 if cfg.center else cfg.n_fft

    def run(self, task: dict[str, Any]) -> dict[str, Any]:
        """Compute and write one shard plus its ``.done`` record; returns the record."""
        import torch
        from safetensors.torch import save_file

        out_dir = Path(task["out_dir"])
        name = task["shard"]
        tensors: dict[str, torch.Tensor] = {}
        entries: list[dict[str, Any]] = []
        skipped: list[list[str]] = []
        n_mels = self.cfg.n_mels
        total = torch.zeros(n_mels, dtype=torch.float64)
        total_sq = torch.zeros(n_mels, dtype=torch.float64)
        count = 0
        for job in task["jobs"]:
            utt = job["utt"]
            try:
                path = str(resolve_wav(job["wav"], key=utt))
                wav = self._load(path, job["start"], job["end"])
                if len(wav) < self._min_samples():
                    raise VoxarAudioError(f"{path}: only {len(wav)} samples, too short for n_fft={self.cfg.n_fft}")
            except (VoxarAudioError, VoxarDataError) as e:
                skipped.append([utt, str(e)])
                continue
            with torch.inference_mode():
                mel = self.mel(torch.from_numpy(wav)).contiguous()  # (T,) -> (n_mels, frames)
            tensors[utt] = mel
            frames = int(mel.shape[-1])
            mel64 = mel.to(torch.float64)
            total += mel64.sum(dim=1)
            total_sq += (mel64 * mel64).sum(dim=1)
            count += frames
            entries.append(
                {
                    "utt": utt,
                    "spk": job["spk"],
                    "text": job["text"],
                    "shard": name,
                    "frames": frames,
                    "duration": round(len(wav) / self.cfg.sample_rate, 6),
                }
            )
        shard_path = out_dir / name
        tmp = shard_path.with_name(shard_path.name + ".tmp")
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.chmod(tmp, 0o644)  # safetensors writes 0600
        os.replace(tmp, shard_path)
        record = {
            "shard": name,
            "jobs_hash": task["jobs_hash"],
            "entries": entries,
            "skipped": skipped,
            "sum": total.tolist(),
            "sum_sq": total_sq.tolist(),
            "count": count,
        }
        _write_json_atomic(_done_path(shard_path), record)
        return record


_WORKER: _ShardWorker | None = None


def _init_worker(cfg_dict: dict[str, Any]) -> None:
    import torch

    global _WORKER
    torch.set_num_threads(1)
    _WORKER = _ShardWorker(cfg_dict)


def _run_task(task: dict[str, Any]) -> dict[str, Any]:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.run(task)


# ----------------------------------------------------------------------------------------------- driver side


def _done_path(shard_path: Path) -> Path:
    return shard_path.with_name(shard_path.name.replace(".safetensors", ".done"))


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def _write_lines_atomic(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)


def _jobs_hash(jobs: list[dict[str, Any]], cfg_dict: dict[str, Any]) -> str:
    blob = json.dumps([cfg_dict, jobs], sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha1(blob).hexdigest()


def _finished_record(shard_path: Path, jobs_hash: str) -> dict[str, Any] | None:
    """The ``.done`` record of a shard finished with the same inputs, else None."""
    done = _done_path(shard_path)
    if not (done.is_file() and shard_path.is_file()):
        return None
    try:
        record = json.loads(done.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        logger.warning("%s: unreadable, recomputing the shard", done)
        return None
    if not isinstance(record, dict) or record.get("jobs_hash") != jobs_hash:
        logger.info("%s: inputs changed since it was written, recomputing", shard_path.name)
        return None
    return record


def _check_mel_config(out_dir: Path, cfg: MelConfig, resume: bool) -> None:
    from voxar.audio import MelConfig

    path = out_dir / MEL_CONFIG
    if resume and path.is_file():
        try:
            old = load_config(MelConfig, path)
        except VoxarConfigError as e:
            raise VoxarDataError(f"{path}: existing mel config is unreadable ({e})") from e
        old_d, new_d = to_dict(old), to_dict(cfg)
        diffs = [f"{k}: {old_d[k]!r} -> {new_d[k]!r}" for k in new_d if old_d.get(k) != new_d[k]]
        if diffs:
            raise VoxarDataError(
                f"{path}: the existing dump used a different mel config ({'; '.join(diffs)}); "
                "use another output directory or disable resuming"
            )
    save_config(cfg, path)


def _remove_stale(out_dir: Path, keep: set[str]) -> None:
    for pattern in ("feats.*.safetensors", "feats.*.done", "feats.*.tmp"):
        for path in out_dir.glob(pattern):
            if path.suffix == ".tmp" or path.name.replace(".done", ".safetensors") not in keep:
                logger.info("removing stale %s", path)
                path.unlink()


def _build_jobs(data_dir: str | Path) -> list[dict[str, Any]]:
    kd = read_data_dir(data_dir)
    missing_text = [u for u in kd.utts if u not in kd.text]
    if missing_text:
        raise VoxarDataError(
            f"{data_dir}: {len(missing_text)} utterance(s) have no transcript (e.g. {missing_text[0]}); "
            "run `voxar data validate` / `voxar data fix`"
        )
    jobs = []
    for utt in kd.utts:
        if kd.segments is not None and utt not in kd.segments:
            raise VoxarDataError(f"{data_dir}: utterance {utt!r} is not in segments; run `voxar data fix`")
        reco, start, end = kd.recording_of(utt)
        if reco not in kd.wav_scp:
            raise VoxarDataError(f"{data_dir}: utterance {utt!r} has no audio in wav.scp; run `voxar data fix`")
        job = {"utt": utt, "spk": kd.utt2spk[utt], "text": kd.text[utt], "wav": kd.wav_scp[reco]}
        jobs.append({**job, "start": start, "end": end})
    return jobs


def dump_features(
    data_dir: str | Path,
    out_dir: str | Path,
    mel_cfg: MelConfig | str,
    *,
    nj: int = 1,
    shard_size: int = 200,
    resume: bool = True,
    progress: bool = True,
) -> DumpSummary:
    """Compute log-mel features of every utterance of ``data_dir`` into ``out_dir`` (see the module docstring).

    ``mel_cfg`` is a MelConfig or a preset name (``"16k"``, ``"vocos24k"``); audio is resampled to its rate and
    ``segments`` are honoured. With ``resume`` finished shards are kept (a different mel config raises
    :class:`VoxarDataError`); without it every shard is recomputed. Unreadable utterances are skipped and listed in
    ``skipped.txt``; if none can be read, :class:`VoxarDataError` is raised.
    """
    import torch
    from safetensors.torch import save_file
    from tqdm import tqdm

    from voxar.audio import MelConfig

    if isinstance(mel_cfg, str):
        mel_cfg = MelConfig.preset(mel_cfg)
    if nj < 1:
        raise VoxarDataError(f"dump: nj must be >= 1, got {nj}")
    if shard_size < 1:
        raise VoxarDataError(f"dump: shard size must be >= 1, got {shard_size}")
    jobs = _build_jobs(data_dir)
    if not jobs:
        raise VoxarDataError(f"{data_dir}: no utterances to dump")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_mel_config(out, mel_cfg, resume)
    cfg_dict = to_dict(mel_cfg)

    tasks: list[dict[str, Any]] = []
    records: dict[str, dict[str, Any]] = {}
    for index, begin in enumerate(range(0, len(jobs), shard_size)):
        chunk = jobs[begin : begin + shard_size]
        name = shard_name(index)
        task = {"shard": name, "jobs": chunk, "jobs_hash": _jobs_hash(chunk, cfg_dict), "out_dir": str(out)}
        record = _finished_record(out / name, task["jobs_hash"]) if resume else None
        if record is not None:
            records[name] = record
        else:
            tasks.append(task)
    names = [shard_name(i) for i in range((len(jobs) + shard_size - 1) // shard_size)]
    _remove_stale(out, {n for n in names if n in records})
    resumed = len(records)
    if resumed:
        logger.info("%s: %d of %d shards already done", out, resumed, len(names))

    bar = tqdm(total=len(jobs), unit="utt", desc="dump", disable=not progress)
    bar.update(sum(len(r["entries"]) + len(r["skipped"]) for r in records.values()))
    nj = min(nj, len(tasks))
    try:
        if nj <= 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # same arithmetic as the workers: features do not depend on nj
            try:
                worker = _ShardWorker(cfg_dict)
                for task in tasks:
                    records[task["shard"]] = worker.run(task)
                    bar.update(len(task["jobs"]))
            finally:
                torch.set_num_threads(threads)
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(nj, initializer=_init_worker, initargs=(cfg_dict,)) as pool:
                for record in pool.imap_unordered(_run_task, tasks):
                    records[record["shard"]] = record
                    bar.update(len(record["entries"]) + len(record["skipped"]))
    finally:
        bar.close()

    entries = [e for n in names for e in records[n]["entries"]]
    skipped = [s for n in names for s in records[n]["skipped"]]
    for utt, reason in skipped:
        logger.warning("skipped %s: %s", utt, reason)
    _write_lines_atomic(out / SKIPPED, [f"{utt} {' '.join(reason.split())}" for utt, reason in skipped])
    _write_lines_atomic(out / MANIFEST, [json.dumps(e, ensure_ascii=False) for e in entries])
    if not entries:
        raise VoxarDataError(f"{data_dir}: none of the {len(jobs)} utterances could be read (see {out / SKIPPED})")

    count = sum(records[n]["count"] for n in names)
    total = torch.tensor([records[n]["sum"] for n in names], dtype=torch.float64).sum(dim=0)  # (S, n_mels) -> (n_mels,)
    total_sq = torch.tensor([records[n]["sum_sq"] for n in names], dtype=torch.float64).sum(dim=0)
    mean = total / count
    std = (total_sq / count - mean * mean).clamp(min=0.0).sqrt().clamp(min=STD_FLOOR)
    tmp = out / (STATS + ".tmp")
    save_file(
        {"mean": mean.float(), "std": std.float(), "count": torch.tensor(count, dtype=torch.int64)},
        str(tmp),
        metadata={"format": "pt"},
    )
    os.chmod(tmp, 0o644)
    os.replace(tmp, out / STATS)
    logger.info(
        "%s: %d utterances, %d skipped, %d frames in %d shards", out, len(entries), len(skipped), count, len(names)
    )
    return DumpSummary(utts=len(entries), skipped=len(skipped), shards=len(names), resumed_shards=resumed, frames=count)
