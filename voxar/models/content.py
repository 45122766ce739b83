"""Streaming content encoder for VC: a chunk-aware conformer CTC phone recogniser whose low-dim bottleneck (BNF) is the
VC model's content stream (method brief 3.4, 4, 6.4: MeanVC's recipe, scaled down).

**Pipeline.** Raw log-mel ``(B, n_mels, T)`` at 10 ms -> CMVN (:meth:`ContentEncoder.set_mel_stats`) -> causal conv
subsampling x ``S`` (``S`` frames stacked, two causal convs) -> conformer blocks (macaron FFN, chunk-aware attention,
causal depthwise conv with LayerNorm) -> BNF ``LayerNorm(Linear(h))`` -> CTC logits over the
:class:`~voxar.text.PhonemeTokenizer` ids plus a blank (``blank_id = vocab_size``, the last logit).
**Why x2 (20 ms frames):** the CTC targets (espeak-ng phones, :func:`ctc_targets`) come at 0.59 per 40 ms frame on
average on the synth corpus, up to 0.74: too close to CTC's one label per frame (repeats need a blank between them);
at 20 ms it is 0.30, and the VC model gets finer content timing.

**Chunk-aware attention.** Frame ``i`` (chunk ``i // c``) sees its chunk and the ``L`` chunks before it
(:func:`chunk_mask`, shared by ``forward`` and ``step``), so lookahead does not grow with depth; positions are a
learned per-head bias on the clipped relative distance (no absolute positions: streams may run for hours). ``c`` and
``L`` are config settings, overridable per call (``forward(chunk_size=...)``, ``init_state(chunk_size=...)``) or as
defaults (:meth:`ContentEncoder.set_chunk`); ``chunk_size=0`` is full context (offline). Dynamic-chunk training
(WeNet style) draws both per batch (:meth:`ContentEncoder.sample_chunking`).

**Mel-rate BNF and latency.** ``bnf[t] = bnf_enc[(t - delay) // S]`` (repetition streams exactly, unlike
interpolation; zeros for ``t < delay``). An encoder frame is final when its chunk is complete, so output ``t`` needs
mel up to ``t + lookahead``, ``lookahead = S * c - 1 - delay`` (the per-frame StreamingModule contract).
``delay = S * cfg.chunk_size - 1 - cfg.lookahead`` is fixed by the config, so the content timing the VC model learns
never changes; a larger inference chunk only raises ``lookahead``. Defaults: ``S = 2``, ``c = 2`` (40 ms), lookahead
2 frames (20 ms), delay 1: a 40 ms VC block on the chunk grid (frames ``4k..4k+3``) is ready once its own frames are
in. **Streaming** (any chunk sizes, 0 and 1 included): mel waits in the state until a chunk is complete; the K/V of
the last ``L`` chunks and the causal convs' inputs are cached (bounded memory); ``flush`` encodes the last partial
chunk, zero-padded as ``forward`` pads, so the streamed output equals ``forward(...).bnf``.

**Speaker leakage.** The BNF is low-dim (about the CTC vocabulary size: the CTC projection leaves it little
unconstrained room) and the CTC branch sees it through dropout and noise. No instance norm over time: only a running
mean streams, and it is noisy in the first frames, where live VC starts. No gradient-reversal speaker classifier:
corpus speakers are voice presets, the VC model has strong speaker conditioning and source pitch/formant perturbation
of its own, and an adversary adds a loss weight to tune and training instability. **PPG output**:
:meth:`ContentEncoder.set_features` ``("ppg")`` makes the encoder emit the CTC phone posteriors (``vocab_size + 1``
channels, blank included) instead, through the same streaming path; a VC model chooses with
``VCConfig.content_features``. On the synth test speakers a nearest-centroid speaker-ID probe
(``python -m voxar.bin.speaker_probe``) finds 88 % from the tiny encoder's BNF, 58 % from its PPG (chance 7 %).

Legend: B batch, T mel frames, Te encoder frames (``ceil(T / S)``), D model width, H heads, Dh head dim, V CTC
classes (``vocab_size + 1``), Db ``bnf_dim``, S subsampling, c chunk size (encoder frames), L left chunks.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from voxar.errors import VoxarConfigError
from voxar.models.content_blocks import ConformerBlock, LayerCache
from voxar.modules.conv import ConvState, StreamingConv1d
from voxar.modules.streaming import StreamingModule

KIND = "content"
TOKENIZER_FILE = "tokenizer.json"
# Symbols of PhonemeTokenizer that are not phones: word spaces, punctuation and stress marks are not CTC targets.
DEFAULT_CTC_SKIP = [" ", ".", ",", "!", "?", ";", ":", "-", '"', "ˈ", "ˌ"]


@dataclass
class ContentConfig:
    """Content encoder hyperparameters (defaults: ``tiny``, :data:`CONTENT_SIZES`). ``chunk_size`` (encoder frames),
    ``left_chunks`` and ``lookahead`` (mel frames) are the streaming defaults and fix the BNF ``delay``;
    ``train_*`` lists are drawn per batch (0 = full context); ``ctc_skip``: tokenizer symbols that are no targets."""

    preset: str = "16k"
    n_mels: int = 80
    vocab_size: int = 65  # PhonemeTokenizer().vocab_size; the CTC blank is id vocab_size
    subsample: int = 2
    frontend_kernel: int = 3
    d_model: int = 96
    n_layers: int = 2
    n_heads: int = 4
    ffn: int = 384
    conv_kernel: int = 7
    bnf_dim: int = 64
    chunk_size: int = 2
    left_chunks: int = 8
    lookahead: int = 2
    rel_pos_max: int = 32
    dropout: float = 0.1
    bnf_dropout: float = 0.1
    bnf_noise: float = 0.1
    attn_impl: Literal["math", "sdpa"] = "sdpa"
    train_chunk_sizes: list[int] = field(default_factory=lambda: [1, 2, 2, 4, 0])
    train_left_chunks: list[int] = field(default_factory=lambda: [8])
    ctc_skip: list[str] = field(default_factory=lambda: list(DEFAULT_CTC_SKIP))

    def __post_init__(self) -> None:
        def bad(what: str) -> VoxarConfigError:
            return VoxarConfigError(f"ContentConfig: {what}")

        positive = "n_mels vocab_size subsample frontend_kernel d_model n_layers n_heads ffn conv_kernel bnf_dim"
        for key in (*positive.split(), "chunk_size", "rel_pos_max"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise bad(f"{key} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise bad(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        span = self.subsample * self.chunk_size
        if not 0 <= self.lookahead < span:
            raise bad(f"lookahead must be in [0, {span - 1}] mel frames for chunk_size {self.chunk_size}, got "
                      f"{self.lookahead}; use a larger chunk_size for more")  # fmt: skip
        if self.left_chunks < 0 or not self.train_chunk_sizes or not self.train_left_chunks:
            raise bad("left_chunks must be >= 0 and train_chunk_sizes / train_left_chunks non-empty lists")
        if min(self.train_chunk_sizes) < 0 or min(self.train_left_chunks) < 0:
            raise bad("train_chunk_sizes / train_left_chunks must be >= 0 (chunk size 0 = full context)")
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.bnf_dropout < 1.0 and self.bnf_noise >= 0):
            raise bad("dropout and bnf_dropout must be in [0, 1) and bnf_noise >= 0")

    @property
    def delay(self) -> int:
        """Mel frames the BNF is delayed by (fixed at training: ``subsample * chunk_size - 1 - lookahead``)."""
        return self.subsample * self.chunk_size - 1 - self.lookahead

    @classmethod
    def named(cls, name: str, **overrides: Any) -> ContentConfig:
        """A named size from :data:`CONTENT_SIZES` (``tiny``, ``small``) with field overrides."""
        if name not in CONTENT_SIZES:
            raise VoxarConfigError(f"unknown content encoder size {name!r}; valid sizes: {', '.join(CONTENT_SIZES)}")
        from voxar.config import from_dict

        return from_dict(cls, {**CONTENT_SIZES[name], **overrides}, where=f"content size {name}")


CONTENT_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(d_model=96, n_layers=2, n_heads=4, ffn=384, conv_kernel=7, bnf_dim=64),  # ~0.5M parameters
    "small": dict(d_model=256, n_layers=6, n_heads=4, ffn=1024, conv_kernel=15, bnf_dim=128),  # ~9.5M parameters
}


# ----------------------------------------------------------------------------------------------------- masks, CTC
def chunk_mask(q_idx: torch.Tensor, k_idx: torch.Tensor, chunk_size: int, left_chunks: int) -> torch.Tensor:
    """Chunk-aware attention mask: ``q_idx (Tq,)``, ``k_idx (Tk,)`` global encoder-frame indices -> ``(Tq, Tk)``
    bool, True where query chunk ``q // c`` may see key chunk ``k // c`` (same chunk or up to ``left_chunks``
    before it). ``chunk_size <= 0`` is full context (all True)."""
    if chunk_size <= 0:
        return torch.ones(q_idx.shape[0], k_idx.shape[0], dtype=torch.bool, device=q_idx.device)
    d = (q_idx // chunk_size)[:, None] - (k_idx // chunk_size)[None, :]  # (Tq, 1) - (1, Tk) -> (Tq, Tk)
    return (d >= 0) & (d <= left_chunks)


def ctc_targets(ids: Sequence[int], symbols: Sequence[str], skip: Sequence[str] = DEFAULT_CTC_SKIP) -> list[int]:
    """Tokenizer ids -> CTC targets (the phones): ids of the specials (``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``)
    and of the ``skip`` symbols (default: spaces, punctuation, stress marks) removed, order kept."""
    from voxar.text.symbols import SPECIALS

    drop = set(skip) | set(SPECIALS)
    return [int(i) for i in ids if symbols[int(i)] not in drop]


def ctc_greedy_decode(
    logits: torch.Tensor, lengths: torch.Tensor | None = None, blank: int | None = None
) -> list[list[int]]:
    """Best-path CTC decoding: ``logits (B, Te, V)`` (any scores; argmax per frame), ``lengths (B,)`` valid frames
    -> per item the ids with repeats merged and blanks removed. ``blank`` defaults to the last class (``V - 1``)."""
    if logits.dim() != 3:
        raise ValueError(f"ctc_greedy_decode expects logits (B, T, V), got shape {tuple(logits.shape)}")
    blank = logits.shape[-1] - 1 if blank is None else blank
    best = logits.argmax(dim=-1).cpu()  # (B, Te)
    n = lengths.tolist() if lengths is not None else [best.shape[1]] * best.shape[0]
    return [[i for i, _ in itertools.groupby(best[b, : n[b]].tolist()) if i != blank] for b in range(best.shape[0])]


def edit_distance(hyp: Sequence[Any], ref: Sequence[Any]) -> int:
    """Levenshtein distance (substitutions + deletions + insertions) between two sequences."""
    prev = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, start=1):
        cur = [i] + [0] * len(ref)
        for j, r in enumerate(ref, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r))
        prev = cur
    return prev[-1]


def phone_error_rate(hyps: Sequence[Sequence[Any]], refs: Sequence[Sequence[Any]]) -> float:
    """Corpus PER: total edit distance over total reference length (can exceed 1 with many insertions)."""
    if len(hyps) != len(refs):
        raise ValueError(f"phone_error_rate: {len(hyps)} hypotheses but {len(refs)} references")
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("phone_error_rate: the references hold no phones")
    return sum(edit_distance(h, r) for h, r in zip(hyps, refs, strict=True)) / total


# -------------------------------------------------------------------------------------------------------- encoder
@dataclass
class ContentOutput:
    """``bnf (B, out_dim, T)`` the output features (BNF, or PPG with ``features="ppg"``) at the mel frame rate (zero
    beyond each length), ``logits (B, Te, V)`` CTC scores, ``enc_lengths (B,)`` valid encoder frames."""

    bnf: torch.Tensor
    logits: torch.Tensor
    enc_lengths: torch.Tensor


@dataclass
class ContentState:
    """Streaming state of one (batched) stream: its chunk settings, counters (mel ``frames`` consumed, encoder
    frames computed, BNF frames ``emitted``), normalised mel frames ``pending (B, n_mels, < S * c)`` awaiting a
    whole chunk, mel-rate BNF ``out (B, Db, m)`` computed but not yet final, and the frontend/block caches."""

    chunk_size: int
    left_chunks: int
    frames: int
    enc_frames: int
    emitted: int
    pending: torch.Tensor
    out: torch.Tensor
    front: list[ConvState]
    layers: list[LayerCache]


class ContentEncoder(StreamingModule):
    """Streaming conformer CTC encoder; see the module docstring. ``features`` is what it outputs (``"bnf"`` or
    ``"ppg"``, :meth:`set_features`), ``out_dim`` their width, ``lookahead`` the mel frames an output frame waits for
    at the current default chunk size, ``delay`` the output's fixed delay."""

    def __init__(self, cfg: ContentConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ContentConfig()
        self.cfg = cfg
        self.n_mels, self.subsample, self.delay = cfg.n_mels, cfg.subsample, cfg.delay
        self.features: Literal["bnf", "ppg"] = "bnf"
        self.blank_id = cfg.vocab_size
        self.register_buffer("mel_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("mel_std", torch.ones(cfg.n_mels))
        d, k = cfg.d_model, cfg.frontend_kernel
        self.front = nn.ModuleList([StreamingConv1d(cfg.n_mels * cfg.subsample, d, k), StreamingConv1d(d, d, k)])
        self.front_dropout = nn.Dropout(cfg.dropout)
        self.rel_bias = nn.Parameter(torch.zeros(cfg.n_heads, 2 * cfg.rel_pos_max + 1))
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.n_layers))
        self.bnf_proj = nn.Linear(d, cfg.bnf_dim)
        self.bnf_norm = nn.LayerNorm(cfg.bnf_dim)
        self.bnf_dropout = nn.Dropout(cfg.bnf_dropout)
        self.ctc = nn.Linear(cfg.bnf_dim, cfg.vocab_size + 1)
        self.chunk_size, self.left_chunks = cfg.chunk_size, cfg.left_chunks
        self.set_chunk()

    # ------------------------------------------------------------------------------------------- settings, I/O
    @property
    def out_dim(self) -> int:
        """Width of the output features: ``bnf_dim``, or ``vocab_size + 1`` for PPGs."""
        return self.cfg.bnf_dim if self.features == "bnf" else self.cfg.vocab_size + 1

    def set_features(self, features: str) -> None:
        """Output ``"bnf"`` (the bottleneck, default) or ``"ppg"`` (CTC phone posteriors, blank included: they carry
        less of the speaker than the BNF). Running streams keep the features of their :meth:`init_state`."""
        if features not in ("bnf", "ppg"):
            raise VoxarConfigError(f"content features must be 'bnf' or 'ppg', got {features!r}")
        self.features = features  # type: ignore[assignment]

    def set_chunk(self, chunk_size: int | None = None, left_chunks: int | None = None) -> None:
        """Change the default chunk size (encoder frames, >= 1) and/or left chunks (None keeps the current one);
        updates :attr:`lookahead`. Running streams keep the settings of their :meth:`init_state`."""
        self.chunk_size, self.left_chunks = self._chunking(chunk_size, left_chunks, streaming=True)
        self.lookahead = self.lookahead_for(self.chunk_size)

    def _chunking(self, chunk_size: int | None, left_chunks: int | None, streaming: bool) -> tuple[int, int]:
        """``(chunk_size, left_chunks)`` with the module defaults filled in, validated."""
        c = self.chunk_size if chunk_size is None else int(chunk_size)
        n_left = self.left_chunks if left_chunks is None else int(left_chunks)
        if c < (1 if streaming else 0) or n_left < 0:
            need = "chunk_size >= 1 (0 = full context cannot stream)" if streaming else "chunk_size >= 0"
            raise VoxarConfigError(f"content encoder: need {need} and left_chunks >= 0, got {c} and {n_left}")
        return c, n_left

    def lookahead_for(self, chunk_size: int) -> int:
        """Mel frames an output frame waits for with chunks of ``chunk_size`` encoder frames."""
        return max(0, self.subsample * chunk_size - 1 - self.delay)

    def set_mel_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-bin CMVN statistics ``(n_mels,)`` of raw log-mels (from a dump's ``stats.safetensors``)."""
        self.mel_mean.copy_(torch.as_tensor(mean).reshape(-1))
        self.mel_std.copy_(torch.as_tensor(std).reshape(-1).clamp_min(1e-5))

    def _norm(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise VoxarConfigError(
                f"content encoder expects log-mel (B, {self.n_mels}, T), got shape {tuple(mel.shape)}"
            )
        return (mel.to(self.mel_mean.dtype) - self.mel_mean[:, None]) / self.mel_std[:, None]

    def save_pretrained(self, path: str | Path, overwrite: bool = False, tokenizer: dict | None = None) -> Path:
        """Write ``path/config.yaml`` + ``model.safetensors`` (kind ``content``), plus ``tokenizer.json`` when a
        tokenizer description (``Tokenizer.to_dict()``) is given."""
        import json

        from voxar.models.modeldir import save_model_dir

        extra = {TOKENIZER_FILE: json.dumps(tokenizer, ensure_ascii=False, indent=1)} if tokenizer else None
        return save_model_dir(self, self.cfg, KIND, path, extra_files=extra, overwrite=overwrite)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device = "cpu", preset: str | None = None
    ) -> ContentEncoder:
        """Load a content model directory (eval mode); ``preset`` (e.g. ``"16k"``) rejects another mel preset."""
        from voxar.models.modeldir import load_model_dir

        expect = {"preset": preset} if preset is not None else None
        model, _ = load_model_dir(path, KIND, ContentConfig, cls, device=device, expect=expect)
        return model  # type: ignore[return-value]

    def sample_chunking(self, rng: Any) -> tuple[int, int]:
        """Dynamic-chunk training: ``(chunk_size, left_chunks)`` drawn uniformly from the config's
        ``train_chunk_sizes`` / ``train_left_chunks`` with ``rng`` (a numpy Generator or ``random.Random``)."""
        sizes, lefts = self.cfg.train_chunk_sizes, self.cfg.train_left_chunks
        pick = rng.integers if hasattr(rng, "integers") else (lambda n: rng.randrange(n))
        return int(sizes[int(pick(len(sizes)))]), int(lefts[int(pick(len(lefts)))])

    # ----------------------------------------------------------------------------------------------- shared core
    def _stack(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised mel ``(B, M, T)``, ``T`` a multiple of S -> stacked ``(B, S * M, T / S)`` (frame-major)."""
        b, m, t = x.shape
        s = self.subsample
        x = x.reshape(b, m, t // s, s).permute(0, 3, 1, 2)  # (B, M, Te, S) -> (B, S, M, Te)
        return x.reshape(b, s * m, t // s)

    def _frontend(self, x: torch.Tensor, states: list[ConvState] | None) -> torch.Tensor:
        """Stacked ``(B, S * M, Te)`` -> ``(B, Te, D)`` through the causal subsampling convs."""
        for i, conv in enumerate(self.front):
            x = F.gelu(conv(x) if states is None else conv.step(x, states[i])[0])
        return self.front_dropout(x.transpose(1, 2))  # (B, D, Te) -> (B, Te, D)

    def _attn_bias(self, q_idx: torch.Tensor, k_idx: torch.Tensor, chunk: int, left: int) -> torch.Tensor:
        """Additive attention mask ``(H, Tq, Tk)``: relative-position bias where :func:`chunk_mask` allows, else
        ``-inf``."""
        r = self.cfg.rel_pos_max
        rel = (q_idx[:, None] - k_idx[None, :]).clamp(-r, r) + r  # (Tq, Tk) in [0, 2r]
        bias = self.rel_bias[:, rel]  # (H, Tq, Tk)
        return bias.masked_fill(~chunk_mask(q_idx, k_idx, chunk, left), float("-inf"))

    def _head(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``(B, Te, D)`` -> ``(bnf (B, Te, Db), logits (B, Te, V))``; noise/dropout on the CTC
        branch only in training."""
        bnf = self.bnf_norm(self.bnf_proj(h))
        noisy = bnf + self.cfg.bnf_noise * torch.randn_like(bnf) if self.training and self.cfg.bnf_noise else bnf
        return bnf, self.ctc(self.bnf_dropout(noisy))

    def _output(self, bnf: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The output features ``(B, Te, out_dim)``: the BNF or the phone posteriors ``softmax(logits)``."""
        return bnf if self.features == "bnf" else logits.float().softmax(dim=-1).to(bnf.dtype)

    def _to_mel_rate(self, bnf: torch.Tensor) -> torch.Tensor:
        """Encoder-rate ``(B, Te, Db)`` -> mel-rate ``(B, Db, S * Te)`` (each frame repeated S times)."""
        return bnf.transpose(1, 2).repeat_interleave(self.subsample, dim=-1)  # (B, Te, Db) -> (B, Db, S * Te)

    # ------------------------------------------------------------------------------------------------ full pass
    def forward(
        self, mel: torch.Tensor, lengths: torch.Tensor | None = None, chunk_size: int | None = None,
        left_chunks: int | None = None,
    ) -> ContentOutput:  # fmt: skip
        """Raw log-mel ``(B, n_mels, T)`` (+ valid ``lengths (B,)``) -> :class:`ContentOutput`.

        ``chunk_size`` (encoder frames; 0 = full context) and ``left_chunks`` default to the module's streaming
        settings (:meth:`set_chunk`); with the same settings ``bnf`` equals the streamed output.
        """
        x = self._norm(mel)
        b, _, t = x.shape
        c, n_left = self._chunking(chunk_size, left_chunks, streaming=False)
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=x.device)
        lengths = lengths.to(x.device).long()
        valid = torch.arange(t, device=x.device)[None, :] < lengths[:, None]  # (1, T) < (B, 1) -> (B, T)
        x = x * valid[:, None, :].to(x.dtype)  # padding = zeros in the normalised domain, as flush pads
        s = self.subsample
        x = F.pad(x, (0, (-t) % s))
        h = self._frontend(self._stack(x), None)  # (B, Te, D)
        te = h.shape[1]
        enc_lengths = (lengths + s - 1) // s
        idx = torch.arange(te, device=x.device)
        bias = self._attn_bias(idx, idx, c, n_left)  # (H, Te, Te)
        key_ok = idx[None, :] < enc_lengths[:, None]  # (B, Te)
        allow = key_ok[:, None, None, :] | torch.eye(te, dtype=torch.bool, device=x.device)  # (B, 1, Te, Te)
        mask = bias[None].masked_fill(~allow, float("-inf"))  # (B, H, Te, Te); every row keeps its diagonal
        for block in self.blocks:
            h = block(h, mask)
        bnf, logits = self._head(h)
        out = F.pad(self._to_mel_rate(self._output(bnf, logits)), (self.delay, 0))[..., :t]  # (B, out_dim, T)
        out = out * valid[:, None, :].to(out.dtype)
        return ContentOutput(bnf=out, logits=logits, enc_lengths=enc_lengths)

    def bottleneck(self, mel: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """BNF ``(B, Db, T)`` of raw log-mel ``(B, n_mels, T)`` with the default streaming chunk settings."""
        return self.forward(mel, lengths).bnf

    def ctc_loss(self, out: ContentOutput, targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
        """Mean CTC loss per target label: ``targets (B, U)`` padded ids, ``target_lengths (B,)``."""
        log_probs = out.logits.float().log_softmax(dim=-1).transpose(0, 1)  # (B, Te, V) -> (Te, B, V)
        return F.ctc_loss(
            log_probs, targets, out.enc_lengths, target_lengths, blank=self.blank_id, reduction="mean",
            zero_infinity=True,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------------ streaming
    def init_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None, *,
        chunk_size: int | None = None, left_chunks: int | None = None,
    ) -> ContentState:  # fmt: skip
        """A fresh stream; ``chunk_size`` (>= 1) / ``left_chunks`` default to the module's settings."""
        device, dtype = self._default_device_dtype(device, dtype)
        c, n_left = self._chunking(chunk_size, left_chunks, streaming=True)
        h, dh = self.cfg.n_heads, self.cfg.d_model // self.cfg.n_heads
        empty_kv = torch.zeros(batch_size, h, 0, dh, device=device, dtype=dtype)
        return ContentState(
            chunk_size=c, left_chunks=n_left, frames=0, enc_frames=0, emitted=0,
            pending=torch.zeros(batch_size, self.n_mels, 0, device=device, dtype=dtype),
            out=torch.zeros(batch_size, self.out_dim, self.delay, device=device, dtype=dtype),
            front=[conv.init_state(batch_size, device, dtype) for conv in self.front],
            layers=[
                LayerCache(empty_kv.clone(), empty_kv.clone(), blk.conv.dw.init_state(batch_size, device, dtype))
                for blk in self.blocks
            ],
        )  # fmt: skip

    def _advance(self, x: torch.Tensor, state: ContentState) -> None:
        """Encode normalised mel ``(B, M, n)`` (n a multiple of S: whole chunks, or the last partial one) and append
        its mel-rate BNF to ``state.out``."""
        h = self._frontend(self._stack(x), state.front)  # (B, Tn, D)
        e, cached = state.enc_frames, state.layers[0].k.shape[2]
        q_idx = torch.arange(e, e + h.shape[1], device=h.device)
        k_idx = torch.arange(e - cached, e + h.shape[1], device=h.device)
        mask = self._attn_bias(q_idx, k_idx, state.chunk_size, state.left_chunks)[None]  # (1, H, Tn, S)
        keep = state.left_chunks * state.chunk_size
        for block, cache in zip(self.blocks, state.layers, strict=True):
            h = block(h, mask, cache, keep)
        feats = self._output(*self._head(h))
        state.out = torch.cat([state.out, self._to_mel_rate(feats).to(state.out.dtype)], dim=-1)
        state.enc_frames += h.shape[1]

    def _emit(self, state: ContentState) -> torch.Tensor:
        """The computed BNF frames for mel frames already consumed: ``(B, Db, n)``."""
        n = min(state.out.shape[-1], state.frames - state.emitted)
        y, state.out = state.out[..., :n], state.out[..., n:]
        state.emitted += n
        return y

    def step(self, x: torch.Tensor, state: ContentState) -> tuple[torch.Tensor, ContentState]:
        """Raw log-mel chunk ``(B, n_mels, n)`` (any ``n >= 0``) -> ``(bnf (B, Db, n_out), state)``: every BNF frame
        that became final (all frames ``< frames_consumed - lookahead``, often more)."""
        state.pending = torch.cat([state.pending, self._norm(x).to(state.pending.dtype)], dim=-1)
        state.frames += x.shape[-1]
        per = self.subsample * state.chunk_size
        ready = state.pending.shape[-1] // per * per
        if ready:
            self._advance(state.pending[..., :ready], state)
            state.pending = state.pending[..., ready:]
        return self._emit(state), state

    def flush(self, state: ContentState) -> torch.Tensor:
        """End of stream: encode the last partial chunk and return the remaining BNF frames ``(B, Db, n)``."""
        if state.pending.shape[-1]:
            self._advance(F.pad(state.pending, (0, (-state.pending.shape[-1]) % self.subsample)), state)
            state.pending = state.pending[..., :0]
        return self._emit(state)
