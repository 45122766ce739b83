"""Shared pytest fixtures. Test audio is synthesised in code; nothing is downloaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# `make test` runs the suite on pytest-xdist workers (one per core). Each worker, and every subprocess it starts,
# keeps to one intra-op torch thread: two workers with two spinning OpenMP threads each would oversubscribe 2 cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def run_voxar(*args: str, env: dict[str, str] | None = None, input: bytes | None = None, timeout: float = 120):
    """Run ``python -m voxar ARGS`` in a subprocess; returns the CompletedProcess (bytes stdout/stderr)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "voxar", *args], capture_output=True, env=full_env, input=input, timeout=timeout
    )


def randomize_vocoder(model, seed: int = 0):
    """Random vocoder weights at a scale where every parameter (norms and layer scale too) visibly shapes the
    output (the default init is nearly an identity). Returns the model in eval mode."""
    import math

    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("gamma"):
                p.copy_(0.4 + 0.1 * noise)
            elif "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * noise)
            elif p.dim() > 1:
                p.copy_(noise / math.sqrt(p[0].numel()))
            else:
                p.copy_(0.1 * noise)
    return model.eval()


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test: tiny models only pay overhead for more (10x on a busy 2-core
    machine). Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def alsa_file_devices(tmp_path):
    """A HOME whose .asoundrc defines two ALSA ``type file`` PCMs: ``voxar_mic`` (capture from a raw file) and
    ``voxar_spk`` (playback into a raw file). PortAudio lists them as real devices, so live-audio code runs without
    a sound card. Yields (env, mic_raw_path, speaker_raw_path); the mic file holds 1 s of silence at 16 kHz s16le.
    """
    home = tmp_path / "home"
    home.mkdir()
    mic = tmp_path / "mic.raw"
    spk = tmp_path / "spk.raw"
    mic.write_bytes(b"\x00\x00" * 16000)
    (home / ".asoundrc").write_text(
        f"""
pcm.voxar_mic {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{mic}"
    format "raw"
    hint {{ show on description "voxar test microphone" }}
}}
pcm.voxar_spk {{
    type file
    slave.pcm "null"
    file "{spk}"
    format "raw"
    hint {{ show on description "voxar test speaker" }}
}}
"""
    )
    yield {"HOME": str(home)}, mic, spk
