"""Length-bucketed dynamic batching with a padded-frame budget, deterministic per epoch and DDP-aware.

Each epoch (seeded by ``seed + epoch``): items are sorted by length and cut into ``num_buckets`` buckets of equal
count; inside a bucket the order is shuffled and items are added to the current batch while
``max_len * batch_size <= max_frames`` (the padded size of the batch); the batches of all buckets are then shuffled
together. Every rank computes the same global batch list and takes batches ``rank, rank + R, ...``; ranks left
with fewer batches repeat some of their own so that all ranks run the same number of steps (or, with
``drop_last``, the extra batches are dropped). Coverage across ranks is disjoint.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence

logger = logging.getLogger(__name__)


class DynamicBatchSampler:
    """Batch sampler yielding lists of dataset indices (pass it as ``DataLoader(batch_sampler=...)``).

    ``lengths[i]`` is the length (frames) of item ``i``. An item longer than ``max_frames`` forms a batch of its
    own (a warning is logged once). ``num_replicas``/``rank`` default to the initialised ``torch.distributed``
    process group, else 1/0. Call :meth:`set_epoch` before each epoch for a new deterministic order.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        *,
        max_frames: int,
        num_buckets: int = 10,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        if num_buckets < 1:
            raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
        if num_replicas is None or rank is None:
            world, me = _dist_world()
            num_replicas = world if num_replicas is None else num_replicas
            rank = me if rank is None else rank
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}")
        self.lengths = [int(n) for n in lengths]
        if any(n < 0 for n in self.lengths):
            raise ValueError("lengths must be >= 0")
        self.max_frames = int(max_frames)
        self.num_buckets = num_buckets
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None
        too_long = sum(n > self.max_frames for n in self.lengths)
        if too_long:
            logger.warning(
                "%d item(s) are longer than max_frames=%d; each forms a batch of its own", too_long, self.max_frames
            )

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffling of ``epoch`` (the same on every rank)."""
        self.epoch = int(epoch)

    def global_batches(self) -> list[list[int]]:
        """All batches of the current epoch, before they are split across ranks."""
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        if self.shuffle:
            rng.shuffle(order)  # random tie-breaking among equal lengths
        order.sort(key=lambda i: self.lengths[i])  # stable sort
        n_buckets = max(1, min(self.num_buckets, len(order)))
        batches: list[list[int]] = []
        for b in range(n_buckets):
            bucket = order[b * len(order) // n_buckets : (b + 1) * len(order) // n_buckets]
            if self.shuffle:
                rng.shuffle(bucket)
            batches.extend(self._fill(bucket))
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def _fill(self, bucket: list[int]) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for i in bucket:
            n = self.lengths[i]
            if n > self.max_frames:
                batches.append([i])
                continue
            new_longest = max(longest, n)
            if current and new_longest * (len(current) + 1) > self.max_frames:
                batches.append(current)
                current, new_longest = [], n
            current.append(i)
            longest = new_longest
        if current:
            batches.append(current)
        return batches

    def _rank_batches(self) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        batches = self.global_batches()
        replicas = self.num_replicas
        if self.drop_last:
            per_rank = len(batches) // replicas
        else:
            per_rank = -(-len(batches) // replicas)  # ceil
        mine = batches[self.rank :: replicas][:per_rank]
        if len(mine) < per_rank:
            # Pad by repeating this rank's own batches, so ranks stay disjoint; a rank with none borrows.
            source = mine if mine else batches
            mine = mine + [source[k % len(source)] for k in range(per_rank - len(mine))]
        self._cache = (self.epoch, mine)
        return mine

    def __iter__(self) -> Iterator[list[int]]:
        yield from (list(batch) for batch in self._rank_batches())

    def __len__(self) -> int:
        return len(self._rank_batches())


def _dist_world() -> tuple[int, int]:
    """``(world_size, rank)`` of the initialised torch.distributed group, else ``(1, 0)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0
