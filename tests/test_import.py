"""``import voxar`` and ``voxar --help`` work with core dependencies only (no live/eval/train/vocos extras)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

EXTRAS = [
    "sounddevice",
    "pocketsphinx",
    "resemblyzer",
    "jiwer",
    "speechmos",
    "pyworld",
    "matplotlib",
    "tensorboard",
    "vocos",
    "encodec",
    "torchaudio",
]

CORE_MODULES = [
    "voxar",
    "voxar.cli",
    "voxar.audio",
    "voxar.text",
    "voxar.data",
    "voxar.config",
    "voxar.train",
    "voxar.models.vocoder",
    "voxar.eval",
]

BLOCKER = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder
    BLOCKED = set({blocked!r})
    class Block(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by test)")
            return None
    sys.meta_path.insert(0, Block())
    for mod in list(sys.modules):
        assert mod.split(".")[0] not in BLOCKED, mod
    """
)


def _run(body: str) -> subprocess.CompletedProcess:
    code = BLOCKER.format(blocked=EXTRAS) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))


def test_import_voxar_with_core_deps_only():
    r = _run(
        """
        import voxar, voxar.cli, voxar.config
        print(voxar.__version__)
        """
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("argv", [["--help"], ["data", "--help"], ["info"]])
def test_cli_with_core_deps_only(argv):
    r = _run(
        f"""
        sys.argv = ["voxar", *{argv!r}]
        from voxar.cli import main
        try:
            main()
        except SystemExit as e:
            assert e.code in (0, None), e.code
        """
    )
    assert r.returncode == 0, r.stderr


def test_core_modules_do_not_import_extras():
    """Importing each core subpackage must not pull an optional extra (or torchaudio) into sys.modules."""
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, importlib\n"
            f"for m in {CORE_MODULES!r}:\n"
            "    importlib.import_module(m)\n"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {EXTRAS!r})\n"
            "assert not bad, bad\n",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
