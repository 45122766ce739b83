"""Release artifact: a model directory with ``config.yaml`` + ``model.safetensors`` (+ optional extra files).

``config.yaml`` is a small header around the model's dataclass config::

    format: voxar-model
    version: 1
    kind: vocoder            # what the directory holds ("vocoder", "tts", "vc", ...)
    config: {...}            # the dataclass as plain YAML (voxar.config.to_dict)

Saving is atomic (written into a temporary sibling directory, then renamed into place). Loading validates every
part and raises :class:`VoxarConfigError` with a one-line message naming the directory and the problem.
No pickles are read: weights are safetensors, the header is ``yaml.safe_load``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml
from torch import nn

from voxar.config import from_dict, to_dict
from voxar.errors import VoxarConfigError

log = logging.getLogger(__name__)

FORMAT = "voxar-model"
VERSION = 1
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
_SHOW = 5  # how many offending keys an error lists

C = TypeVar("C")


def save_model_dir(
    model: nn.Module,
    config: Any,
    kind: str,
    path: str | Path,
    extra_files: dict[str, bytes | str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` (its ``state_dict``) and ``config`` (a dataclass) as a model directory at ``path``.

    ``extra_files`` maps plain file names to contents (str is written as UTF-8). An existing ``path`` is replaced
    only with ``overwrite=True``. Returns ``path``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise VoxarConfigError(f"{path}: already exists (pass overwrite=True to replace it)")
    if path.exists() and not path.is_dir():
        raise VoxarConfigError(f"{path}: exists and is not a directory")
    extra_files = dict(extra_files or {})
    for name in extra_files:
        if not name or Path(name).name != name or name in (CONFIG_FILE, WEIGHTS_FILE) or name.startswith("."):
            raise VoxarConfigError(f"{path}: bad extra file name {name!r} (a plain name, not {CONFIG_FILE!r} etc.)")
    header = {"format": FORMAT, "version": VERSION, "kind": kind, "config": to_dict(config)}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}

    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a model dir is meant to be shared
    try:
        (tmp / CONFIG_FILE).write_text(yaml.safe_dump(header, sort_keys=False), encoding="utf-8")
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "kind": kind})
        os.chmod(tmp / WEIGHTS_FILE, 0o644)  # safetensors writes 0600; model files are meant to be shared
        for name, content in extra_files.items():
            data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
            (tmp / name).write_bytes(data)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("saved %s model to %s (%d tensors)", kind, path, len(tensors))
    return path


def read_model_header(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The validated ``config.yaml`` header of a model directory (checks format, version and, if given, kind)."""
    path = Path(path)
    if not path.is_dir():
        raise VoxarConfigError(f"{path}: model directory not found")
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        raise VoxarConfigError(f"{path}: not a voxar model directory ({CONFIG_FILE} is missing)")
    try:
        header = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise VoxarConfigError(f"{cfg_file}: unreadable YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise VoxarConfigError(f"{cfg_file}: not a voxar model config (expected 'format: {FORMAT}')")
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION or version < 1:
        raise VoxarConfigError(f"{cfg_file}: unsupported format version {version!r} (this voxar reads {VERSION})")
    unknown = sorted(set(header) - {"format", "version", "kind", "config"})
    if unknown:
        raise VoxarConfigError(f"{cfg_file}: unknown header key(s) {', '.join(map(str, unknown))}")
    if kind is not None and header.get("kind") != kind:
        raise VoxarConfigError(f"{path}: holds a {header.get('kind')!r} model, expected a {kind!r} model")
    if not isinstance(header.get("config"), dict):
        raise VoxarConfigError(f"{cfg_file}: 'config' must be a mapping")
    return header


def load_model_dir(
    path: str | Path,
    kind: str,
    config_cls: type[C],
    build_fn: Callable[[C], nn.Module],
    device: str | torch.device = "cpu",
    expect: dict[str, Any] | None = None,
) -> tuple[nn.Module, C]:
    """Load a model directory: ``(build_fn(cfg) with the weights loaded, in eval mode on device, cfg)``.

    ``expect`` maps config fields to required values (e.g. ``{"preset": "16k"}``); a mismatch is an error naming
    both values. Unknown config keys, missing/unexpected weights and shape mismatches are errors too.
    """
    path = Path(path)
    header = read_model_header(path, kind)
    cfg = from_dict(config_cls, header["config"], where=f"{path / CONFIG_FILE}: config")
    for key, value in (expect or {}).items():
        actual = getattr(cfg, key)
        if actual != value:
            raise VoxarConfigError(f"{path}: this {kind} is for {key} {actual!r}, but {key} {value!r} is expected")
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise VoxarConfigError(f"{path}: {WEIGHTS_FILE} is missing")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise VoxarConfigError(f"{weights}: cannot read weights ({str(e).splitlines()[0]})") from e
    model = build_fn(cfg)
    check_state_dict(model, state, where=str(weights))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), cfg


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Raise :class:`VoxarConfigError` listing the first missing, unexpected or wrongly shaped weights."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    for what, items in (("missing weights", missing), ("unexpected weights", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
            problems.append(f"{what}: {', '.join(items[:_SHOW])}{more}")
    if problems:
        raise VoxarConfigError(f"{where}: weights do not match the config: {'; '.join(problems)}")
