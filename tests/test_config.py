"""Dataclass configs: YAML feeds them, unknown keys and wrong types are errors, round trips are exact."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from voxar.config import apply_overrides, from_dict, load_config, save_config, to_dict
from voxar.errors import VoxarConfigError


@dataclass
class Inner:
    dim: int = 16
    dropout: float = 0.1
    kind: str = "mlp"


@dataclass
class Outer:
    name: str = "tiny"
    layers: list[int] = field(default_factory=lambda: [1, 2])
    inner: Inner = field(default_factory=Inner)
    lr: float | None = None
    flag: bool = False


def test_round_trip_through_yaml(tmp_path):
    cfg = Outer(name="x", layers=[3], inner=Inner(dim=32), lr=1e-3, flag=True)
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(Outer, tmp_path / "config.yaml") == cfg
    assert not list(tmp_path.glob("*.tmp"))


def test_unknown_key_is_error_naming_the_key():
    with pytest.raises(VoxarConfigError, match="unknown key.*bogus"):
        from_dict(Outer, {"bogus": 1})
    with pytest.raises(VoxarConfigError, match=r"inner.*unknown key.*width"):
        from_dict(Outer, {"inner": {"width": 3}})


@pytest.mark.parametrize(
    "data",
    [{"name": 3}, {"inner": {"dim": "big"}}, {"flag": "yes"}, {"layers": 4}, {"inner": 5}, {"inner": {"dim": 1.5}}],
)
def test_wrong_types_are_errors(data):
    with pytest.raises(VoxarConfigError):
        from_dict(Outer, data)


def test_int_promotes_to_float_and_none_allowed():
    cfg = from_dict(Outer, {"lr": 1, "inner": {"dropout": 0}})
    assert isinstance(cfg.lr, float) and isinstance(cfg.inner.dropout, float)
    assert from_dict(Outer, {"lr": None}).lr is None


def test_overrides_dotted_keys(tmp_path):
    (tmp_path / "c.yaml").write_text("name: base\ninner:\n  dim: 8\n")
    cfg = load_config(Outer, tmp_path / "c.yaml", ["inner.dim=64", "lr=0.5", "layers=[1, 2, 3]"])
    assert cfg.inner.dim == 64 and cfg.lr == 0.5 and cfg.layers == [1, 2, 3] and cfg.name == "base"
    with pytest.raises(VoxarConfigError):
        apply_overrides({}, ["novalue"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(VoxarConfigError, match="not found"):
        load_config(Outer, tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(VoxarConfigError, match="invalid YAML"):
        load_config(Outer, tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(VoxarConfigError, match="mapping"):
        load_config(Outer, tmp_path / "list.yaml")


def test_to_dict_is_plain():
    d = to_dict(Outer())
    assert d == {
        "name": "tiny",
        "layers": [1, 2],
        "inner": {"dim": 16, "dropout": 0.1, "kind": "mlp"},
        "lr": None,
        "flag": False,
    }


def test_yaml_exponent_strings_are_numbers(tmp_path):
    (tmp_path / "c.yaml").write_text("lr: 3e-4\n")
    assert load_config(Outer, tmp_path / "c.yaml").lr == 3e-4
    with pytest.raises(VoxarConfigError, match="expected a number"):
        from_dict(Outer, {"lr": "fast"})
