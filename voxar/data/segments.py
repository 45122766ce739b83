"""Fixed-length random audio crops from a Kaldi data directory (vocoder training), and a resumable batch sampler.

:class:`AudioSegmentDataset` item ``i`` is a float32 ``(segment_samples,)`` crop of utterance ``i`` at
``sample_rate`` (utterances shorter than that are zero-padded at the end). The crop offset is drawn from a generator
seeded with ``(seed, epoch, i)``, so a crop depends only on those three numbers: index the dataset with an
``(epoch, i)`` pair (as :class:`SegmentBatchSampler` does) or with ``i`` alone (epoch :attr:`epoch`, 0 unless
:meth:`set_epoch` is called -- which makes validation crops fixed). Nothing depends on worker processes or call
order, so a resumed run sees the same data as an uninterrupted one.

:class:`SegmentBatchSampler` yields, forever, the batches of optimiser steps ``start_step, start_step + 1, ...`` for
one rank: each epoch is a permutation of the items seeded with ``(seed, epoch)``, cut into global batches of
``batch_size * world_size`` items, of which rank ``r`` takes the ``r``-th slice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from voxar.errors import VoxarDataError

logger = logging.getLogger(__name__)

Key = int | tuple[int, int]


class AudioSegmentDataset(torch.utils.data.Dataset):
    """Random fixed-length crops of the utterances of a Kaldi data directory (see the module docstring).

    ``cache`` keeps every decoded, resampled utterance in memory (per process) -- for tiny corpora. ``max_utts``
    keeps the first utterances only (sorted ids).
    """

    def __init__(
        self,
        data_dir: str | Path,
        sample_rate: int,
        segment_samples: int,
        *,
        seed: int = 0,
        cache: bool = False,
        max_utts: int | None = None,
    ) -> None:
        from voxar.data.kaldi import read_data_dir

        if segment_samples <= 0 or sample_rate <= 0:
            raise ValueError(f"need positive sample_rate and segment_samples, got {sample_rate}, {segment_samples}")
        self.data_dir = Path(data_dir)
        kd = read_data_dir(self.data_dir)
        utts = kd.utts if max_utts is None else kd.utts[:max_utts]
        if not utts:
            raise VoxarDataError(f"{self.data_dir}: no utterances")
        self.utts = utts
        self.items = [(kd.wav_path(u), *kd.recording_of(u)[1:]) for u in utts]  # (path, start_s, end_s)
        self.sample_rate = int(sample_rate)
        self.segment_samples = int(segment_samples)
        self.seed = int(seed)
        self.epoch = 0
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.utts)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used when the dataset is indexed by a plain integer."""
        self.epoch = int(epoch)

    def utterance(self, index: int) -> np.ndarray:
        """The whole utterance ``index`` as float32 ``(T,)`` at ``sample_rate``."""
        if self.cache and index in self._cache:
            return self._cache[index]
        from voxar.audio import load_audio

        path, start, end = self.items[index]
        wav, _ = load_audio(path, self.sample_rate)
        if start is not None:
            lo = int(round(start * self.sample_rate))
            hi = len(wav) if end is None else int(round(end * self.sample_rate))
            wav = wav[lo:hi]
        if wav.size == 0:
            raise VoxarDataError(f"{self.data_dir}: utterance {self.utts[index]!r} has no samples")
        wav = np.ascontiguousarray(wav, dtype=np.float32)
        if self.cache:
            self._cache[index] = wav
        return wav

    def crop(self, wav: np.ndarray, epoch: int, index: int) -> np.ndarray:
        """The ``(segment_samples,)`` crop of ``wav`` for ``(epoch, index)`` (zero-padded when shorter)."""
        n = self.segment_samples
        if len(wav) <= n:
            return np.pad(wav, (0, n - len(wav)))
        rng = np.random.default_rng([self.seed, epoch, index])
        start = int(rng.integers(0, len(wav) - n + 1))
        return wav[start : start + n]

    def __getitem__(self, key: Key) -> torch.Tensor:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        if not 0 <= index < len(self.utts):
            raise IndexError(f"index {index} out of range for {len(self.utts)} utterances")
        return torch.from_numpy(self.crop(self.utterance(index), epoch, index).copy())


class SegmentBatchSampler:
    """Endless, resumable per-rank batches of ``(epoch, index)`` keys (pass as ``DataLoader(batch_sampler=...)``).

    ``batch(step)`` is a pure function of ``(seed, step, rank, world_size)``. Corpora smaller than one global batch
    are tiled (several permutations per epoch), so every step gets ``batch_size`` items.
    """

    def __init__(
        self, num_items: int, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1, start_step: int = 0
    ) -> None:
        if num_items < 1 or batch_size < 1:
            raise ValueError(f"need num_items >= 1 and batch_size >= 1, got {num_items}, {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got {rank}, {world_size}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step
        self.global_batch = batch_size * world_size
        self.repeats = -(-self.global_batch // num_items)  # permutations per epoch (1 unless the corpus is tiny)
        self.steps_per_epoch = self.repeats * num_items // self.global_batch
        self._order: tuple[int, list[int]] | None = None

    def order(self, epoch: int) -> list[int]:
        """Item order of ``epoch`` (the same on every rank)."""
        if self._order is None or self._order[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.cat([torch.randperm(self.num_items, generator=g) for _ in range(self.repeats)])
            self._order = (epoch, perm.tolist())
        return self._order[1]

    def batch(self, step: int) -> list[tuple[int, int]]:
        """This rank's ``(epoch, index)`` keys for optimiser step ``step``."""
        epoch, i = divmod(step, self.steps_per_epoch)
        lo = i * self.global_batch + self.rank * self.batch_size
        return [(epoch, idx) for idx in self.order(epoch)[lo : lo + self.batch_size]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


class GTASegmentDataset(AudioSegmentDataset):
    """Audio crops paired with the same stretch of a ground-truth-aligned mel dump (:mod:`voxar.bin.gta_mels`).

    Item ``(epoch, i)`` is ``(wav (S,), gta (n_mels, S / hop + 1), use_gta (bool))``: the crop starts on a frame
    boundary (frame ``j`` of the utterance's mel is centred on sample ``j * hop``, as the vocoder's own mel of the
    crop), frames past the mel's end hold ``log_floor`` (silence), and ``use_gta`` is drawn with probability
    ``gta_prob`` from ``(seed, epoch, i)`` (otherwise the trainer feeds the recording's own mel). Utterances of the
    data directory without a GTA mel, or whose mel has another frame count than the audio, are left out.
    """

    def __init__(
        self,
        data_dir: str | Path,
        gta_dir: str | Path,
        sample_rate: int,
        segment_samples: int,
        hop_length: int,
        *,
        gta_prob: float = 1.0,
        log_floor: float = 1e-5,
        seed: int = 0,
        cache: bool = False,
    ) -> None:
        from voxar.data.dataset import MelDataset

        super().__init__(data_dir, sample_rate, segment_samples, seed=seed, cache=cache)
        if segment_samples % hop_length:
            raise ValueError(f"segment_samples {segment_samples} is not a multiple of hop_length {hop_length}")
        if not 0.0 <= gta_prob <= 1.0:
            raise ValueError(f"gta_prob must be in [0, 1], got {gta_prob}")
        self.gta = MelDataset(gta_dir)
        if self.gta.mel_config().hop_length != hop_length or self.gta.mel_config().sample_rate != sample_rate:
            raise VoxarDataError(f"{gta_dir}: GTA mels of another rate or hop than the vocoder's")
        by_utt = {str(e["utt"]): j for j, e in enumerate(self.gta.entries)}
        keep = [k for k, u in enumerate(self.utts) if u in by_utt]
        if not keep:
            raise VoxarDataError(f"{gta_dir}: no GTA mel for any utterance of {self.data_dir}")
        if len(keep) < len(self.utts):
            logger.warning("%s: %d utterances without a GTA mel left out", self.data_dir, len(self.utts) - len(keep))
        self.utts = [self.utts[k] for k in keep]
        self.items = [self.items[k] for k in keep]
        self.gta_index = [by_utt[u] for u in self.utts]
        self.hop = int(hop_length)
        self.gta_prob = float(gta_prob)
        self.floor = float(np.log(log_floor))
        self._checked: set[int] = set()

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, torch.Tensor, bool]:  # type: ignore[override]
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        if not 0 <= index < len(self.utts):
            raise IndexError(f"index {index} out of range for {len(self.utts)} utterances")
        wav = self.utterance(index)
        mel = self.gta[self.gta_index[index]]["mel"].float()  # (M, T)
        if mel.shape[-1] != 1 + len(wav) // self.hop:
            raise VoxarDataError(
                f"{self.gta.dump_dir}: GTA mel of {self.utts[index]!r} has {mel.shape[-1]} frames, its audio "
                f"{1 + len(wav) // self.hop} (not the same recording or rate?)"
            )
        n, frames = self.segment_samples, self.segment_samples // self.hop + 1
        rng = np.random.default_rng([self.seed, epoch, index])
        start = int(rng.integers(0, max(0, len(wav) - n) // self.hop + 1)) * self.hop
        crop = wav[start : start + n]
        crop = np.pad(crop, (0, n - len(crop)))
        j = start // self.hop
        seg = mel[:, j : j + frames]
        if seg.shape[-1] < frames:  # the audio ran out: silence
            seg = torch.nn.functional.pad(seg, (0, frames - seg.shape[-1]), value=self.floor)
        use = bool(rng.random() < self.gta_prob)
        return torch.from_numpy(crop.copy()), seg.contiguous(), use
