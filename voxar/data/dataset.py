"""Torch dataset over a feature dump written by :func:`voxar.data.dump.dump_features`, and its collate function.

Shards are opened lazily with ``safetensors.safe_open`` (memory-mapped) and the handles are cached per process, so
DataLoader workers (fork or spawn) each open their own.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from voxar.data.dump import MANIFEST, MEL_CONFIG, STATS
from voxar.errors import VoxarDataError

logger = logging.getLogger(__name__)


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Entries of a ``manifest.jsonl`` (``utt``, ``spk``, ``text``, ``shard``, ``frames``, ``duration``)."""
    path = Path(path)
    if not path.is_file():
        raise VoxarDataError(f"{path}: manifest not found (run `voxar data dump` first)")
    entries = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
                for key in ("utt", "shard", "frames"):
                    if key not in entry:
                        raise ValueError(f"missing {key!r}")
            except ValueError as e:
                raise VoxarDataError(f"{path}:{lineno}: malformed manifest line ({e})") from e
            entries.append(entry)
    return entries


def load_cmvn(dump_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)``, each float32 ``(n_mels,)``, from ``dump_dir/stats.safetensors``."""
    from safetensors.torch import load_file

    path = Path(dump_dir) / STATS
    if not path.is_file():
        raise VoxarDataError(f"{path}: CMVN statistics not found (run `voxar data dump` first)")
    stats = load_file(str(path))
    return stats["mean"], stats["std"]


class MelDataset(torch.utils.data.Dataset):
    """Log-mel features of a dump directory.

    Item ``i`` is ``dict(utt=str, spk=str, text=str, mel=(n_mels, T) float32 tensor, frames=int)``. With
    ``max_frames`` utterances longer than that are left out (counted in the log). :attr:`lengths` gives the frames
    of every item, e.g. for :class:`voxar.data.sampler.DynamicBatchSampler`.
    """

    def __init__(self, dump_dir: str | Path, *, max_frames: int | None = None) -> None:
        self.dump_dir = Path(dump_dir)
        if not self.dump_dir.is_dir():
            raise VoxarDataError(f"{self.dump_dir}: dump directory not found")
        entries = read_manifest(self.dump_dir / MANIFEST)
        if max_frames is not None:
            kept = [e for e in entries if int(e["frames"]) <= max_frames]
            if len(kept) < len(entries):
                logger.info(
                    "%s: left out %d of %d utterances longer than %d frames",
                    self.dump_dir,
                    len(entries) - len(kept),
                    len(entries),
                    max_frames,
                )
            entries = kept
        self.entries = entries
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def lengths(self) -> list[int]:
        """Frames of each item, in dataset order."""
        return [int(e["frames"]) for e in self.entries]

    def mel_config(self) -> Any:
        """The :class:`voxar.audio.MelConfig` the features were computed with (from ``mel.yaml``)."""
        from voxar.audio import MelConfig
        from voxar.config import load_config

        return load_config(MelConfig, self.dump_dir / MEL_CONFIG)

    def _shard(self, name: str) -> Any:
        from safetensors import safe_open

        if self._pid != os.getpid():  # forked into a DataLoader worker: do not share the parent's handles
            self._handles = {}
            self._pid = os.getpid()
        handle = self._handles.get(name)
        if handle is None:
            path = self.dump_dir / name
            if not path.is_file():
                raise VoxarDataError(f"{path}: feature shard listed in the manifest is missing")
            handle = safe_open(str(path), framework="pt")
            self._handles[name] = handle
        return handle

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        utt = entry["utt"]
        try:
            mel = self._shard(entry["shard"]).get_tensor(utt)  # (n_mels, T)
        except KeyError as e:
            raise VoxarDataError(f"{self.dump_dir / entry['shard']}: no features for utterance {utt!r}") from e
        return {
            "utt": utt,
            "spk": entry.get("spk", ""),
            "text": entry.get("text", ""),
            "mel": mel,
            "frames": int(mel.shape[-1]),
        }

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}  # safetensors handles cannot be pickled (spawned DataLoader workers)
        return state


def collate_mels(items: list[dict[str, Any]], *, pad_value: float = 0.0) -> dict[str, Any]:
    """Batch :class:`MelDataset` items.

    Returns ``mels`` ``(B, n_mels, T_max)`` float32 padded with ``pad_value``, ``lengths`` ``(B,)`` int64,
    ``mask`` ``(B, T_max)`` bool (True on real frames), and ``utts``, ``spks``, ``texts`` as lists of str.
    """
    if not items:
        raise ValueError("collate_mels: empty batch")
    n_mels = items[0]["mel"].shape[0]
    lengths = torch.tensor([item["mel"].shape[-1] for item in items], dtype=torch.long)
    t_max = int(lengths.max())
    mels = torch.full((len(items), n_mels, t_max), pad_value, dtype=torch.float32)
    for i, item in enumerate(items):
        mel = item["mel"]
        if mel.shape[0] != n_mels:
            name = item.get("utt", i)
            raise ValueError(f"collate_mels: item {name!r} has {mel.shape[0]} mel bins, expected {n_mels}")
        mels[i, :, : mel.shape[-1]] = mel
    mask = torch.arange(t_max).unsqueeze(0) < lengths.unsqueeze(1)  # (1, T_max) < (B, 1) -> (B, T_max)
    return {
        "mels": mels,
        "lengths": lengths,
        "mask": mask,
        "utts": [item["utt"] for item in items],
        "spks": [item.get("spk", "") for item in items],
        "texts": [item.get("text", "") for item in items],
    }
