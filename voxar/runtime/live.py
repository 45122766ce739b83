"""Live voice conversion: microphone -> :class:`voxar.vc.VCPipeline` -> speakers through one PortAudio duplex stream.

:func:`run_live` opens a sounddevice ``Stream`` (blocking reads and writes, 16-bit mono, ``block`` frames per
call) and loops: read one block, push it through the streaming pipeline, append the converted samples to an output
FIFO, write one block from it. The FIFO starts empty, so the output is the converted input delayed by the
pipeline's hold-back (the algorithmic latency) plus the device buffers. When the device runs at another rate than
the models (``--samplerate``), streaming soxr resamplers convert both ways.

Per block it records the compute time; it counts input overflows (PortAudio's flag: the loop was too slow to read)
and output underflows (the device flag, or the FIFO running short once output has started). Ctrl-C (or the end of
``duration``) stops cleanly: the pipeline is flushed and the rest played. A device that fails or disappears mid-stream
raises :class:`voxar.devices.VoxarDeviceError` with PortAudio's reason.

Legend: L samples.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass
class LiveStats:
    """What a live session did: blocks, per-block compute (ms), over/underruns, seconds of audio in and out."""

    block: int
    samplerate: int
    compute_ms: list[float] = field(default_factory=list)
    overflows: int = 0
    underflows: int = 0
    seconds_in: float = 0.0
    seconds_out: float = 0.0
    interrupted: bool = False

    def summary(self) -> dict[str, Any]:
        from voxar.bench import percentiles

        block_ms = 1e3 * self.block / self.samplerate
        p = percentiles(self.compute_ms) if self.compute_ms else {"p50_ms": 0.0, "p95_ms": 0.0, "mean_ms": 0.0}
        return {
            "blocks": len(self.compute_ms),
            "block_ms": block_ms,
            "compute_ms": p,
            "compute_share_p95": p["p95_ms"] / block_ms,
            "overflows": self.overflows,
            "underflows": self.underflows,
            "seconds_in": round(self.seconds_in, 3),
            "seconds_out": round(self.seconds_out, 3),
            "interrupted": self.interrupted,
        }


class _Resampler:
    """Streaming soxr resampling between the device rate and the model rate (identity when equal)."""

    def __init__(self, src: int, dst: int) -> None:
        self.stream = None
        if src != dst:
            import soxr

            self.stream = soxr.ResampleStream(src, dst, 1, dtype="float32", quality="HQ")

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        if self.stream is None:
            return x
        return self.stream.resample_chunk(x, last=last)


def run_live(
    pipeline: Any,
    model_rate: int,
    *,
    input_device: int | None = None,
    output_device: int | None = None,
    block_ms: float = 20.0,
    samplerate: int | None = None,
    duration: float | None = None,
    on_block: Any = None,
) -> LiveStats:
    """Run the duplex loop until ``duration`` seconds of input (None: until Ctrl-C); returns :class:`LiveStats`.

    ``pipeline``: a :class:`voxar.vc.VCPipeline`; ``samplerate``: the device rate (None: the model rate);
    ``on_block(stats)`` is called after every block (progress display).
    """
    from voxar.devices import VoxarDeviceError, import_sounddevice

    sd = import_sounddevice()
    rate = int(samplerate or model_rate)
    block = max(1, int(round(rate * block_ms / 1000)))
    stats = LiveStats(block, rate)
    to_model, to_device = _Resampler(rate, model_rate), _Resampler(model_rate, rate)
    state = pipeline.init_state(1)
    fifo = np.zeros(0, dtype=np.float32)
    started = False
    total = None if duration is None else int(duration * rate)
    try:
        stream = sd.Stream(samplerate=rate, blocksize=block, channels=1, dtype="int16",
                           device=(input_device, output_device), latency="low")  # fmt: skip
    except Exception as e:  # PortAudio reports plain exceptions
        raise VoxarDeviceError(f"cannot open the audio devices at {rate} Hz: {e}") from e

    def play(out: np.ndarray) -> None:
        pcm = (np.clip(out, -1.0, 1.0) * 32767).round().astype(np.int16)[:, None]
        if stream.write(pcm):
            stats.underflows += 1
        stats.seconds_out += len(out) / rate

    try:
        with stream, torch.inference_mode():
            while total is None or stats.seconds_in * rate < total:
                data, overflowed = stream.read(block)
                stats.overflows += int(bool(overflowed))
                x = data[:, 0].astype(np.float32) / 32768.0
                stats.seconds_in += len(x) / rate
                t0 = time.perf_counter()
                y, state = pipeline.step(torch.from_numpy(to_model(x))[None], state)  # (1, l) -> (1, l')
                fifo = np.concatenate([fifo, to_device(y[0].numpy())])
                stats.compute_ms.append(1e3 * (time.perf_counter() - t0))
                if len(fifo) >= block:
                    started = True
                elif started:  # the pipeline fell behind: play what there is, then silence
                    stats.underflows += 1
                if started:
                    out, fifo = fifo[:block], fifo[block:]
                else:  # pre-roll: silence until a whole block of output exists (the algorithmic latency)
                    out = np.zeros(0, dtype=np.float32)
                play(np.pad(out, (0, block - len(out))))
                if on_block is not None:
                    on_block(stats)
            tail = np.concatenate([fifo, to_device(pipeline.flush(state)[0].numpy(), last=True)])
            for i in range(0, len(tail), block):
                play(np.pad(tail[i : i + block], (0, max(0, block - len(tail[i : i + block])))))
    except KeyboardInterrupt:
        stats.interrupted = True
    except sd.PortAudioError as e:
        raise VoxarDeviceError(f"the audio device stopped: {e}") from e
    return stats
