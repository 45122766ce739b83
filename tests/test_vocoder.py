"""Vocos-style vocoder: streaming == full pass, causality/lookahead, model dirs, Griffin-Lim, official-layout import."""

from __future__ import annotations

import importlib.util
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import randomize_vocoder

from voxar.config import from_dict
from voxar.errors import VoxarConfigError
from voxar.models.griffinlim import GriffinLimVocoder
from voxar.models.modeldir import load_model_dir, save_model_dir
from voxar.models.vocoder import ISTFT, Vocoder, VocoderConfig
from voxar.modules import run_chunked

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(causal: bool = False, **overrides) -> Vocoder:
    return randomize_vocoder(Vocoder(VocoderConfig.named("tiny", causal=causal, **overrides)))


def _mel(frames: int = 53, batch: int = 2, n_mels: int = 80, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, n_mels, frames, generator=torch.Generator().manual_seed(seed))


def _schedules():
    rng = random.Random(7)
    return [1, 3, 4, 16, [rng.randint(0, 9) for _ in range(12)]]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


# ------------------------------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("causal", [False, True], ids=["noncausal", "causal"])
def test_streaming_equals_full_pass(causal):
    model = _tiny(causal)
    mel = _mel()
    with torch.no_grad():
        full = model(mel)
        assert full.shape == (2, 53 * 160)
        for chunks in _schedules():
            streamed = run_chunked(model, mel, chunks)
            assert streamed.shape == full.shape, chunks
            assert _rel_err(streamed, full) < 1e-5, chunks


@pytest.mark.parametrize("causal", [False, True], ids=["noncausal", "causal"])
def test_declared_lookahead_and_hold_back_are_exact(causal):
    """Frame by frame, exactly num_samples(n - lookahead) - hold_back samples have been emitted."""
    model = _tiny(causal)
    assert model.lookahead == (0 if causal else 3 * (3 + 1))
    assert model.hold_back == (640 - 160) // 2
    mel = _mel(frames=30, batch=1)
    state = model.init_state(1)
    emitted = 0
    with torch.no_grad():
        for n in range(1, 31):
            y, state = model.step(mel[..., n - 1 : n], state)
            emitted += y.shape[-1]
            assert emitted == max(0, model.num_samples(max(0, n - model.lookahead)) - model.hold_back)
        emitted += model.flush(state).shape[-1]
    assert emitted == model.num_samples(30)
    assert model.latency_ms == pytest.approx((model.lookahead * 160 + model.hold_back) / 16)


def test_causal_output_has_no_gradient_from_future_frames():
    model = _tiny(causal=True)
    mel = _mel(frames=30, batch=1).requires_grad_(True)
    wav = model(mel)
    for k in (2, 7, 20):
        (grad,) = torch.autograd.grad(wav[:, : (k + 1) * 160 - model.hold_back].sum(), mel, retain_graph=True)
        per_frame = grad.abs().sum(1)[0]
        assert per_frame[k + 1 :].abs().max() == 0, k
        assert per_frame[k] > 0, k


def test_noncausal_lookahead_is_bounded():
    model = _tiny(causal=False)
    mel = _mel(frames=40, batch=1).requires_grad_(True)
    wav = model(mel)
    for j in (model.lookahead + 2, 30):
        n = (j - model.lookahead) * 160 - model.hold_back
        (grad,) = torch.autograd.grad(wav[:, :n].sum(), mel, retain_graph=True)
        per_frame = grad.abs().sum(1)[0]
        assert per_frame[j:].abs().max() == 0, j
        assert per_frame[j - 1] > 0, j


def test_center_padding_streams_and_matches_torch_istft_length():
    model = randomize_vocoder(Vocoder(VocoderConfig.named("vocos24k", dim=32, intermediate_dim=48, num_layers=2)))
    mel = _mel(frames=21, batch=1, n_mels=100)
    with torch.no_grad():
        full = model(mel)
        assert full.shape == (1, 20 * 256)
        for chunks in (1, 5, [2, 7]):
            assert _rel_err(run_chunked(model, mel, chunks), full) < 1e-5


def test_crossfade_mode_is_close_and_has_the_right_length():
    """The cheaper MeanVC-style mode: no frame lookahead, not exact, but spectrally close for 16-frame chunks."""
    from voxar.audio import LogMelSpectrogram, MelConfig

    model = _tiny(stream_mode="crossfade")
    assert (model.lookahead, model.hold_back) == (0, 320)
    other = randomize_vocoder(Vocoder(VocoderConfig.named("tiny")), seed=5)
    analyse = LogMelSpectrogram(MelConfig.preset("16k"))
    mel = _mel(frames=64, batch=1)
    with torch.no_grad():
        full = _tiny()(mel)  # the exact full pass of the same weights
        dist = {n: (analyse(run_chunked(model, mel, n)) - analyse(full)).abs().mean() for n in (4, 16)}
        baseline = (analyse(other(mel)) - analyse(full)).abs().mean()  # another vocoder on the same mel
        assert run_chunked(model, mel, [5, 11]).shape == full.shape
    assert dist[16] < 0.3 * baseline
    assert dist[16] < dist[4]


def test_forward_under_autocast_stays_float32():
    """The spectrum and ISTFT run in fp32 even under bf16 autocast (as in mixed-precision training)."""
    model = _tiny()
    mel = _mel(frames=12, batch=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        wav = model(mel)
    assert wav.dtype == torch.float32 and wav.shape == (1, 12 * 160)
    assert torch.isfinite(wav).all()


def test_wrong_n_mels_is_a_clear_error():
    model = _tiny()
    with pytest.raises(VoxarConfigError, match=r"vocoder expects 80 mel bins \(preset 16k\), got 100"):
        model(torch.randn(1, 100, 10))
    with pytest.raises(VoxarConfigError, match="expects 80 mel bins"):
        model.step(torch.randn(1, 100, 3), model.init_state(1))


def test_config_validation():
    with pytest.raises(VoxarConfigError, match="unknown key"):
        from_dict(VocoderConfig, {"dim": 64, "dimm": 3})
    with pytest.raises(VoxarConfigError, match="mel bins"):
        VocoderConfig(n_mels=100)  # 16k preset has 80
    with pytest.raises(VoxarConfigError, match="odd"):
        VocoderConfig(kernel_size=6)
    with pytest.raises(VoxarConfigError, match="unknown vocoder size"):
        VocoderConfig.named("huge")
    with pytest.raises(VoxarConfigError, match="crossfade"):
        VocoderConfig(causal=True, stream_mode="crossfade")


def test_parameter_counts():
    def expected(m, d, i, n, k, n_fft):
        block = d * k + d + 2 * d + d * i + i + i * d + d + d
        return m * d * k + d + 2 * d + n * block + 2 * d + d * (n_fft + 2) + n_fft + 2

    assert Vocoder(VocoderConfig.named("tiny")).num_parameters() == expected(80, 128, 384, 3, 7, 640)
    assert Vocoder(VocoderConfig.named("small")).num_parameters() == expected(80, 384, 1152, 8, 7, 640)
    # the published Vocos mel-24khz reports 13.5M parameters
    assert Vocoder(VocoderConfig.named("vocos24k")).num_parameters() == expected(100, 512, 1536, 8, 7, 1024)


# ------------------------------------------------------------------------------------------------- ISTFT
def _istft_same_reference(spec: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Plain-loop overlap-add ISTFT with 'same' cropping, for one (F, T) complex spectrogram."""
    frames = spec.shape[1]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    out = np.zeros((frames - 1) * hop + n_fft)
    env = np.zeros_like(out)
    for t in range(frames):
        out[t * hop : t * hop + n_fft] += np.fft.irfft(spec[:, t], n_fft) * window
        env[t * hop : t * hop + n_fft] += window**2
    pad = (n_fft - hop) // 2
    return out[pad : pad + frames * hop] / env[pad : pad + frames * hop]


def test_istft_same_and_center_match_references():
    spec = torch.randn(2, 321, 12, dtype=torch.complex64)
    same = ISTFT(640, 160, "same")(spec)
    ref = _istft_same_reference(spec[1].numpy().astype(np.complex128), 640, 160)
    np.testing.assert_allclose(same[1].numpy(), ref, rtol=1e-4, atol=1e-5)
    spec = torch.randn(2, 513, 12, dtype=torch.complex64)
    center = ISTFT(1024, 256, "center")(spec)
    torch.testing.assert_close(center, torch.istft(spec, 1024, 256, 1024, torch.hann_window(1024), center=True))


# ------------------------------------------------------------------------------------------------- model dirs
def test_model_dir_round_trip(tmp_path):
    model = _tiny(causal=True)
    out = model.save_pretrained(tmp_path / "voc", extra_files={"README.md": "hello", "stats.bin": b"\x00\x01"})
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.yaml", "model.safetensors", "stats.bin"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary dirs left behind
    header = yaml.safe_load((out / "config.yaml").read_text())
    assert (header["format"], header["version"], header["kind"]) == ("voxar-model", 1, "vocoder")
    loaded = Vocoder.from_pretrained(out, preset="16k")
    assert loaded.cfg == model.cfg and not loaded.training
    mel = _mel(frames=20, batch=1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(mel), model(mel), rtol=0, atol=0)
    with pytest.raises(VoxarConfigError, match="already exists"):
        model.save_pretrained(out)
    _tiny(causal=False).save_pretrained(out, overwrite=True)
    assert Vocoder.from_pretrained(out).cfg.causal is False


def _write_header(path, **changes):
    header = yaml.safe_load((path / "config.yaml").read_text())
    for key, value in changes.items():
        if key.startswith("config."):
            header["config"][key[7:]] = value
        else:
            header[key] = value
    (path / "config.yaml").write_text(yaml.safe_dump(header))


def test_model_dir_errors(tmp_path):
    from safetensors.torch import load_file, save_file

    with pytest.raises(VoxarConfigError, match="not found"):
        Vocoder.from_pretrained(tmp_path / "nope")

    def fresh(name):
        return _tiny().save_pretrained(tmp_path / name)

    d = fresh("a")
    (d / "config.yaml").unlink()
    with pytest.raises(VoxarConfigError, match="config.yaml is missing"):
        Vocoder.from_pretrained(d)
    d = fresh("b")
    (d / "model.safetensors").unlink()
    with pytest.raises(VoxarConfigError, match="model.safetensors is missing"):
        Vocoder.from_pretrained(d)
    d = fresh("c")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(VoxarConfigError, match="cannot read weights"):
        Vocoder.from_pretrained(d)
    d = fresh("d")
    _write_header(d, kind="tts")
    with pytest.raises(VoxarConfigError, match="holds a 'tts' model, expected a 'vocoder'"):
        Vocoder.from_pretrained(d)
    d = fresh("e")
    _write_header(d, **{"config.channels": 3})
    with pytest.raises(VoxarConfigError, match="unknown key.*channels"):
        Vocoder.from_pretrained(d)
    d = fresh("f")
    _write_header(d, **{"config.dim": 64})
    with pytest.raises(VoxarConfigError, match=r"shape mismatch: embed.conv.weight \(128, 80, 7\) vs model \(64"):
        Vocoder.from_pretrained(d)
    d = fresh("g")
    state = load_file(str(d / "model.safetensors"))
    state.pop("blocks.1.gamma")
    state["blocks.9.gamma"] = torch.zeros(128)
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(VoxarConfigError, match=r"missing weights: blocks.1.gamma.*unexpected weights: blocks.9.gamma"):
        Vocoder.from_pretrained(d)
    d = fresh("h")
    _write_header(d, version=7)
    with pytest.raises(VoxarConfigError, match="unsupported format version 7"):
        Vocoder.from_pretrained(d)
    (d / "config.yaml").write_text("a: [1,\n")
    with pytest.raises(VoxarConfigError, match="unreadable YAML"):
        Vocoder.from_pretrained(d)
    with pytest.raises(VoxarConfigError, match="bad extra file name"):
        save_model_dir(_tiny(), VocoderConfig(), "vocoder", tmp_path / "x", extra_files={"../up": "x"})


def test_model_dir_from_another_preset_names_both(tmp_path):
    small24 = Vocoder(VocoderConfig.named("vocos24k", dim=16, intermediate_dim=32, num_layers=1))
    d = small24.save_pretrained(tmp_path / "v24")
    with pytest.raises(VoxarConfigError, match="for preset 'vocos24k', but preset '16k' is expected"):
        Vocoder.from_pretrained(d, preset="16k")
    model, cfg = load_model_dir(d, "vocoder", VocoderConfig, Vocoder)
    assert cfg.preset == "vocos24k" and isinstance(model, Vocoder)


# ------------------------------------------------------------------------------------------------- Griffin-Lim
def _sine_mel(freq: float, seconds: float = 0.5):
    from voxar.audio import LogMelSpectrogram, MelConfig

    cfg = MelConfig.preset("16k")
    t = torch.arange(int(seconds * cfg.sample_rate)) / cfg.sample_rate
    return cfg, LogMelSpectrogram(cfg)(0.5 * torch.sin(2 * torch.pi * freq * t)[None])


def test_griffin_lim_recovers_a_sine_frequency():
    cfg, mel = _sine_mel(700.0)
    gl = GriffinLimVocoder(cfg, n_iter=16)
    wav = gl(mel)
    assert wav.shape == (1, mel.shape[-1] * cfg.hop_length)
    spectrum = np.abs(np.fft.rfft(wav[0].numpy() * np.hanning(wav.shape[-1])))
    peak = np.argmax(spectrum) * cfg.sample_rate / wav.shape[-1]
    assert abs(peak - 700.0) < 15.0
    torch.testing.assert_close(gl(mel), wav, rtol=0, atol=0)  # deterministic


def test_griffin_lim_streaming_is_close_and_has_the_right_length():
    from voxar.audio import LogMelSpectrogram

    cfg, mel = _sine_mel(440.0, seconds=0.4)
    gl = GriffinLimVocoder(cfg, n_iter=8, block_frames=8, context_frames=8, lookahead_frames=3)
    full = gl(mel)
    streamed = run_chunked(gl, mel, [3, 1, 7])
    assert streamed.shape == full.shape
    analyse = LogMelSpectrogram(cfg)
    target = mel
    err_full = (analyse(full)[..., : mel.shape[-1]] - target).abs().mean()
    err_stream = (analyse(streamed)[..., : mel.shape[-1]] - target).abs().mean()
    assert err_stream < 3 * err_full + 0.2
    noise = analyse(0.1 * torch.randn(full.shape, generator=torch.Generator().manual_seed(0)))
    assert err_stream < 0.3 * (noise[..., : mel.shape[-1]] - target).abs().mean()


# ------------------------------------------------------------------------------------------------- Vocos import
def _official_files(tmp_path, dim=32, inter=48, layers=2, padding="center", seed=0, **config_changes):
    """Write an official-layout config.yaml + pytorch_model.bin (random weights, official key names/shapes)."""
    import librosa

    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=None):
        return torch.randn(*shape, generator=g) * (scale if scale is not None else 1 / math.sqrt(shape[-1]))

    sd = {
        "feature_extractor.mel_spec.spectrogram.window": torch.hann_window(1024),
        "feature_extractor.mel_spec.mel_scale.fb": torch.from_numpy(
            librosa.filters.mel(sr=24000, n_fft=1024, n_mels=100, fmin=0.0, fmax=12000.0, htk=True, norm=None).T
        ).float(),
        "backbone.embed.weight": rnd(dim, 100, 7, scale=0.05),
        "backbone.embed.bias": rnd(dim, scale=0.1),
        "backbone.norm.weight": 1 + rnd(dim, scale=0.2),
        "backbone.norm.bias": rnd(dim, scale=0.2),
        "backbone.final_layer_norm.weight": 1 + rnd(dim, scale=0.2),
        "backbone.final_layer_norm.bias": rnd(dim, scale=0.2),
        "head.out.weight": rnd(1026, dim),
        "head.out.bias": rnd(1026, scale=0.1) + 6.0 * (torch.arange(1026) < 8),  # some bins hit the 1e2 clip
        "head.istft.window": torch.hann_window(1024),
    }
    for i in range(layers):
        p = f"backbone.convnext.{i}."
        sd.update({
            p + "dwconv.weight": rnd(dim, 1, 7, scale=0.3), p + "dwconv.bias": rnd(dim, scale=0.1),
            p + "norm.weight": 1 + rnd(dim, scale=0.2), p + "norm.bias": rnd(dim, scale=0.2),
            p + "pwconv1.weight": rnd(inter, dim), p + "pwconv1.bias": rnd(inter, scale=0.1),
            p + "pwconv2.weight": rnd(dim, inter), p + "pwconv2.bias": rnd(dim, scale=0.1),
            p + "gamma": 0.5 + rnd(dim, scale=0.1),
        })  # fmt: skip
    config = {
        "feature_extractor": {
            "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
            "init_args": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100, "padding": "center"},
        },
        "backbone": {
            "class_path": "vocos.models.VocosBackbone",
            "init_args": {"input_channels": 100, "dim": dim, "intermediate_dim": inter, "num_layers": layers},
        },
        "head": {
            "class_path": "vocos.heads.ISTFTHead",
            "init_args": {"dim": dim, "n_fft": 1024, "hop_length": 256, "padding": padding},
        },
    }
    for key, value in config_changes.items():
        block, arg = key.split("__")
        if arg == "class_path":
            config[block]["class_path"] = value
        else:
            config[block]["init_args"][arg] = value
    src = tmp_path / "vocos-src"
    src.mkdir(exist_ok=True)
    (src / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(sd, src / "pytorch_model.bin")
    return src, sd


def _reference_forward(sd, mel, layers, padding):
    """Independent functional forward of the official layout from the raw state dict."""

    def ln(x, name):  # (B, D, T) -> (B, T, D), normalised over D
        w = sd[name + ".weight"]
        return F.layer_norm(x.transpose(1, 2), w.shape, w, sd[name + ".bias"], eps=1e-6)

    x = F.conv1d(mel, sd["backbone.embed.weight"], sd["backbone.embed.bias"], padding=3)
    x = ln(x, "backbone.norm").transpose(1, 2)
    for i in range(layers):
        p = f"backbone.convnext.{i}."
        h = F.conv1d(x, sd[p + "dwconv.weight"], sd[p + "dwconv.bias"], padding=3, groups=x.shape[1])
        h = F.linear(F.gelu(F.linear(ln(h, p + "norm"), sd[p + "pwconv1.weight"], sd[p + "pwconv1.bias"])),
                     sd[p + "pwconv2.weight"], sd[p + "pwconv2.bias"])  # fmt: skip
        x = x + (sd[p + "gamma"] * h).transpose(1, 2)
    out = F.linear(ln(x, "backbone.final_layer_norm"), sd["head.out.weight"], sd["head.out.bias"]).transpose(1, 2)
    mag, phase = out.chunk(2, dim=1)
    spec = torch.clip(torch.exp(mag), max=1e2) * torch.exp(1j * torch.atan2(torch.sin(phase), torch.cos(phase)))
    if padding == "center":
        return torch.istft(spec, 1024, 256, 1024, sd["head.istft.window"], center=True)
    return torch.from_numpy(_istft_same_reference(spec[0].numpy().astype(np.complex128), 1024, 256))[None].float()


@pytest.mark.parametrize("padding", ["center", "same"])
def test_vocos_import_matches_reference_and_round_trips(tmp_path, padding):
    from voxar.models.vocos_import import convert_vocos, load_vocos

    src, sd = _official_files(tmp_path, padding=padding)
    model = load_vocos(src)
    assert (model.cfg.preset, model.cfg.padding, model.cfg.causal) == ("vocos24k", padding, False)
    mel = _mel(frames=24, batch=1, n_mels=100)
    with torch.no_grad():
        ours = model(mel)
        ref = _reference_forward(sd, mel, 2, padding)
        assert ours.shape == ref.shape
        assert _rel_err(ours, ref) < 1e-4
        assert _rel_err(run_chunked(model, mel, 4), ours) < 1e-5
        dst = convert_vocos(src, tmp_path / "voxar-vocos")
        assert (dst / "vocos_config.yaml").is_file()
        reloaded = Vocoder.from_pretrained(dst, preset="vocos24k")
        torch.testing.assert_close(reloaded(mel), ours, rtol=0, atol=0)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"feature_extractor__class_path": "vocos.feature_extractors.EncodecFeatures"}, "EncodecFeatures"),
        ({"backbone__adanorm_num_embeddings": 4}, "AdaLayerNorm"),
        ({"head__class_path": "vocos.heads.IMDCTCosHead"}, "IMDCTCosHead"),
        ({"feature_extractor__mel_scale": "slaney"}, "mel_scale='slaney'"),
        ({"head__hop_length": 128}, "hop_length"),
    ],
)
def test_vocos_import_rejects_unsupported_configs(tmp_path, change, message):
    from voxar.models.vocos_import import load_vocos

    src, _ = _official_files(tmp_path, **change)
    with pytest.raises(VoxarConfigError, match=message):
        load_vocos(src)


def test_vocos_import_rejects_bad_weights(tmp_path):
    from voxar.models.vocos_import import load_vocos

    src, sd = _official_files(tmp_path)
    torch.save({**sd, "backbone.extra.weight": torch.zeros(1)}, src / "pytorch_model.bin")
    with pytest.raises(VoxarConfigError, match="unexpected Vocos weights backbone.extra.weight"):
        load_vocos(src)
    del sd["backbone.convnext.1.gamma"]
    torch.save(sd, src / "pytorch_model.bin")
    with pytest.raises(VoxarConfigError, match="missing weights: blocks.1.gamma"):
        load_vocos(src)
    (src / "pytorch_model.bin").unlink()
    with pytest.raises(VoxarConfigError, match="pytorch_model.bin is missing"):
        load_vocos(src)


@pytest.mark.skipif(importlib.util.find_spec("vocos") is not None, reason="vocos is installed")
def test_parity_with_official_needs_vocos(tmp_path):
    from voxar.models.vocos_import import parity_with_official

    src, _ = _official_files(tmp_path)
    with pytest.raises(VoxarConfigError, match="needs the 'vocos' package"):
        parity_with_official(src)


@pytest.mark.skipif(importlib.util.find_spec("vocos") is not None, reason="vocos is installed")
def test_vocos_parity_cli_without_vocos(capsys):
    from voxar.bin import vocos_parity

    assert vocos_parity.main([]) == 1
    assert "cannot import the official 'vocos' package" in capsys.readouterr().err


def test_vocos_parity_placeholders_raise_when_used():
    """--stub-missing only stands in for modules that fail to import, and its placeholders never compute."""
    import sys

    from voxar.bin.vocos_parity import STUBBED, stub_missing_modules

    before = {n: sys.modules.get(n) for n in STUBBED}
    try:
        stubbed = stub_missing_modules()
        assert set(stubbed) <= set(STUBBED)
        if "torchaudio" in stubbed:
            import torchaudio

            mel = torchaudio.transforms.MelSpectrogram(sample_rate=24000, n_mels=100)  # builds, as Vocos needs
            assert isinstance(mel, torch.nn.Module) and not list(mel.parameters())
            with pytest.raises(RuntimeError, match="placeholder"):
                mel(torch.zeros(1, 1024))
            with pytest.raises(RuntimeError, match="placeholder"):
                torchaudio.functional.functional._hz_to_mel(100.0)
        if "huggingface_hub" in stubbed:
            from huggingface_hub import hf_hub_download

            with pytest.raises(RuntimeError, match="placeholder"):
                hf_hub_download("charactr/vocos-mel-24khz", "config.yaml")
    finally:  # leave sys.modules as found (tests/test_import.py checks torchaudio is never imported)
        for name, mod in before.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
