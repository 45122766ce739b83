"""Dataclass configs fed from YAML: the dataclass is the single source of truth.

``from_dict`` rejects unknown keys and wrong types, recursing into nested dataclasses; ``to_dict`` gives plain
YAML-safe values so configs can be stored next to weights (``config.yaml`` + ``model.safetensors``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from voxar.errors import VoxarConfigError

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass instance as nested plain dicts/lists (tuples become lists)."""
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"expected a dataclass instance, got {type(cfg).__name__}")
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, *, where: str = "") -> T:
    """Build ``cls`` from ``data``; unknown keys and type mismatches raise :class:`VoxarConfigError`."""
    name = where or cls.__name__
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise VoxarConfigError(f"{name}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise VoxarConfigError(f"{name}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {key: _coerce(hints[key], value, f"{name}.{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise VoxarConfigError(f"{name}: {e}") from e


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except VoxarConfigError as e:
                errors.append(str(e))
        raise VoxarConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise VoxarConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise VoxarConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is Any or origin is typing.Literal:
        if origin is typing.Literal and value not in typing.get_args(tp):
            raise VoxarConfigError(f"{where}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise VoxarConfigError(f"{where}: expected a number, got {value!r}")
    if tp is bool:
        if not isinstance(value, bool):
            raise VoxarConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp in (int, str) and not (isinstance(value, tp) and not isinstance(value, bool)):
        raise VoxarConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is a :class:`VoxarConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise VoxarConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise VoxarConfigError(f"{path}: invalid YAML ({e})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VoxarConfigError(f"{path}: expected a mapping at top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML scalars) to a nested dict, returning a copy."""
    out = _plain(data)
    for item in overrides or []:
        if "=" not in item:
            raise VoxarConfigError(f"override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise VoxarConfigError(f"override {item!r}: {part} is not a mapping")
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def load_config(cls: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    """``cls`` from a YAML file plus dotted overrides."""
    return from_dict(cls, apply_overrides(load_yaml(path), overrides), where=str(path))


def save_config(cfg: Any, path: str | Path) -> None:
    """Write a dataclass config as YAML (atomically: a temp file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
    tmp.replace(path)
