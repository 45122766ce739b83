"""Import the published Vocos mel vocoder (e.g. ``charactr/vocos-mel-24khz``) into voxar's :class:`Vocoder`.

Input: a local directory with the official distribution files, ``config.yaml`` (``feature_extractor`` /
``backbone`` / ``head`` blocks of ``class_path`` + ``init_args``) and ``pytorch_model.bin`` (a plain state dict,
read with ``torch.load(weights_only=True)``). Nothing is downloaded and the ``vocos`` package is not needed, except
by :func:`parity_with_official`, which imports it lazily to compare outputs where it is installed.

Supported: ``MelSpectrogramFeatures`` whose settings equal voxar's ``vocos24k`` mel preset, ``VocosBackbone``
without AdaLayerNorm, ``ISTFTHead`` ('same' or 'center' padding). EnCodec features, AdaLayerNorm (bandwidth
conditioning), the ResNet backbone and the IMDCT heads are rejected with a :class:`VoxarConfigError`.

Official key -> voxar key (non-causal build; buffers are checked, then dropped)::

    backbone.embed.{weight,bias}                     -> embed.conv.{weight,bias}
    backbone.norm.{weight,bias}                      -> norm.{weight,bias}
    backbone.convnext.{i}.dwconv.{weight,bias}       -> blocks.{i}.dwconv.conv.{weight,bias}
    backbone.convnext.{i}.{norm,pwconv1,pwconv2}.*   -> blocks.{i}.{norm,pwconv1,pwconv2}.*
    backbone.convnext.{i}.gamma                      -> blocks.{i}.gamma
    backbone.final_layer_norm.{weight,bias}          -> final_norm.{weight,bias}
    head.out.{weight,bias}                           -> head.out.{weight,bias}
    head.istft.window                                (checked: periodic Hann of n_fft)
    feature_extractor.mel_spec.mel_scale.fb          (checked: equals voxar's vocos24k filterbank, transposed)
    feature_extractor.mel_spec.spectrogram.window    (dropped)
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from voxar.errors import VoxarConfigError
from voxar.models.modeldir import check_state_dict, save_model_dir
from voxar.models.vocoder import Vocoder, VocoderConfig

log = logging.getLogger(__name__)

VOCOS_CONFIG = "config.yaml"
VOCOS_WEIGHTS = "pytorch_model.bin"

# torchaudio MelSpectrogram defaults used by Vocos' MelSpectrogramFeatures when the config does not set them.
_FEATURE_DEFAULTS = {
    "sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100, "padding": "center",
    "f_min": 0.0, "f_max": None, "norm": None, "mel_scale": "htk",
}  # fmt: skip
_BACKBONE_ARGS = {"input_channels", "dim", "intermediate_dim", "num_layers", "layer_scale_init_value",
                  "adanorm_num_embeddings"}  # fmt: skip
_HEAD_ARGS = {"dim", "n_fft", "hop_length", "padding"}

_KEY_MAP = [
    (re.compile(r"backbone\.embed\.(weight|bias)"), r"embed.conv.\1"),
    (re.compile(r"backbone\.norm\.(weight|bias)"), r"norm.\1"),
    (re.compile(r"backbone\.convnext\.(\d+)\.dwconv\.(weight|bias)"), r"blocks.\1.dwconv.conv.\2"),
    (re.compile(r"backbone\.convnext\.(\d+)\.(norm|pwconv1|pwconv2)\.(weight|bias)"), r"blocks.\1.\2.\3"),
    (re.compile(r"backbone\.convnext\.(\d+)\.gamma"), r"blocks.\1.gamma"),
    (re.compile(r"backbone\.final_layer_norm\.(weight|bias)"), r"final_norm.\1"),
    (re.compile(r"head\.out\.(weight|bias)"), r"head.out.\1"),
]
_CHECKED_BUFFERS = {
    "head.istft.window",
    "feature_extractor.mel_spec.mel_scale.fb",
    "feature_extractor.mel_spec.spectrogram.window",
}


def _block(config: dict[str, Any], name: str, where: str) -> tuple[str, dict[str, Any]]:
    """``(class name, init_args)`` of one ``class_path``/``init_args`` block."""
    block = config.get(name)
    if not isinstance(block, dict) or not isinstance(block.get("class_path"), str):
        raise VoxarConfigError(f"{where}: missing '{name}.class_path' (not a Vocos config.yaml)")
    args = block.get("init_args") or {}
    if not isinstance(args, dict):
        raise VoxarConfigError(f"{where}: '{name}.init_args' must be a mapping")
    return block["class_path"].rsplit(".", 1)[-1], args


def vocoder_config_from_vocos(config: dict[str, Any], where: str = VOCOS_CONFIG) -> VocoderConfig:
    """Translate a parsed Vocos ``config.yaml`` into a :class:`VocoderConfig` (non-causal), or raise."""
    if "model" in config and isinstance(config["model"], dict) and "backbone" not in config:
        config = config["model"].get("init_args") or {}  # a training config nests the blocks under model
    fe_cls, fe = _block(config, "feature_extractor", where)
    bb_cls, bb = _block(config, "backbone", where)
    hd_cls, hd = _block(config, "head", where)
    if fe_cls != "MelSpectrogramFeatures":
        raise VoxarConfigError(f"{where}: feature extractor {fe_cls} is not supported (voxar vocoders read mels)")
    if bb_cls != "VocosBackbone":
        raise VoxarConfigError(f"{where}: backbone {bb_cls} is not supported (only VocosBackbone)")
    if hd_cls != "ISTFTHead":
        raise VoxarConfigError(f"{where}: head {hd_cls} is not supported (only ISTFTHead)")
    if bb.get("adanorm_num_embeddings") is not None:
        raise VoxarConfigError(f"{where}: AdaLayerNorm backbones (adanorm_num_embeddings) are not supported")
    for name, args, known in (
        ("feature_extractor", fe, set(_FEATURE_DEFAULTS)),
        ("backbone", bb, _BACKBONE_ARGS),
        ("head", hd, _HEAD_ARGS),
    ):
        unknown = sorted(set(args) - known)
        if unknown:
            raise VoxarConfigError(f"{where}: unsupported {name} option(s) {', '.join(unknown)}")

    from voxar.audio.features import MelConfig

    feats = {**_FEATURE_DEFAULTS, **fe}
    mel = MelConfig.preset("vocos24k")
    expected = {
        "sample_rate": mel.sample_rate, "n_fft": mel.n_fft, "hop_length": mel.hop_length, "n_mels": mel.n_mels,
        "padding": "center", "f_min": mel.f_min, "f_max": mel.fmax_hz, "norm": mel.mel_norm,
        "mel_scale": mel.mel_scale,
    }  # fmt: skip
    if feats["f_max"] is None:
        feats["f_max"] = feats["sample_rate"] / 2
    wrong = [f"{k}={feats[k]!r} (vocos24k has {v!r})" for k, v in expected.items() if feats[k] != v]
    if wrong:
        raise VoxarConfigError(f"{where}: mel features do not match voxar's vocos24k preset: {', '.join(wrong)}")
    if bb.get("input_channels") != feats["n_mels"]:
        raise VoxarConfigError(
            f"{where}: backbone input_channels {bb.get('input_channels')} != n_mels {feats['n_mels']}"
        )
    if hd.get("dim") != bb.get("dim"):
        raise VoxarConfigError(f"{where}: head dim {hd.get('dim')} != backbone dim {bb.get('dim')}")
    if hd.get("hop_length") != feats["hop_length"]:
        raise VoxarConfigError(f"{where}: head hop_length {hd.get('hop_length')} != features {feats['hop_length']}")
    try:
        num_layers = int(bb["num_layers"])
        return VocoderConfig(
            preset="vocos24k",
            n_mels=int(bb["input_channels"]),
            dim=int(bb["dim"]),
            intermediate_dim=int(bb["intermediate_dim"]),
            num_layers=num_layers,
            kernel_size=7,
            layer_scale_init=float(bb.get("layer_scale_init_value") or 1.0 / num_layers),  # Vocos: `or 1/N`
            n_fft=int(hd["n_fft"]),
            hop_length=int(hd["hop_length"]),
            padding=hd.get("padding", "same"),  # ISTFTHead's default
            causal=False,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise VoxarConfigError(f"{where}: incomplete backbone/head init_args ({e})") from e


def map_vocos_state_dict(
    state: dict[str, torch.Tensor], cfg: VocoderConfig, check_features: bool = True, where: str = VOCOS_WEIGHTS
) -> dict[str, torch.Tensor]:
    """Official Vocos state dict -> voxar :class:`Vocoder` state dict (see the table in the module docstring).

    The ISTFT window must be a periodic Hann window; with ``check_features`` the mel filterbank stored with the
    feature extractor must equal voxar's ``vocos24k`` filterbank (so voxar's features are the ones it was trained on).
    """
    out: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in state.items():
        if key in _CHECKED_BUFFERS:
            continue
        for pattern, repl in _KEY_MAP:
            if pattern.fullmatch(key):
                out[pattern.sub(repl, key)] = value.detach().to(torch.float32)
                break
        else:
            unexpected.append(key)
    if unexpected:
        raise VoxarConfigError(f"{where}: unexpected Vocos weights {', '.join(unexpected[:5])}")
    window = state.get("head.istft.window")
    if window is not None and not torch.allclose(window.float(), torch.hann_window(cfg.n_fft), atol=1e-6):
        raise VoxarConfigError(f"{where}: head.istft.window is not a periodic Hann window of {cfg.n_fft}")
    fb = state.get("feature_extractor.mel_spec.mel_scale.fb")
    if fb is not None and check_features:
        from voxar.audio.features import mel_filterbank

        ours = torch.from_numpy(mel_filterbank(cfg.mel_config())).T  # (n_mels, F) -> (F, n_mels) as torchaudio
        diff = (fb.float() - ours).abs().max().item() if fb.shape == ours.shape else float("inf")
        if diff > 1e-4:
            raise VoxarConfigError(
                f"{where}: the checkpoint's mel filterbank differs from voxar's vocos24k preset (max diff {diff:.3g})"
            )
    check_state_dict(Vocoder(cfg), out, where=where)
    return out


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unpickling failure means a bad file for the user
        raise VoxarConfigError(f"{path}: cannot read weights ({str(e).splitlines()[0]})") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        keep = ("feature_extractor.", "backbone.", "head.")  # a training checkpoint also holds discriminators
        obj = {k: v for k, v in obj["state_dict"].items() if k.startswith(keep)}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise VoxarConfigError(f"{path}: expected a state dict of tensors")
    return obj


def load_vocos(src_dir: str | Path, check_features: bool = True) -> Vocoder:
    """Build a voxar :class:`Vocoder` (eval mode, CPU) from a directory with the official Vocos files."""
    src = Path(src_dir)
    if not src.is_dir():
        raise VoxarConfigError(f"{src}: Vocos directory not found")
    cfg_path, bin_path = src / VOCOS_CONFIG, src / VOCOS_WEIGHTS
    for p in (cfg_path, bin_path):
        if not p.is_file():
            raise VoxarConfigError(f"{src}: {p.name} is missing (expected the official Vocos distribution files)")
    try:
        config = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise VoxarConfigError(f"{cfg_path}: unreadable YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(config, dict):
        raise VoxarConfigError(f"{cfg_path}: expected a mapping")
    cfg = vocoder_config_from_vocos(config, where=str(cfg_path))
    state = map_vocos_state_dict(_load_weights(bin_path), cfg, check_features, where=str(bin_path))
    model = Vocoder(cfg)
    model.load_state_dict(state, strict=True)
    return model.eval()


def convert_vocos(
    src_dir: str | Path, dst_dir: str | Path, overwrite: bool = False, check_features: bool = True
) -> Path:
    """Convert official Vocos files into a voxar model dir (the original config is kept as ``vocos_config.yaml``)."""
    src = Path(src_dir)
    model = load_vocos(src, check_features)
    extra = {
        "vocos_config.yaml": (src / VOCOS_CONFIG).read_bytes(),
        "SOURCE.txt": "Converted by voxar.models.vocos_import from the Vocos distribution files (Vocos: MIT "
        "license, https://github.com/gemelo-ai/vocos).\n",
    }
    out = save_model_dir(model, model.cfg, "vocoder", dst_dir, extra_files=extra, overwrite=overwrite)
    log.info("converted %s -> %s (%.1fM parameters)", src, out, model.num_parameters() / 1e6)
    return out


def parity_with_official(
    src_dir: str | Path, num_frames: int = 200, seed: int = 0, features: bool = True
) -> dict[str, float | None]:
    """Compare voxar's import with the official ``vocos`` package on the same files (needs ``pip install vocos``).

    Returns max abs differences of the features (voxar's vocos24k log-mel vs Vocos' extractor on a synthetic
    signal) and of the decoded waveforms (full pass and 4-frame streaming) plus the signal peak, for reporting.
    ``features=False`` skips the official feature extractor (it needs torchaudio): both decoders then get voxar's
    log-mel and ``feature_max_abs_diff`` is None.
    """
    try:
        from vocos import Vocos
    except Exception as e:  # vocos pulls torchaudio and encodec, which fail in many ways
        raise VoxarConfigError(f"parity_with_official needs the 'vocos' package (voxar[vocos]): {e}") from e
    from voxar.audio.features import LogMelSpectrogram
    from voxar.modules.streaming import run_chunked

    src = Path(src_dir)
    official = Vocos.from_hparams(str(src / VOCOS_CONFIG))
    official.load_state_dict(_load_weights(src / VOCOS_WEIGHTS))
    official.eval()
    ours = load_vocos(src)
    sr, hop = ours.sample_rate, ours.cfg.hop_length
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(num_frames * hop) / sr
    f0 = 120.0 + 100.0 * t / t[-1]  # a rising harmonic tone plus a little noise
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / sr
    audio = sum(0.3 / k * torch.sin(k * phase) for k in range(1, 8)) + 0.01 * torch.randn(t.shape, generator=g)
    audio = audio[None].float()  # (1, L)
    with torch.no_grad():
        mel_ours = LogMelSpectrogram(ours.cfg.mel_config())(audio)
        mel_official = official.feature_extractor(audio) if features else mel_ours
        wav_official = official.decode(mel_official)
        wav_ours = ours(mel_official)
        wav_stream = run_chunked(ours, mel_official, 4)
    return {
        "feature_max_abs_diff": (mel_official - mel_ours).abs().max().item() if features else None,
        "decode_max_abs_diff": (wav_official - wav_ours).abs().max().item(),
        "stream_max_abs_diff": (wav_official - wav_stream).abs().max().item(),
        "signal_peak": wav_official.abs().max().item(),
    }
