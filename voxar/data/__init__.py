"""Data layer: Kaldi data directories (read/write/validate/fix/subset/combine), feature dumps, datasets, samplers.

Importing ``voxar.data`` is light; :mod:`voxar.data.dataset` and :mod:`voxar.data.sampler` bring in torch.
"""

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
from voxar.data.validate import Problem, validate_data_dir

__all__ = [
    "KaldiDir",
    "Problem",
    "combine_data_dirs",
    "fix_data_dir",
    "read_data_dir",
    "read_kv",
    "subset_data_dir",
    "validate_data_dir",
    "write_data_dir",
    "write_kv",
]
