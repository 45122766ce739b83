"""The CLI skeleton: version, help, one-line errors, device listing through real PortAudio (ALSA file PCMs)."""

from __future__ import annotations

import json
import textwrap

from conftest import run_voxar

from voxar import __version__


def test_version():
    r = run_voxar("--version")
    assert r.returncode == 0
    assert r.stdout.decode().strip() == f"voxar {__version__}"


def test_help_lists_registered_commands():
    r = run_voxar("--help")
    assert r.returncode == 0
    out = r.stdout.decode()
    for cmd in ("devices", "info", "data"):
        assert cmd in out


def test_no_args_shows_help():
    r = run_voxar()
    assert "Usage" in (r.stdout + r.stderr).decode()


def test_info_json_is_valid_and_checks_extras():
    r = run_voxar("info", "--json")
    assert r.returncode == 0, r.stderr.decode()
    data = json.loads(r.stdout)
    assert data["voxar"] == __version__
    assert set(data["extras"]) == {"live", "eval", "train", "vocos"}


def test_devices_lists_alsa_file_pcms(alsa_file_devices):
    env, _, _ = alsa_file_devices
    r = run_voxar("devices", "--json", env=env)
    assert r.returncode == 0, r.stderr.decode()
    names = [d["name"] for d in json.loads(r.stdout)]
    assert "voxar_mic" in names and "voxar_spk" in names


def test_find_device_by_name_and_index(alsa_file_devices, monkeypatch):
    env, _, _ = alsa_file_devices
    code = textwrap.dedent(
        """
        from voxar.devices import find_device, VoxarDeviceError
        i = find_device("voxar_mic", "input")
        assert find_device(str(i), "input") == i
        assert find_device(None, "output") is None
        try:
            find_device("no-such-device", "output")
        except VoxarDeviceError as e:
            print("ERR", e)
        """
    )
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, env={**__import__("os").environ, **env})
    assert r.returncode == 0, r.stderr.decode()
    assert "ERR no output device matches 'no-such-device'" in r.stdout.decode()


def _blocked_run(blocked: list[str], *argv: str):
    """Run the CLI in a subprocess where importing any module in ``blocked`` fails as if it were not installed."""
    import os
    import subprocess
    import sys

    code = textwrap.dedent(
        f"""
        import sys
        from importlib.abc import MetaPathFinder
        BLOCKED = {blocked!r}
        class Block(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}}")
                return None
        sys.meta_path.insert(0, Block())
        sys.argv = ["voxar", *{list(argv)!r}]
        from voxar.cli import main
        main()
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, env=dict(os.environ))


def test_devices_without_sounddevice_is_one_line_error():
    r = _blocked_run(["sounddevice"], "devices")
    assert r.returncode == 1
    err = r.stderr.decode().strip()
    assert err.startswith("voxar: error: sounddevice is not installed")
    assert "Traceback" not in err and len(err.splitlines()) == 1


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_bad_audio_files_give_one_line_errors_naming_the_file(tmp_path):
    import numpy as np
    import soundfile as sf

    corrupt = _write(tmp_path / "corrupt.wav", b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    missing = tmp_path / "missing.wav"
    for path in (corrupt, empty, silent, missing):
        r = run_voxar("audio", "info", str(path))
        err = r.stderr.decode().strip()
        assert r.returncode == 1, err
        assert "Traceback" not in err
        assert len(err.splitlines()) == 1, err
        assert err.startswith("voxar: error: ") and str(path) in err


def test_audio_info_and_convert(tmp_path):
    import numpy as np
    import soundfile as sf

    t = np.arange(32000) / 32000
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)], axis=1)
    src = tmp_path / "in.flac"
    sf.write(src, stereo.astype(np.float32), 32000)
    r = run_voxar("audio", "info", "--json", str(src))
    assert r.returncode == 0, r.stderr.decode()
    row = json.loads(r.stdout)
    assert row["sample_rate"] == 32000 and row["channels"] == 2 and abs(row["seconds"] - 1.0) < 1e-3
    dst = tmp_path / "out.wav"
    r = run_voxar("audio", "convert", str(src), str(dst), "--sr", "16000", "--peak", "-3")
    assert r.returncode == 0, r.stderr.decode()
    wav, sr = sf.read(dst)
    assert sr == 16000 and wav.ndim == 1 and abs(len(wav) - 16000) <= 1
    assert abs(20 * np.log10(np.abs(wav).max()) + 3) < 0.1


def test_logging_follows_current_stderr(monkeypatch, capsys):
    """setup_logging must not keep writing to a stderr that was replaced and closed (e.g. by a test runner)."""
    import io
    import logging

    from voxar.log import setup_logging

    old = io.StringIO()
    monkeypatch.setattr("sys.stderr", old)
    setup_logging()
    old.close()
    new = io.StringIO()
    monkeypatch.setattr("sys.stderr", new)
    logging.getLogger("voxar.test").info("hello after swap")
    assert "hello after swap" in new.getvalue()
    assert "Logging error" not in new.getvalue()
