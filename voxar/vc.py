"""Voice conversion: the streaming pipeline waveform -> log-mel -> content encoder -> VC model -> vocoder.

:class:`VoiceConverter` bundles the three trained models (a content encoder, a VC model and a vocoder; model
directories, by default the packaged ones under ``voxar/assets/models``) and :class:`VCPipeline` chains them as one
:class:`~voxar.modules.streaming.StreamingModule` over waveform samples:

.. code-block:: python

    vc = VoiceConverter.from_pretrained()              # or (vc_dir, content_dir, vocoder_dir)
    target = vc.prepare_target("ref.wav")              # >= 1 s of speech
    pipe = vc.pipeline(target)
    state = pipe.init_state(1)
    out, state = pipe.step(block, state)               # block (1, L) float32 at 16 kHz -> converted (1, l)
    tail = pipe.flush(state)

Every stage streams exactly (streaming log-mel, chunk-cached conformer, chunk-AR DiT with seeded per-chunk noise,
exact causal/non-causal vocoder), so the converted stream equals :meth:`VoiceConverter.convert` on the whole input for
any block size. File conversion runs that same pipeline over the file.

**Latency.** :meth:`VCPipeline.latency` measures the algorithmic latency instead of adding nominal figures: it
streams silence in blocks of ``block`` samples and, for every output sample, takes the time from the arrival of
the input sample at the same position (the output is time-aligned with the input) until the end of the block whose
processing made it final. The worst case is block + mel window lookahead + content-encoder lookahead + the wait
for a VC chunk to fill + vocoder hold-back, whatever the stage settings are.

Legend: B batch, L samples, M mel bins, T frames, Dc content dim.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxar.errors import VoxarAudioError, VoxarConfigError
from voxar.modules.streaming import StreamingModule

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets" / "models"
MIN_TARGET_SECONDS = 1.0
MAX_TARGET_SECONDS = 30.0
SILENCE_DB = -50.0


@dataclass
class PipelineState:
    """One state per stage, plus the samples received and emitted (to crop the output to the input length)."""

    stages: list[Any]
    received: int = 0
    emitted: int = 0


class VCPipeline(StreamingModule):
    """Waveform ``(B, L)`` -> converted waveform ``(B, L)`` through ``stages`` (each a StreamingModule whose output
    feeds the next); ``vc`` needs the target and seed at ``init_state`` (see :meth:`init_state`)."""

    def __init__(self, mel: StreamingModule, content: StreamingModule, vc: Any, vocoder: StreamingModule,
                 target: Any, seed: int = 0, steps: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.stages = torch.nn.ModuleList([mel, content, vc, vocoder])
        self.target, self.seed, self.steps = target, seed, steps

    def init_state(
        self, batch_size: int = 1, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> PipelineState:
        mel, content, vc, vocoder = self.stages
        device, _ = self._default_device_dtype(device, None)
        return PipelineState([
            mel.init_state(batch_size, device),
            content.init_state(batch_size, device),
            vc.init_state(batch_size, device, target=self.target, seed=self.seed, steps=self.steps),
            vocoder.init_state(batch_size, device),
        ])  # fmt: skip

    def step(self, wav: torch.Tensor, state: PipelineState) -> tuple[torch.Tensor, PipelineState]:
        """Samples ``(B, l)`` -> the converted samples that became final ``(B, l')``."""
        state.received += wav.shape[-1]
        x = wav
        for i, stage in enumerate(self.stages):
            x, state.stages[i] = stage.step(x, state.stages[i])
        return self._crop(x, state), state

    def flush(self, state: PipelineState) -> torch.Tensor:
        """End of input: everything still held back, cropped to the input length."""
        x: torch.Tensor | None = None
        for i, stage in enumerate(self.stages):
            if x is not None and x.shape[-1] > 0:
                x, state.stages[i] = stage.step(x, state.stages[i])
                tail = stage.flush(state.stages[i])
                x = x if tail is None else torch.cat([x, tail], dim=-1)
            else:
                x = stage.flush(state.stages[i])
        assert x is not None
        out = self._crop(x, state)
        missing = state.received - state.emitted  # the vocoder's output can be a few samples short at the end
        if missing > 0:
            out = torch.cat([out, out.new_zeros(out.shape[0], missing)], dim=-1)
            state.emitted += missing
        return out

    def _crop(self, x: torch.Tensor, state: PipelineState) -> torch.Tensor:
        room = max(0, state.received - state.emitted)
        x = x[..., :room]
        state.emitted += x.shape[-1]
        return x

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """The whole input at once (the same recursion as streaming)."""
        state = self.init_state(wav.shape[0], wav.device)
        out, state = self.step(wav, state)
        return torch.cat([out, self.flush(state)], dim=-1)

    @torch.inference_mode()
    def latency(self, block: int, seconds: float = 1.0) -> dict[str, float]:
        """Measured algorithmic latency for input blocks of ``block`` samples (see the module docstring): worst
        case and mean over output samples, in ms."""
        sr = self.stages[0].cfg.sample_rate
        state = self.init_state(1)
        n_blocks = max(4, int(seconds * sr / block))
        worst, total, count, done = 0.0, 0.0, 0, 0
        for k in range(n_blocks):
            y, state = self.step(torch.zeros(1, block), state)
            arrival = (k + 1) * block  # the time (in samples) the block is complete
            n = y.shape[-1]
            if n:
                pos = np.arange(done, done + n)
                lat = arrival - pos  # this output sample's input arrived at pos + 1 at the earliest
                worst = max(worst, float(lat.max()))
                total += float(lat.sum())
                count += n
                done += n
        return {"worst_ms": 1e3 * (worst - 1) / sr, "mean_ms": 1e3 * (total / max(count, 1) - 1) / sr}


class VoiceConverter:
    """The three models of voice conversion and the file-level API (see the module docstring)."""

    def __init__(self, content: Any, vc: Any, vocoder: Any, device: str | torch.device = "cpu") -> None:
        from voxar.audio import MelConfig

        self.device = torch.device(device)
        self.content, self.vc, self.vocoder = content.to(device).eval(), vc.to(device).eval(), vocoder.to(device)
        self.vocoder.eval()
        self.mel_cfg = MelConfig.preset(vc.cfg.preset if hasattr(vc.cfg, "preset") else "16k")
        content.set_features(getattr(vc.cfg, "content_features", "bnf"))
        if content.out_dim != vc.cfg.content_dim:
            raise VoxarConfigError(
                f"the content encoder gives {content.out_dim}-d {content.features.upper()} features but the VC model "
                f"expects {vc.cfg.content_dim}"
            )

    @classmethod
    def from_pretrained(
        cls,
        vc_dir: str | Path | None = None,
        content_dir: str | Path | None = None,
        vocoder: str | Path | None = None,
        device: str | torch.device = "cpu",
    ) -> VoiceConverter:
        """Load model directories (None: the packaged ``vc``/``content``/``vocoder`` models; a missing one is a
        :class:`VoxarConfigError` that says which and how to get it)."""
        from voxar.models.content import ContentEncoder
        from voxar.models.vc import VCModel
        from voxar.models.vocoder import Vocoder

        dirs = {}
        for name, given in (("vc", vc_dir), ("content", content_dir), ("vocoder", vocoder)):
            path = Path(given) if given is not None else ASSETS / name
            if not path.is_dir():
                how = f"--{name if name != 'vc' else 'model'} DIR" if given is None else "a trained model directory"
                raise VoxarConfigError(f"{path}: no {name} model directory (not packaged; pass {how})")
            dirs[name] = path
        content = ContentEncoder.from_pretrained(dirs["content"], device=device)
        vc = VCModel.from_pretrained(dirs["vc"], device=device)
        voc = Vocoder.from_pretrained(dirs["vocoder"], device=device, preset=vc.cfg.preset)
        return cls(content, vc, voc, device)

    @property
    def sample_rate(self) -> int:
        return int(self.mel_cfg.sample_rate)

    def prepare_target(self, ref: str | Path | np.ndarray) -> Any:
        """The target voice from a reference recording (file, or float waveform at :attr:`sample_rate`) of at least
        :data:`MIN_TARGET_SECONDS` of speech; silent or short references are :class:`VoxarAudioError` s."""
        from voxar.audio import load_audio, log_mel

        if isinstance(ref, (str, Path)):
            name = str(ref)
            wav, _ = load_audio(ref, self.sample_rate, max_seconds=MAX_TARGET_SECONDS, require_speech=True,
                                silence_db=SILENCE_DB)  # fmt: skip
        else:
            name = "<target array>"
            wav = np.asarray(ref, dtype=np.float32).reshape(-1)
            if not len(wav) or float(np.max(np.abs(wav))) <= 10 ** (SILENCE_DB / 20):
                raise VoxarAudioError(f"{name}: the target reference is silent")
        seconds = len(wav) / self.sample_rate
        if seconds < MIN_TARGET_SECONDS:
            raise VoxarAudioError(
                f"{name}: the target reference is {seconds:.2f} s long; at least {MIN_TARGET_SECONDS:g} s of speech "
                "is needed"
            )
        mel = torch.from_numpy(log_mel(wav, self.mel_cfg))[None].to(self.device)  # (M, R) -> (1, M, R)
        with torch.inference_mode():
            return self.vc.prepare_target(mel)

    def pipeline(self, target: Any, seed: int = 0, steps: int | None = None) -> VCPipeline:
        """A streaming pipeline to ``target`` (from :meth:`prepare_target`)."""
        from voxar.audio.stream_mel import StreamingLogMel

        mel = StreamingLogMel(self.mel_cfg).to(self.device)
        return VCPipeline(mel, self.content, self.vc, self.vocoder, target, seed, steps)

    @torch.inference_mode()
    def convert(
        self, source: np.ndarray, target: Any, seed: int = 0, steps: int | None = None, block: int | None = None
    ) -> np.ndarray:
        """Convert a float waveform ``(L,)`` at :attr:`sample_rate` -> ``(L,)``; ``block`` streams it in blocks of
        that many samples (None: one call; both give the same result)."""
        from voxar.modules.streaming import run_chunked

        if len(source) <= self.mel_cfg.n_fft // 2:
            raise VoxarAudioError(f"the source is {len(source) / self.sample_rate:.3f} s long; too short to convert")
        pipe = self.pipeline(target, seed, steps)
        x = torch.from_numpy(np.ascontiguousarray(source, dtype=np.float32))[None].to(self.device)  # (1, L)
        y = run_chunked(pipe, x, block or x.shape[-1])
        return np.clip(y[0].float().cpu().numpy(), -1.0, 1.0)
