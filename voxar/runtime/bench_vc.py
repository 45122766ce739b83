"""Body of ``voxar bench vc``: measured algorithmic latency, per-block compute and RTF of streaming conversion.

The pipeline (:class:`voxar.vc.VCPipeline`: streaming log-mel, content encoder, VC model, vocoder) converts
``seconds`` of a synthetic voice-like signal in blocks of ``block_ms``; every ``step`` is timed (CUDA synchronised)
after ``warmup`` blocks. *Algorithmic latency* is measured on the pipeline itself (:meth:`VCPipeline.latency`):
block + mel window + content lookahead + VC chunk fill + vocoder hold-back, worst case and mean. The live budget is
met when the p95 block compute is at most half the block. Without model directories the models are random tiny ones
(speed does not depend on training; the JSON says so).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch


def random_converter(device: torch.device, vc_chunk: int = 2, features: str = "bnf") -> Any:
    """A :class:`voxar.vc.VoiceConverter` of random tiny models (content, VC with ``vc_chunk`` reading the content
    encoder's ``features``, causal vocoder)."""
    from voxar.models.content import ContentConfig, ContentEncoder
    from voxar.models.vc import VCModel
    from voxar.models.vc_config import VCConfig
    from voxar.models.vocoder import Vocoder, VocoderConfig
    from voxar.vc import VoiceConverter

    torch.manual_seed(0)
    content = ContentEncoder(ContentConfig.named("tiny"))
    content.set_features(features)
    vc_cfg = VCConfig.named("tiny", content_dim=content.out_dim, content_features=features, chunk_size=vc_chunk)
    vc = VCModel(vc_cfg)
    return VoiceConverter(content, vc, Vocoder(VocoderConfig.named("tiny", causal=True)), device)


def bench_vc(
    model: Path | None,
    content_model: Path | None,
    vocoder: Path | None,
    device: str = "cpu",
    threads: int = 0,
    block_ms: float = 20.0,
    lookahead_ms: float = 0.0,
    seconds: float = 10.0,
    warmup: int = 10,
) -> dict[str, Any]:
    from voxar.bench import hardware, percentiles
    from voxar.runtime.bench_tts import synthetic_prompt
    from voxar.vc import VoiceConverter
    from voxar.vc_cli import _set_lookahead
    from voxar.vocode import resolve_device

    dev = resolve_device(device)
    if dev.type == "cpu" or threads:
        torch.set_num_threads(threads or 1)
    load_before = os.getloadavg()[0]
    trained = any(p is not None for p in (model, content_model, vocoder))
    conv = VoiceConverter.from_pretrained(model, content_model, vocoder, dev) if trained else random_converter(dev)
    chunk = _set_lookahead(conv.content, lookahead_ms)
    sr = conv.sample_rate
    target = conv.prepare_target(synthetic_prompt(3.0, sr, seed=1))
    pipe = conv.pipeline(target)
    block = max(1, int(round(sr * block_ms / 1000)))
    lat = pipe.latency(block)
    src = torch.from_numpy(synthetic_prompt(seconds, sr, seed=2))[None].to(dev)  # (1, L)
    times = []
    with torch.inference_mode():
        state = pipe.init_state(1)
        total = 0.0
        for k, i in enumerate(range(0, src.shape[-1], block)):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            pipe.step(src[:, i : i + block], state)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            dt = time.perf_counter() - t0
            if k >= warmup:
                times.append(1e3 * dt)
                total += dt
    p = percentiles(times)
    params = {name: sum(x.numel() for x in m.parameters()) / 1e6 for name, m in
              (("content", conv.content), ("vc", conv.vc), ("vocoder", conv.vocoder))}  # fmt: skip
    return {
        "benchmark": "vc",
        "models": "trained" if trained else "random tiny (speed does not depend on training)",
        "params_m": params,
        "block_ms": 1e3 * block / sr,
        "content_chunk_frames": chunk,
        "vc_chunk_frames": conv.vc.cfg.chunk_size,
        "algorithmic_latency_ms": lat,
        "block_compute_ms": p,
        "compute_share_p95": p["p95_ms"] / (1e3 * block / sr),
        "rtf": total / (len(times) * block / sr),
        "torch_threads": torch.get_num_threads(),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg()[0],
        "hardware": hardware(str(dev)),
    }
