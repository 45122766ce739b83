"""Installing packed models as the package defaults: fp16 weights that load, the size budget, the default voice."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from voxar.bin.install_defaults import main


@pytest.fixture
def pack(tmp_path):
    from voxar.models.content import ContentConfig, ContentEncoder
    from voxar.models.vocoder import Vocoder, VocoderConfig

    torch.manual_seed(0)
    p = tmp_path / "pack"
    Vocoder(VocoderConfig.named("tiny", causal=True)).save_pretrained(p / "vocoder")
    ContentEncoder(ContentConfig.named("tiny")).save_pretrained(p / "content")
    return p


def test_install_fp16_models_and_voice(pack, tmp_path):
    from voxar.models.vocoder import Vocoder

    t = np.arange(3 * 22050) / 22050
    sf.write(tmp_path / "voice.wav", 0.3 * np.sin(2 * np.pi * 150 * t), 22050)
    dest = tmp_path / "assets"
    assert main(["--pack", str(pack), "--voice", str(tmp_path / "voice.wav"), "--dest", str(dest)]) == 0
    src = (pack / "vocoder" / "model.safetensors").stat().st_size
    got = (dest / "models" / "vocoder" / "model.safetensors").stat().st_size
    assert got < 0.6 * src  # float16
    a = Vocoder.from_pretrained(pack / "vocoder")
    b = Vocoder.from_pretrained(dest / "models" / "vocoder")
    mel = torch.randn(1, 80, 20) - 4
    with torch.no_grad():
        np.testing.assert_allclose(b(mel).numpy(), a(mel).numpy(), atol=2e-2)
    assert all(p.dtype == torch.float32 for p in b.parameters())
    info = sf.info(dest / "voices" / "default.wav")
    assert info.samplerate == 16000 and info.channels == 1 and abs(info.duration - 3.0) < 0.01


def test_install_refuses_over_budget_and_keeps_old(pack, tmp_path):
    dest = tmp_path / "assets"
    assert main(["--pack", str(pack), "--dest", str(dest)]) == 0
    before = (dest / "models" / "vocoder" / "model.safetensors").read_bytes()
    assert main(["--pack", str(pack), "--dest", str(dest), "--max-mb", "0.1", "--no-fp16"]) == 1
    assert (dest / "models" / "vocoder" / "model.safetensors").read_bytes() == before
    assert main(["--pack", str(tmp_path / "nothing"), "--dest", str(dest)]) == 1
