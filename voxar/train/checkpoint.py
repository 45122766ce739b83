"""Training checkpoints: pickle-free, atomic, resumable and averageable.

A checkpoint is a dict of tensors and plain containers only, so it loads with ``torch.load(weights_only=True)``::

    {version, step, epoch, model, ema, optimizers: {name: state}, schedulers: {name: state}, config (plain dict),
     model_class ("voxar.models.vocoder:Vocoder"), model_config (plain dict), rng: {world_size, states: [...]},
     extra: {...}}

:func:`save_checkpoint` writes ``<exp>/checkpoint-<step>.pt`` through a temp file (fsync + ``os.replace``), then points
``<exp>/last.pt`` at it (a hard link, or a copy, also renamed into place), then deletes all but the newest
``keep_last`` numbered checkpoints. A crash at any moment leaves the previous ``last.pt`` intact.
:func:`find_resume` picks the file to resume from, :func:`load_checkpoint` reads and checks it (a corrupt file or a
different model config is a :class:`~voxar.errors.VoxarError` naming the problem) and :func:`restore_checkpoint`
puts its state back into live objects. :func:`average_checkpoints` averages the weights of several checkpoints.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import pickle
import random
import re
import shutil
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxar.errors import VoxarConfigError, VoxarError
from voxar.train import distributed as D
from voxar.train.ema import EMA

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
LAST = "last.pt"
_NUMBERED = re.compile(r"^checkpoint-(\d+)\.pt$")
_PLAIN = (str, int, float, bool, type(None))


# ----------------------------------------------------------------------------------------------------- RNG states


def rng_state() -> dict[str, torch.Tensor]:
    """This process's Python, numpy, torch (and CUDA) generator states, as tensors."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
        "numpy_meta": torch.tensor([np_pos, np_has_gauss, np_gauss], dtype=torch.float64),
        "python_state": torch.tensor(py_state, dtype=torch.int64),
        "python_meta": torch.tensor(
            [py_version, 0.0 if py_gauss is None else 1.0, py_gauss or 0.0], dtype=torch.float64
        ),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())  # (n_devices, L) uint8
    return state


def set_rng_state(state: Mapping[str, torch.Tensor]) -> None:
    """Restore generator states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    keys = state["numpy_keys"].cpu().numpy().astype(np.uint32)
    pos, has_gauss, gauss = state["numpy_meta"].tolist()
    np.random.set_state(("MT19937", keys, int(pos), int(has_gauss), float(gauss)))
    version, has_py_gauss, py_gauss = state["python_meta"].tolist()
    py_state = tuple(int(v) for v in state["python_state"].tolist())
    random.setstate((int(version), py_state, py_gauss if has_py_gauss else None))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"].cpu()
        if cuda.shape[0] == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(list(cuda))


def gather_rng_states() -> dict[str, Any]:
    """Every rank's :func:`rng_state` (a collective: call it on all ranks), as ``{world_size, states: [...]}``."""
    local = rng_state()
    world = D.get_world_size()
    if world == 1:
        return {"world_size": 1, "states": [local]}
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    states: list[dict[str, torch.Tensor]] = [{} for _ in range(world)]
    for key in sorted(local):
        t = local[key].to(device) if device is not None else local[key]
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t.contiguous())
        for r, part in enumerate(parts):
            states[r][key] = part.cpu()
    return {"world_size": world, "states": states}


def restore_rng_states(rng: Mapping[str, Any], rank: int = 0, world_size: int = 1) -> None:
    """Restore this rank's generator state from :func:`gather_rng_states`'s output (warns if the world changed)."""
    states = rng.get("states") or []
    if int(rng.get("world_size", len(states))) != world_size:
        logger.warning(
            "checkpoint was written by %s process(es), now %d: random streams will differ from an uninterrupted run",
            rng.get("world_size"),
            world_size,
        )
    if rank < len(states):
        set_rng_state(states[rank])


# --------------------------------------------------------------------------------------------- building and saving


def _check_plain(obj: Any, where: str = "checkpoint") -> None:
    """Raise TypeError unless ``obj`` holds only tensors, dicts (str/int keys), lists, tuples and scalars."""
    if torch.is_tensor(obj) or isinstance(obj, _PLAIN):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} of type {type(k).__name__} cannot be loaded with weights_only")
            _check_plain(v, f"{where}.{k}")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: {type(obj).__name__} cannot be loaded with weights_only (use tensors/plain values)")


def class_path(obj: Any) -> str:
    """``"module:QualName"`` of ``obj``'s class (of the bare module for DDP wrappers)."""
    cls = type(D.unwrap(obj)) if isinstance(obj, torch.nn.Module) else type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def make_checkpoint(
    *,
    step: int,
    model: torch.nn.Module,
    epoch: int = 0,
    config: Mapping[str, Any] | None = None,
    model_config: Mapping[str, Any] | None = None,
    ema: EMA | None = None,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    schedulers: Mapping[str, Any] | None = None,
    rng: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict for the current training state.

    ``config`` is the whole training config and ``model_config`` the model's own (both plain dicts, e.g. from
    :func:`voxar.config.to_dict`). ``rng`` defaults to this process's generator states; in DDP runs pass
    :func:`gather_rng_states` (called on every rank) so each rank resumes its own random stream.
    """
    return {
        "version": CHECKPOINT_VERSION,
        "step": int(step),
        "epoch": int(epoch),
        "model": D.unwrap(model).state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizers": {k: v.state_dict() for k, v in (optimizers or {}).items()},
        "schedulers": {k: v.state_dict() for k, v in (schedulers or {}).items()},
        "config": dict(config or {}),
        "model_class": class_path(model),
        "model_config": dict(model_config) if model_config is not None else None,
        "rng": dict(rng) if rng is not None else {"world_size": 1, "states": [rng_state()]},
        "extra": dict(extra or {}),
    }


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` via a temp file in the same directory, fsync and ``os.replace``.

    On any failure the temp file is removed and an existing ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _point_last(src: Path, last: Path) -> None:
    """Make ``last`` hold the same bytes as ``src``: a hard link (or a copy) renamed over ``last``."""
    tmp = last.with_name(f".{last.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, last)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(last.parent)


def list_checkpoints(exp_dir: str | Path) -> list[Path]:
    """``checkpoint-<step>.pt`` files of ``exp_dir``, oldest (smallest step) first."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in exp_dir.iterdir() if (m := _NUMBERED.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def save_checkpoint(exp_dir: str | Path, ckpt: Mapping[str, Any], *, keep_last: int | None = None) -> Path:
    """Write ``ckpt`` as ``exp_dir/checkpoint-<step>.pt``, update ``exp_dir/last.pt`` and prune old checkpoints.

    Everything is atomic (see the module docstring). ``keep_last`` None or 0 keeps every numbered checkpoint.
    Returns the path of the numbered checkpoint. Raises TypeError if ``ckpt`` holds anything but tensors and
    plain values (it could not be loaded with ``weights_only=True``).
    """
    exp_dir = Path(exp_dir)
    _check_plain(ckpt)
    for stale in exp_dir.glob(".*.pt.tmp*") if exp_dir.is_dir() else []:  # left by a process killed mid-save
        if not stale.name.endswith(f".tmp{os.getpid()}"):
            stale.unlink(missing_ok=True)
    path = atomic_save(dict(ckpt), exp_dir / f"checkpoint-{int(ckpt['step'])}.pt")
    _point_last(path, exp_dir / LAST)
    if keep_last:
        for old in list_checkpoints(exp_dir)[:-keep_last]:
            if old != path:
                old.unlink(missing_ok=True)
                logger.debug("removed old checkpoint %s", old)
    logger.info("saved checkpoint %s", path)
    return path


# ------------------------------------------------------------------------------------------------------- loading


def find_resume(exp_dir: str | Path) -> Path | None:
    """The checkpoint to resume from: ``last.pt`` if present, else the newest ``checkpoint-<step>.pt``, else None."""
    exp_dir = Path(exp_dir)
    if (exp_dir / LAST).is_file():
        return exp_dir / LAST
    numbered = list_checkpoints(exp_dir)
    return numbered[-1] if numbered else None


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(d, tuple):
        d = list(d)
    return {prefix: d}


def config_diff(saved: Mapping[str, Any], current: Mapping[str, Any], keys: Sequence[str] | None = None) -> list[str]:
    """Dotted keys whose values differ between two plain config dicts (restricted to ``keys`` subtrees if given)."""
    a, b = _flatten(saved), _flatten(current)

    def wanted(k: str) -> bool:
        return keys is None or any(k == p or k.startswith(p + ".") for p in keys)

    return sorted(k for k in set(a) | set(b) if wanted(k) and a.get(k, "<absent>") != b.get(k, "<absent>"))


def check_config_match(
    saved: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    keys: Sequence[str] | None = ("model",),
    where: str = "",
    ignore: Sequence[str] = (),
) -> None:
    """Raise :class:`VoxarConfigError` naming the differing keys when ``saved`` and ``current`` disagree under
    ``keys`` (None compares everything), except the dotted keys in ``ignore`` (settings that do not change training,
    e.g. a head's sampling temperature, absent from older checkpoints too). Differences elsewhere (e.g.
    ``max_steps``) are only logged."""
    skip = set(ignore)
    diff = [k for k in config_diff(saved, current, keys) if k not in skip]
    if diff:
        a, b = _flatten(saved), _flatten(current)
        shown = ", ".join(f"{k} (checkpoint {a.get(k, '<absent>')!r}, now {b.get(k, '<absent>')!r})" for k in diff[:8])
        more = f" and {len(diff) - 8} more" if len(diff) > 8 else ""
        raise VoxarConfigError(f"{where or 'checkpoint'}: config differs from the checkpoint's in {shown}{more}")
    other = config_diff(saved, current, None)
    if other:
        logger.info("%s: config changed since the checkpoint in %s", where or "checkpoint", ", ".join(other))


def load_checkpoint(
    path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    expect_config: Mapping[str, Any] | None = None,
    compare_keys: Sequence[str] | None = ("model",),
    ignore_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check it.

    Raises :class:`VoxarError` for a missing, truncated, corrupt or non-voxar file, and :class:`VoxarConfigError`
    when ``expect_config`` (a plain dict) differs from the stored config under ``compare_keys`` (``ignore_keys``
    excepted, see :func:`check_config_match`).
    """
    path = Path(path)
    if not path.is_file():
        raise VoxarError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VoxarError(f"{path}: not a loadable voxar checkpoint ({first})") from e
    except Exception as e:  # truncated zip, bad magic number, I/O errors... all mean the same to the user
        raise VoxarError(f"{path}: checkpoint is corrupt or truncated ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "step" not in ckpt:
        raise VoxarError(f"{path}: not a voxar training checkpoint (no 'model'/'step' entries)")
    version = int(ckpt.get("version", 0))
    if version > CHECKPOINT_VERSION:
        raise VoxarError(f"{path}: checkpoint format {version} is newer than this voxar ({CHECKPOINT_VERSION})")
    if expect_config is not None:
        check_config_match(
            ckpt.get("config") or {}, expect_config, keys=compare_keys, where=str(path), ignore=ignore_keys
        )
    return ckpt


def restore_checkpoint(
    ckpt: Mapping[str, Any],
    *,
    model: torch.nn.Module,
    ema: EMA | None = None,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    schedulers: Mapping[str, Any] | None = None,
    rng: bool = True,
    where: str = "checkpoint",
) -> tuple[int, int]:
    """Load ``ckpt``'s states into live objects; returns ``(step, epoch)``.

    Weight-name or shape mismatches raise :class:`VoxarConfigError`. With ``rng`` this rank's generator states are
    restored too (call it after the model is built and wrapped, right before the training loop).
    """
    try:
        D.unwrap(model).load_state_dict(ckpt["model"])
        if ema is not None:
            if ckpt.get("ema") is None:
                raise ValueError("it holds no EMA weights")
            ema.load_state_dict(ckpt["ema"])
        for name, opt in (optimizers or {}).items():
            if name not in ckpt.get("optimizers", {}):
                raise ValueError(f"it holds no state for optimizer {name!r}")
            opt.load_state_dict(ckpt["optimizers"][name])
        for name, sched in (schedulers or {}).items():
            if name not in ckpt.get("schedulers", {}):
                raise ValueError(f"it holds no state for scheduler {name!r}")
            sched.load_state_dict(ckpt["schedulers"][name])
    except (RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0]
        raise VoxarConfigError(f"{where}: does not match the model being trained ({first})") from e
    if rng and ckpt.get("rng"):
        restore_rng_states(ckpt["rng"], D.get_rank(), D.get_world_size())
    return int(ckpt["step"]), int(ckpt.get("epoch", 0))


# ------------------------------------------------------------------------------------------------------ averaging


def _weights(ckpt: Mapping[str, Any], key: str, where: str) -> dict[str, torch.Tensor]:
    if key == "ema":
        if not ckpt.get("ema"):
            raise VoxarError(f"{where}: holds no EMA weights")
        return ckpt["ema"]["shadow"]
    if key != "model":
        raise ValueError(f"key must be 'model' or 'ema', got {key!r}")
    return ckpt["model"]


def average_checkpoints(paths: Iterable[str | Path], *, key: str = "model") -> dict[str, torch.Tensor]:
    """Element-wise mean of the ``key`` weights ("model" or "ema") of several checkpoints.

    Floating-point tensors are averaged in float64 and cast back to their dtype; integer tensors (counters) are
    taken from the last checkpoint. Checkpoints with different weight names or shapes raise :class:`VoxarError`.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise VoxarError("average_checkpoints: no checkpoints given")
    total: dict[str, torch.Tensor] = {}
    last: dict[str, torch.Tensor] = {}
    for path in paths:
        weights = _weights(load_checkpoint(path), key, str(path))
        if total and set(weights) != set(total):
            diff = sorted(set(weights) ^ set(total))
            raise VoxarError(f"{path}: weight names differ from {paths[0]} ({', '.join(diff[:5])})")
        for name, value in weights.items():
            if name in total and total[name].shape != value.shape:
                shapes = f"{tuple(value.shape)} vs {tuple(total[name].shape)} in {paths[0]}"
                raise VoxarError(f"{path}: weight {name} has a different shape ({shapes})")
            if value.is_floating_point():
                total[name] = total[name] + value.double() if name in total else value.double()
            else:
                total[name] = value
            last[name] = value
    return {
        name: (total[name] / len(paths)).to(last[name].dtype) if last[name].is_floating_point() else last[name]
        for name in total
    }


def resolve_model_class(spec: str) -> tuple[type, type]:
    """``(model_class, config_class)`` of a checkpoint's ``model_class`` (``"voxar.x.y:Name"``).

    Only voxar classes are imported. The config class is ``model_class.config_class`` when defined, else the
    dataclass annotating the first argument of ``__init__``.
    """
    module_name, _, name = spec.partition(":")
    if not module_name.startswith("voxar.") or not name:
        raise VoxarError(f"checkpoint names model class {spec!r}; only voxar model classes can be rebuilt")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise VoxarError(f"cannot import model class {spec!r} ({e})") from e
    cfg_cls = getattr(cls, "config_class", None)
    if cfg_cls is None:
        params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        hints = typing.get_type_hints(cls.__init__)
        cfg_cls = hints.get(params[0]) if params else None
        if typing.get_origin(cfg_cls) is not None:  # Optional[Config] -> Config
            cfg_cls = next((a for a in typing.get_args(cfg_cls) if is_dataclass(a)), None)
    if cfg_cls is None or not is_dataclass(cfg_cls):
        raise VoxarError(f"cannot tell the config class of {spec!r}")
    return cls, cfg_cls


def build_model(ckpt: Mapping[str, Any], state: Mapping[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """Rebuild the checkpoint's model on the CPU (from ``model_class``/``model_config``) and load ``state`` (by
    default the checkpoint's own weights) into it."""
    from voxar.config import from_dict

    if not ckpt.get("model_class") or ckpt.get("model_config") is None:
        raise VoxarError("checkpoint does not record its model class/config; cannot rebuild the model")
    cls, cfg_cls = resolve_model_class(ckpt["model_class"])
    model = cls(from_dict(cfg_cls, dict(ckpt["model_config"])))
    model.load_state_dict(dict(state if state is not None else ckpt["model"]))
    return model.eval()
