"""Shared training infrastructure for every voxar model (plain PyTorch, nanoGPT shape; no engine library).

- :mod:`voxar.train.distributed`: torchrun environment, process group, DDP wrapping, metric all-reduce.
- :mod:`voxar.train.ema`: exponential moving average of the weights.
- :mod:`voxar.train.checkpoint`: atomic, pickle-free checkpoints; resume; averaging.
- :mod:`voxar.train.schedule`: warm-up + cosine/linear learning-rate schedule.
- :mod:`voxar.train.logger`: JSONL + TensorBoard + tqdm on the main rank.
- :mod:`voxar.train.loop`: seeding, bf16 autocast, graceful SIGINT/SIGTERM handling.

Importing this package needs torch only (TensorBoard is imported when a logger is created).
"""

from voxar.train.checkpoint import (
    average_checkpoints,
    find_resume,
    load_checkpoint,
    make_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from voxar.train.distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed, is_main, wrap_ddp
from voxar.train.ema import EMA
from voxar.train.logger import TrainLogger
from voxar.train.loop import GracefulInterrupt, autocast, set_seed
from voxar.train.schedule import get_lr, lr_factor, lr_lambda

__all__ = [
    "EMA",
    "DistInfo",
    "GracefulInterrupt",
    "TrainLogger",
    "all_reduce_mean",
    "autocast",
    "average_checkpoints",
    "barrier",
    "cleanup",
    "find_resume",
    "get_lr",
    "init_distributed",
    "is_main",
    "load_checkpoint",
    "lr_factor",
    "lr_lambda",
    "make_checkpoint",
    "restore_checkpoint",
    "save_checkpoint",
    "set_seed",
    "wrap_ddp",
]
