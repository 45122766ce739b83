"""Zero-shot TTS: the model bundle (patch LM + FM/MF flow heads + tokenizer) and the inference API :class:`TTS`.

A TTS model directory (``kind: tts``, see :mod:`voxar.models.modeldir`) holds ``config.yaml`` (a
:class:`TTSModelConfig`: mel ``preset``, ``lm``, ``fm_head``, optional ``mf_head``, ``tokenizer`` dict),
``model.safetensors`` (a :class:`TTSModel` state dict, EMA weights, mel statistics included) and ``tokenizer.json``.
``python -m voxar.bin.train_tts`` writes it; :meth:`TTS.from_pretrained` reads it.

Both heads sit on the same LM hidden states, so one directory serves ``head="fm"`` (flow matching, ~8 steps with
CFG) and ``head="mf"`` (mean flow, 1-2 steps).

**Zero-shot, two ways.** With ``prompt_text`` the prompt is *continued*: the LM reads ``prompt_text + text`` and the
prompt's mel patches, then generates the rest. Without it (the default, no ASR needed) the reference encoder turns the
prompt mel into the speaker token. Either way the reference encoder sees the prompt. No prompt at all: the learned
"no speaker" token (an average voice).

**Input checks.** Empty text or text without one pronounceable symbol raises :class:`VoxarTextError`. A prompt
shorter than :data:`MIN_PROMPT_SECONDS` (0.5 s) or longer than :data:`MAX_PROMPT_SECONDS` (30 s) raises
:class:`VoxarAudioError` (it is *not* trimmed: trimming would desynchronise ``prompt_text``); so does a silent prompt
(peak below -60 dBFS). Runaway generation is cut by the LM's length guard (``4 * text_tokens + 25`` patches);
a floor of :data:`MIN_PATCHES_PER_TOKEN` patches per target token keeps an early stop from swallowing the text.

**Long text** is split with :func:`voxar.text.split_sentences`; each sentence is generated with the same prompt,
vocoded on its own, faded in/out with :data:`FADE_SECONDS` raised-cosine ramps and joined with
:data:`PAUSE_SECONDS` of silence, so joins have no clicks.

Legend: M mel bins, T frames, P frames per patch, F = P * M, L samples.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from voxar.errors import VoxarAudioError, VoxarConfigError, VoxarTextError
from voxar.models.generate import stream
from voxar.models.heads import FlowHead
from voxar.models.tts_model import TTSModel, TTSModelConfig, default_mf_head

log = logging.getLogger(__name__)

KIND = "tts"
TOKENIZER_FILE = "tokenizer.json"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "models" / "tts"
DEFAULT_VOICE = Path(__file__).resolve().parent / "assets" / "voices" / "default.wav"  # made by egs/synth
MIN_PROMPT_SECONDS = 0.5
MAX_PROMPT_SECONDS = 30.0
PAUSE_SECONDS = 0.15
FADE_SECONDS = 0.01
SILENCE_DB = -60.0
MIN_PATCHES_PER_TOKEN = 0.5  # length floor: 20 ms per target token (speech runs ~60-80 ms per char or phone)


# ------------------------------------------------------------------------------------------------------ helpers
def silent_symbols() -> set[str]:
    """Symbols that are not sounds: space, punctuation, prosody (stress, length) marks and specials."""
    from voxar.text.symbols import SPACE, SPECIALS
    from voxar.text.tokenizers import LENGTH_SYMBOLS, PUNCTUATION_SYMBOLS, STRESS_SYMBOLS

    return {SPACE, *SPECIALS, *PUNCTUATION_SYMBOLS, *STRESS_SYMBOLS, *LENGTH_SYMBOLS}


def pronounceable(tokenizer: Any, ids: list[int]) -> bool:
    """True when ``ids`` hold at least one symbol that is not a space, punctuation, prosody mark or special."""
    silent = silent_symbols()
    return any(tokenizer.symbols.symbol(i) not in silent for i in ids)


def raised_cosine_fades(wav: np.ndarray, n_fade: int) -> np.ndarray:
    """``wav (L,)`` with a raised-cosine fade-in over its first and fade-out over its last ``n_fade`` samples."""
    out = np.array(wav, dtype=np.float32, copy=True)
    n = min(n_fade, len(out) // 2)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)  # 0 -> 1
        out[:n] *= ramp
        out[len(out) - n :] *= ramp[::-1]
    return out


def resolve_vocoder(vocoder: Any, preset: str, device: str | torch.device) -> Any:
    """A vocoder module for ``preset``: None (the packaged vocoder if installed, else Griffin-Lim with a warning),
    ``"griffin-lim"``, a model directory, or a ready module. A vocoder for another mel preset is an error."""
    from voxar.audio import MelConfig

    if isinstance(vocoder, nn.Module):
        got = getattr(getattr(vocoder, "cfg", None), "preset", preset)
        if got != preset:
            raise VoxarConfigError(f"the vocoder is for mel preset {got!r}, but the TTS model uses {preset!r}")
        return vocoder.to(device).eval()
    if vocoder is None:
        from voxar.vocode import DEFAULT_MODEL_DIR as VOCODER_DIR

        if VOCODER_DIR.is_dir():
            vocoder = VOCODER_DIR
        else:
            log.warning("no packaged vocoder at %s: using Griffin-Lim (lower quality)", VOCODER_DIR)
            vocoder = "griffin-lim"
    if isinstance(vocoder, str) and vocoder == "griffin-lim":
        from voxar.models.griffinlim import GriffinLimVocoder

        return GriffinLimVocoder(MelConfig.preset(preset)).to(device).eval()
    from voxar.models.vocoder import Vocoder

    path = Path(vocoder)
    if not path.is_dir():
        raise VoxarConfigError(f"{path}: vocoder directory not found (give a model dir or 'griffin-lim')")
    return Vocoder.from_pretrained(path, device=device, preset=preset)


# ------------------------------------------------------------------------------------------------------ the API
class TTS:
    """Inference on a trained model: :meth:`synthesize` (whole waveform) and :meth:`stream_patches` (mel chunks).

    Build with :meth:`from_pretrained`. Not thread-safe (one generation at a time per instance).
    """

    def __init__(self, model: TTSModel, tokenizer: Any, vocoder: Any, device: str | torch.device = "cpu") -> None:
        from voxar.audio import MelConfig

        self.model = model.to(device).eval()
        self.cfg = model.cfg
        self.tokenizer = tokenizer
        self.vocoder = vocoder
        self.device = torch.device(device)
        self.mel_cfg = MelConfig.preset(self.cfg.preset)
        self.decode: Literal["dynamic", "static", "cuda-graph"] = "dynamic"

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, vocoder: Any = None, device: str | torch.device = "cpu") -> TTS:
        """Load a TTS model directory; ``vocoder``: None (packaged, else Griffin-Lim), ``"griffin-lim"``, a vocoder
        model directory or module. Missing files, mismatched weights or a vocoder for another mel preset raise
        :class:`VoxarConfigError` naming the problem."""
        from voxar.models.modeldir import load_model_dir
        from voxar.text import load_tokenizer, tokenizer_from_dict

        model_dir = Path(model_dir)
        model, cfg = load_model_dir(model_dir, KIND, TTSModelConfig, TTSModel, device=device)
        tok_file = model_dir / TOKENIZER_FILE
        if not tok_file.is_file():
            raise VoxarConfigError(f"{model_dir}: {TOKENIZER_FILE} is missing")
        tokenizer = load_tokenizer(tok_file)
        if cfg.tokenizer and tokenizer != tokenizer_from_dict(cfg.tokenizer, where=f"{model_dir}: config tokenizer"):
            raise VoxarConfigError(f"{model_dir}: {TOKENIZER_FILE} differs from the tokenizer in config.yaml")
        if tokenizer.vocab_size != cfg.lm.vocab_size:
            raise VoxarConfigError(
                f"{model_dir}: tokenizer has {tokenizer.vocab_size} symbols but the LM expects {cfg.lm.vocab_size}"
            )
        return cls(model, tokenizer, resolve_vocoder(vocoder, cfg.preset, device), device)

    def set_decode(self, mode: str) -> None:
        """How the LM steps: ``"dynamic"`` (:meth:`PatchLM.step`, growing caches), ``"static"`` (fixed-shape
        :class:`~voxar.models.static_decode.StaticDecoder`) or ``"cuda-graph"`` (the static step replayed as a CUDA
        graph; CUDA only). Same audio to float tolerance; static modes need an LM chunk size of 1."""
        if mode not in ("dynamic", "static", "cuda-graph"):
            raise VoxarConfigError(f"decode mode must be 'dynamic', 'static' or 'cuda-graph', got {mode!r}")
        if mode == "cuda-graph" and self.device.type != "cuda":
            raise VoxarConfigError(f"decode mode 'cuda-graph' needs a CUDA device, the model is on {self.device}")
        self.decode = mode  # type: ignore[assignment]

    @property
    def default_head(self) -> str:
        """The head used when none is named: the model directory's ``default_head`` (``"fm"`` unless its
        evaluation found the one-step MF head better)."""
        return self.cfg.default_head

    @property
    def quantize(self) -> str:
        """``"int8"`` once :meth:`set_quantize` packed the flow heads, else ``"none"`` (read off the heads)."""
        from voxar.models.quantize import is_quantized

        return "int8" if is_quantized(self.model.fm_head) else "none"

    def set_quantize(self, mode: str | None) -> None:
        """``"int8"``: replace the flow heads' linear layers by int8 ones for faster CPU decoding (see
        :mod:`voxar.models.quantize`; about 2x on the FM head, slightly different audio); ``"none"`` / None: keep
        the model as loaded. One-way (reload the model to undo); CPU only."""
        from voxar.models.quantize import check_mode, quantize_int8

        if mode is None or check_mode(mode) == self.quantize:
            return
        if mode == "none":
            raise VoxarConfigError("the heads are already quantized; load the model again for full precision")
        if self.device.type != "cpu":
            raise VoxarConfigError(f"--quantize int8 is for CPU inference; the model is on {self.device}")
        self.model.fm_head = quantize_int8(self.model.fm_head)
        if self.model.mf_head is not None:
            self.model.mf_head = quantize_int8(self.model.mf_head)

    def set_temperature(self, temperature: float | None) -> None:
        """Scale of the heads' starting noise for later generations (None: keep the model's; see
        :class:`~voxar.models.heads.HeadConfig`); out of [0, 2] is a :class:`VoxarConfigError`."""
        if temperature is None:
            return
        if not 0.0 <= float(temperature) <= 2.0:
            raise VoxarConfigError(f"temperature must be in [0, 2], got {temperature}")
        for head in self.model.heads().values():
            head.cfg.temperature = float(temperature)

    def set_noise(self, mode: str | None) -> None:
        """Where the heads' starting noise comes from for later generations: ``"patch"`` (a fresh draw per patch) or
        ``"utterance"`` (one draw per generation, from the seed); None keeps the model's (see
        :class:`~voxar.models.heads.HeadConfig`)."""
        if mode is None:
            return
        from voxar.models.heads import NOISE_MODES

        if mode not in NOISE_MODES:
            raise VoxarConfigError(f"noise must be 'patch' or 'utterance', got {mode!r}")
        for head in self.model.heads().values():
            head.cfg.noise = mode  # type: ignore[assignment]

    def set_feedback(self, on: bool) -> None:
        """Whether the LM reads each generated patch back (default: the model directory's ``feedback``, normally
        on). Off, a text-pointer LM trained with ``input_drop`` generates from the text pointer alone, free of its own
        audio's errors (chunk size 1)."""
        if not on and self.model.lm.pointer is None:
            raise VoxarConfigError("decoding without feedback needs a text-pointer LM (lm.pointer)")
        self.model.lm.feedback = bool(on)

    def save_pretrained(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the model (not the vocoder) as a TTS model directory that :meth:`from_pretrained` reads."""
        import json

        from voxar.models.modeldir import save_model_dir

        if self.quantize != "none":
            raise VoxarConfigError("a quantized model cannot be saved as a model directory; save it unquantized")
        tok = json.dumps(self.tokenizer.to_dict(), ensure_ascii=False, indent=1)
        model = self.model.cpu()
        try:
            return save_model_dir(model, self.cfg, KIND, path, extra_files={TOKENIZER_FILE: tok}, overwrite=overwrite)
        finally:
            self.model.to(self.device)

    @property
    def sample_rate(self) -> int:
        return int(self.mel_cfg.sample_rate)

    # ------------------------------------------------------------------------------------------- inputs
    def encode_text(self, text: str, what: str = "text") -> list[int]:
        """Token ids of ``text``; :class:`VoxarTextError` when it is empty or has nothing pronounceable."""
        ids = self.tokenizer.encode(text)
        if not pronounceable(self.tokenizer, ids):
            raise VoxarTextError(f"{what} {text[:40]!r} has no pronounceable symbol")
        return ids

    def prompt_mel(self, prompt_wav: str | Path | np.ndarray | torch.Tensor) -> torch.Tensor:
        """A prompt (file path, or float waveform ``(L,)`` at :attr:`sample_rate`) -> raw log-mel ``(1, M, T)``."""
        from voxar.audio import check_waveform, load_audio, log_mel

        if isinstance(prompt_wav, (str, Path)):
            name = str(prompt_wav)
            wav, _ = load_audio(
                prompt_wav, self.sample_rate, max_seconds=MAX_PROMPT_SECONDS, require_speech=True, silence_db=SILENCE_DB
            )
        else:
            name = "<prompt array>"
            arr = check_waveform(prompt_wav, name)
            if arr.ndim > 2 or (arr.ndim == 2 and arr.shape[0] != 1):
                raise VoxarAudioError(f"{name}: expected a mono waveform (L,) or (1, L), got shape {arr.shape}")
            wav = np.asarray(arr, dtype=np.float32).reshape(-1)
            peak = float(np.max(np.abs(wav)))
            if peak <= 10 ** (SILENCE_DB / 20):
                raise VoxarAudioError(f"{name}: audio is silent (peak below {SILENCE_DB:g} dBFS)")
        seconds = len(wav) / self.sample_rate
        if seconds < MIN_PROMPT_SECONDS:
            raise VoxarAudioError(
                f"{name}: prompt is {seconds:.2f} s long; at least {MIN_PROMPT_SECONDS:g} s is needed"
            )
        if seconds > MAX_PROMPT_SECONDS:
            raise VoxarAudioError(
                f"{name}: prompt is {seconds:.1f} s long, over the {MAX_PROMPT_SECONDS:g} s limit; cut it first"
            )
        mel = torch.from_numpy(log_mel(wav, self.mel_cfg))  # (M, T)
        return mel[None].to(self.device)  # (M, T) -> (1, M, T)

    def _conditioning(
        self, prompt_wav: Any, prompt_text: str | None
    ) -> tuple[dict[str, torch.Tensor | None], list[int]]:
        """LM conditioning kwargs and the prompt transcript's ids (prefix of every sentence in continuation)."""
        if prompt_wav is None:
            if prompt_text is not None:
                raise VoxarTextError("prompt_text was given without a prompt audio")
            return {}, []
        mel = self.prompt_mel(prompt_wav)
        cond: dict[str, torch.Tensor | None] = {"ref_mels": mel}
        if prompt_text is None:
            return cond, []
        prefix = self.encode_text(prompt_text, "prompt text") + [self.tokenizer.symbols.index(" ")]
        n_patches = mel.shape[-1] // self.cfg.lm.patch_size
        if n_patches < 1 or n_patches >= self.cfg.lm.max_patches:
            raise VoxarAudioError(
                f"prompt of {n_patches} patches does not fit the model (max {self.cfg.lm.max_patches})"
            )
        return {**cond, "prompt_mels": mel}, prefix

    # ------------------------------------------------------------------------------------------- generation
    def encode_sentences(self, text: str) -> list[list[int]]:
        """Token ids of each sentence of ``text`` (:func:`voxar.text.split_sentences`), dropping pieces with nothing
        to speak; :class:`VoxarTextError` when the text is empty or has nothing pronounceable at all."""
        from voxar.text import split_sentences

        if not isinstance(text, str) or not text.strip():
            raise VoxarTextError("text is empty or whitespace only; nothing to speak")
        encoded = []
        for s in (s for s in split_sentences(text) if s.strip()):
            try:
                encoded.append(self.encode_text(s))
            except VoxarTextError:
                log.debug("skipping a piece with nothing to speak: %r", s)
        if not encoded:
            raise VoxarTextError(f"text {text[:40]!r} has no pronounceable symbol")
        return encoded

    def generate_segment(
        self,
        ids: list[int],
        cond: dict[str, torch.Tensor | None],
        prefix: list[int],
        flow_head: FlowHead,
        generator: torch.Generator,
        *,
        steps: int | None = None,
        cfg: float | None = None,
        chunk_size: int | None = None,
        index: int = 0,
        min_patches: int | None = None,
        max_patches: int | None = None,
    ) -> Iterator[torch.Tensor]:
        """Raw log-mel chunks ``(M, n)`` of one sentence/segment (token ``ids``) as the LM emits them.

        ``cond``/``prefix`` come from :meth:`_conditioning`; ``generator`` carries the random state from segment to
        segment; ``min_patches``/``max_patches`` override the length guards (benchmarks fix the length with them).
        """
        lm = self.model.lm
        full = prefix + ids
        if len(full) > lm.cfg.max_text_len:
            raise VoxarTextError(
                f"sentence {index + 1} ({len(full)} tokens with the prompt text) exceeds the model's "
                f"max_text_len {lm.cfg.max_text_len}"
            )
        text_ids = torch.tensor([full], dtype=torch.long, device=self.device)  # (1, Lt)
        text_lens = torch.tensor([len(full)], device=self.device)
        if prefix:  # continuation: the text pointer starts at the target's first phone
            cond = {**cond, "text_start": torch.tensor([len(prefix)], device=self.device)}
        floor = max(1, int(MIN_PATCHES_PER_TOKEN * len(ids))) if min_patches is None else min_patches
        with torch.inference_mode():
            for mel, valid in stream(
                lm, flow_head, text_ids, text_lens, chunk_size=chunk_size, steps=steps, cfg_scale=cfg,
                min_patches=floor, max_patches=max_patches, generator=generator, decode=self.decode, **cond,
            ):  # fmt: skip
                n = int(valid[0])
                if n > 0:
                    yield mel[0, :, :n].float()  # (1, M, n*P) -> (M, n)

    def _sentence_chunks(
        self,
        text: str,
        prompt_wav: Any,
        prompt_text: str | None,
        head: Literal["fm", "mf"] | None,
        steps: int | None,
        cfg: float | None,
        seed: int,
        chunk_size: int | None,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """``(sentence index, raw log-mel chunk (M, n))`` step by step, sentence after sentence."""
        flow_head = self.model.head(head or self.default_head)
        encoded = self.encode_sentences(text)
        cond, prefix = self._conditioning(prompt_wav, prompt_text)
        gen = torch.Generator(self.device).manual_seed(int(seed))
        for i, ids in enumerate(encoded):
            for mel in self.generate_segment(
                ids, cond, prefix, flow_head, gen, steps=steps, cfg=cfg, chunk_size=chunk_size, index=i
            ):
                yield i, mel

    def stream_patches(
        self,
        text: str,
        prompt_wav: str | Path | np.ndarray | None = None,
        prompt_text: str | None = None,
        *,
        head: Literal["fm", "mf"] | None = None,
        steps: int | None = None,
        cfg: float | None = None,
        seed: int = 0,
        chunk_size: int | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield raw log-mel chunks ``(M, n)`` as the LM emits them (``n`` = ``chunk_size`` patches of P frames,
        fewer at a sentence's end). Between sentences a chunk of silence (:data:`PAUSE_SECONDS` at the log floor)
        is yielded. With the same arguments (``chunk_size`` included: it is the LM's emission chunk and changes its
        attention when > 1), each sentence's chunks concatenate exactly to its mel from :meth:`synthesize_mels`."""
        pause = int(round(PAUSE_SECONDS * self.sample_rate / self.mel_cfg.hop_length))
        floor = float(np.log(self.mel_cfg.log_floor))
        last = 0
        for i, mel in self._sentence_chunks(text, prompt_wav, prompt_text, head, steps, cfg, seed, chunk_size):
            if i != last:
                yield torch.full((self.mel_cfg.n_mels, pause), floor, device=mel.device)
                last = i
            yield mel

    def synthesize_mels(
        self,
        text: str,
        prompt_wav: str | Path | np.ndarray | None = None,
        prompt_text: str | None = None,
        *,
        head: Literal["fm", "mf"] | None = None,
        steps: int | None = None,
        cfg: float | None = None,
        seed: int = 0,
        chunk_size: int | None = None,
    ) -> list[torch.Tensor]:
        """One raw log-mel ``(M, T_i)`` per sentence (arguments as :meth:`synthesize`)."""
        mels: list[list[torch.Tensor]] = []
        for i, mel in self._sentence_chunks(text, prompt_wav, prompt_text, head, steps, cfg, seed, chunk_size):
            while len(mels) <= i:
                mels.append([])
            mels[i].append(mel)
        return [torch.cat(parts, dim=-1) for parts in mels if parts]

    def vocode(self, mel: torch.Tensor) -> np.ndarray:
        """Raw log-mel ``(M, T)`` -> waveform float32 ``(T * hop,)``."""
        with torch.inference_mode():
            wav = self.vocoder(mel[None].to(self.device))  # (1, M, T) -> (1, L)
        n = mel.shape[-1] * self.mel_cfg.hop_length
        out = wav[0, :n].float().cpu().numpy()
        return np.pad(out, (0, max(0, n - len(out))))

    def synthesize(
        self,
        text: str,
        prompt_wav: str | Path | np.ndarray | None = None,
        prompt_text: str | None = None,
        *,
        head: Literal["fm", "mf"] | None = None,
        steps: int | None = None,
        cfg: float | None = None,
        seed: int = 0,
        chunk_size: int | None = None,
    ) -> tuple[np.ndarray, int]:
        """Speak ``text`` in the prompt's voice; returns ``(wav float32 (L,), sample_rate)``.

        ``prompt_wav``: a file or a waveform at :attr:`sample_rate` (None: the average voice); ``prompt_text``:
        its transcript (prompt continuation), or None (reference-encoder conditioning). ``head``: ``"fm"`` or
        ``"mf"`` (None: :attr:`default_head`); ``steps``/``cfg``: sampling steps and guidance scale (None: the
        head's defaults); ``seed`` makes the result reproducible; ``chunk_size``: LM emission chunk in patches
        (None: the model's).
        """
        mels = self.synthesize_mels(
            text, prompt_wav, prompt_text, head=head, steps=steps, cfg=cfg, seed=seed, chunk_size=chunk_size
        )
        n_fade = int(round(FADE_SECONDS * self.sample_rate))
        pause = np.zeros(int(round(PAUSE_SECONDS * self.sample_rate)), dtype=np.float32)
        pieces: list[np.ndarray] = []
        for i, mel in enumerate(mels):
            if i:
                pieces.append(pause)
            pieces.append(raised_cosine_fades(self.vocode(mel), n_fade))
        wav = np.concatenate(pieces).astype(np.float32)
        return np.clip(wav, -1.0, 1.0), self.sample_rate


__all__ = [
    "DEFAULT_MODEL_DIR",
    "DEFAULT_VOICE",
    "MAX_PROMPT_SECONDS",
    "MIN_PROMPT_SECONDS",
    "TTS",
    "TTSModel",
    "TTSModelConfig",
    "default_mf_head",
    "pronounceable",
    "raised_cosine_fades",
    "resolve_vocoder",
    "silent_symbols",
]
