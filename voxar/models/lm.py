"""Chunk-causal autoregressive transformer LM over mel patches (voxar's zero-shot TTS backbone).

**Sequence.** ``[speaker token] [<bos> text <eos>] [speech stream]``. The speaker token is a projection of a speaker
embedding (``spk_emb``, or the :class:`~voxar.models.refenc.RefEncoder` of a reference mel), or a learned "no
speaker" token. Text ids are raw tokenizer ids (``tok.encode(text)`` without ``add_bos``/``add_eos``); the LM adds
``<bos>``/``<eos>``. A *patch* is ``P`` consecutive normalised mel frames flattened frame-major to ``F = P * n_mels``
values, encoded by an MLP (dropout and, in training, Gaussian input noise against exposure bias).

**What predicts what.** Query token ``i`` has input ``x_0 = <audio-bos>`` (the text/speech separator) or
``x_i = enc(patch_{i-1})`` and position ``L + i`` (``L`` = the item's prefix length). Its output ``h_i`` conditions
the flow head to predict **patch i**, and the stop head's logit on ``h_i`` says "patch i is the last one". ``h_i``
never depends on patch ``i`` or later -- in every mode, in training and in inference.

**Attention.** The prefix (speaker + text) is bidirectional (``prefix_causal=False``, default) or causal; every
speech token sees the whole prefix; padding is never attended. Speech attention depends on ``chunk_size`` C:

- ``C = 1`` (plain causal, one stream): query ``i`` sees queries ``0..i``; decoding caches every token.
- ``C > 1`` (chunk-causal, two streams). Patches form emission chunks ``k = [kC, (k+1)C)``. A *clean* token ``j``
  (input ``enc(patch_j)``, position ``L + j + 1``, i.e. the same input and position as query ``j + 1``) sees the
  clean tokens of all chunks ``<= chunk(j)`` -- bidirectional inside its own chunk, causal across chunks. Query ``i``
  (in chunk ``k = i // C``) sees the clean tokens of chunks ``< k`` and the queries ``kC..i`` of its own chunk.
  So inside a chunk generation is still patch by patch (causal queries), while completed chunks are re-encoded
  bidirectionally. Training runs both streams in one teacher-forced pass (the clean stream only for chunks that
  some query can see). Inference (:meth:`PatchLM.step`) does exactly the same: it caches the prefix and the clean
  tokens of completed chunks; the queries of the current chunk are cached only until the chunk is complete, then
  rolled back and replaced by the chunk's clean tokens (one extra pass of C tokens per chunk). Both paths build
  their masks with the same function (:func:`slot_mask`) from per-slot metadata, so they agree by construction
  (tested to 1e-5).

``train_chunk_sizes`` lets training draw C per batch so one model serves several latencies (C = 1 is the cheap
single-stream pass; C > 1 doubles the speech part of the sequence).

**Prompt continuation.** Prompt mel patches (frames trimmed from the *start* to a multiple of P so the prompt ends
on a patch boundary) are the first speech patches; the text is the prompt's text followed by the target's. The LM
just continues: :meth:`PatchLM.prefill` consumes the prompt, and ``forward`` accepts ``prompt_mels`` in training
(outputs then cover the target patches only).

Legend: B batch, Lt text tokens, L prefix tokens, N target patches, M speech patches (prompt + target), P frames per
patch, F = P * n_mels, D model width, S key slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from voxar.errors import VoxarConfigError, VoxarTextError
from voxar.models.align import alignment_prior_loss
from voxar.models.heads import (
    StopHead,
    history_from_sequence,
    stop_loss,
)
from voxar.models.lm_slots import CLEAN, PAD, PREFIX, QUERY, LMState, Tokens, _cat, slot_mask
from voxar.models.pointer import NO_POINTER, TextPointer
from voxar.models.refenc import RefEncoder, RefEncoderConfig, length_mask
from voxar.modules.transformer import Transformer


@dataclass
class LMConfig:
    """Patch LM hyperparameters (defaults: ``tiny``; see :data:`LM_SIZES`). ``vocab_size`` must match the tokenizer."""

    vocab_size: int = 64
    n_mels: int = 80
    patch_size: int = 4
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    ffn: int = 512
    mlp: Literal["swiglu", "gelu"] = "swiglu"
    dropout: float = 0.1
    attn_impl: Literal["math", "sdpa"] = "sdpa"
    rope_base: float = 10000.0
    chunk_size: int = 1
    train_chunk_sizes: list[int] = field(default_factory=lambda: [1])
    prefix_causal: bool = False
    max_text_len: int = 512
    max_patches: int = 1500
    speaker_dim: int = 128
    ref_encoder: RefEncoderConfig | None = field(default_factory=RefEncoderConfig)
    patch_dropout: float = 0.2
    input_noise: float = 0.1
    input_drop: float = 0.0  # training: probability that a query reads no previous patch at all (zero input)
    stop_pos_weight: float = 50.0
    stop_n_positive: int = 1
    ctc: bool = False  # a CTC phone classifier on h (training aid: h must know the phone of the patch it predicts)
    # text pointer (voxar.models.pointer): each query reads the phone it speaks; trained on forced alignments
    pointer: bool = False
    pointer_window: int = 2  # text tokens each side of the pointed-at phone
    pointer_max_step: int = 3  # phones the pointer may advance per patch
    pointer_dwell: int = 0  # > 0: queries also read how long the pointer has stayed (clamped to this); 0: off
    pointer_skip_ids: list[int] = field(default_factory=list)  # token ids that are not phones (set by the trainer)
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3

    def __post_init__(self) -> None:
        where = "LMConfig"
        positive = "vocab_size n_mels patch_size d_model n_layers n_heads ffn chunk_size max_text_len max_patches"
        for key in (*positive.split(), "speaker_dim", "stop_n_positive"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise VoxarConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
        if not 0.0 <= self.input_drop < 1.0:
            raise VoxarConfigError(f"{where}: input_drop must be in [0, 1), got {self.input_drop}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise VoxarConfigError(f"{where}: d_model / n_heads must be an even integer")
        if not self.train_chunk_sizes or any(c < 1 for c in self.train_chunk_sizes):
            raise VoxarConfigError(f"{where}: train_chunk_sizes must be a non-empty list of sizes >= 1")
        ref = self.ref_encoder
        if ref is not None and (ref.out_dim != self.speaker_dim or ref.n_mels != self.n_mels):
            raise VoxarConfigError(f"{where}: ref_encoder out_dim/n_mels must equal speaker_dim/n_mels")
        if max(self.pad_id, self.bos_id, self.eos_id) >= self.vocab_size:
            raise VoxarConfigError(f"{where}: pad/bos/eos ids must be < vocab_size {self.vocab_size}")

    @property
    def patch_dim(self) -> int:
        return self.patch_size * self.n_mels

    @classmethod
    def named(cls, name: str, **overrides: Any) -> LMConfig:
        """A named size from :data:`LM_SIZES` (``tiny``, ``small``) with field overrides.

        A ``ref_encoder`` mapping takes ``n_mels`` and ``out_dim`` from the LM's ``n_mels`` / ``speaker_dim`` unless
        it sets them.
        """
        if name not in LM_SIZES:
            raise VoxarConfigError(f"unknown LM size {name!r}; valid sizes: {', '.join(LM_SIZES)}")
        from voxar.config import from_dict

        data = {**LM_SIZES[name], **overrides}
        if isinstance(data.get("ref_encoder"), dict):
            dims = {"n_mels": data.get("n_mels", 80), "out_dim": data.get("speaker_dim", 128)}
            data["ref_encoder"] = {**dims, **data["ref_encoder"]}
        return from_dict(cls, data, where=f"LM size {name}")


LM_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(d_model=128, n_layers=2, n_heads=4, ffn=512, ref_encoder=dict(channels=128)),
    "small": dict(d_model=512, n_layers=8, n_heads=8, ffn=2048, ref_encoder=dict(channels=256)),
}


class PatchLM(nn.Module):
    """Patch LM (module docstring). ``forward`` trains teacher-forced; ``prefill`` + ``step`` decode with a KV cache."""

    def __init__(self, cfg: LMConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or LMConfig()
        d, f = cfg.d_model, cfg.patch_dim
        self.text_emb = nn.Embedding(cfg.vocab_size, d)
        self.spk_proj = nn.Linear(cfg.speaker_dim, d)
        self.ref_encoder = RefEncoder(cfg.ref_encoder) if cfg.ref_encoder is not None else None
        self.patch_enc = nn.Sequential(nn.Linear(f, d), nn.SiLU(), nn.Dropout(cfg.patch_dropout), nn.Linear(d, d))
        self.transformer = Transformer(
            d, cfg.n_layers, cfg.n_heads, cfg.ffn, cfg.dropout, cfg.mlp, cfg.attn_impl, cfg.rope_base
        )
        self.stop_head = StopHead(d)
        # CTC over the target text from the query states (blank = pad_id); see :meth:`ctc_loss`
        self.ctc_head = nn.Linear(d, cfg.vocab_size) if cfg.ctc else None
        self.pointer = (
            TextPointer(
                cfg.vocab_size, d, cfg.pointer_window, cfg.pointer_max_step, cfg.pointer_skip_ids, cfg.pointer_dwell
            )
            if cfg.pointer
            else None
        )
        self.null_spk = nn.Parameter(torch.zeros(d))
        self.audio_bos = nn.Parameter(torch.zeros(d))
        # decoding reads each generated patch back (True, the AR default); False: queries read only the text
        # pointer, as the input_drop share of training did (no feedback of the model's own audio; chunk size 1)
        self.feedback = True
        self.register_buffer("mel_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("mel_std", torch.ones(cfg.n_mels))
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.null_spk, std=0.02)
        nn.init.normal_(self.audio_bos, std=0.02)

    # ------------------------------------------------------------------------------------------- mel <-> patches
    def set_mel_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the per-bin normalisation ``(n_mels,)`` (saved with the weights)."""
        self.mel_mean.copy_(torch.as_tensor(mean).reshape(-1))
        self.mel_std.copy_(torch.as_tensor(std).reshape(-1).clamp_min(1e-5))

    def _norm(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.mel_mean[:, None]) / self.mel_std[:, None]

    def patchify(
        self, mels: torch.Tensor, mel_lens: torch.Tensor | None = None, align: Literal["start", "end"] = "start"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw log-mels ``(B, n_mels, T)`` -> normalised patches ``(B, N, F)``, lengths ``(B,)``, valid ``(B, N, F)``.

        ``align="start"``: the last patch is zero-padded (targets). ``align="end"``: the first ``T % P`` frames are
        dropped so the sequence ends on a patch boundary (prompts).
        """
        b, m, t = mels.shape
        if m != self.cfg.n_mels:
            raise ValueError(f"expected mels (B, {self.cfg.n_mels}, T), got {tuple(mels.shape)}")
        p = self.cfg.patch_size
        lens = torch.full((b,), t, device=mels.device) if mel_lens is None else mel_lens.to(mels.device).long()
        x = self._norm(mels).transpose(1, 2)  # (B, n_mels, T) -> (B, T, n_mels)
        if align == "end":
            shift = lens % p
            src = (torch.arange(t, device=x.device)[None, :] + shift[:, None]).clamp_max(max(t - 1, 0))
            x = torch.gather(x, 1, src[:, :, None].expand(-1, -1, m))
            lens = lens - shift
            n = int(lens.max().item()) // p if b else 0
        else:
            n = -(-int(lens.max().item()) // p) if b else 0
        x = torch.nn.functional.pad(x[:, : n * p], (0, 0, 0, max(0, n * p - x.shape[1])))
        valid = length_mask(lens, n * p)[:, :, None].expand(-1, -1, m)  # (B, N*P, n_mels)
        x = (x * valid).reshape(b, n, p * m)  # (B, N*P, n_mels) -> (B, N, P*n_mels), frame-major
        return x, -(-lens // p), valid.reshape(b, n, p * m)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """Normalised patches ``(B, N, F)`` -> raw log-mels ``(B, n_mels, N * P)``."""
        b, n, _ = patches.shape
        x = patches.reshape(b, n * self.cfg.patch_size, self.cfg.n_mels).transpose(1, 2)  # -> (B, n_mels, N*P)
        return x * self.mel_std[:, None] + self.mel_mean[:, None]

    # ------------------------------------------------------------------------------------------- token building
    def _speaker(
        self, b: int, spk_emb: torch.Tensor | None, ref_mels: torch.Tensor | None, ref_lens: torch.Tensor | None
    ) -> torch.Tensor:
        """The speaker token ``(B, D)``: projected ``spk_emb``, the reference encoder's, or the "no speaker" one."""
        if spk_emb is not None and ref_mels is not None:
            raise ValueError("give either spk_emb or ref_mels, not both")
        if ref_mels is not None:
            if self.ref_encoder is None:
                raise VoxarConfigError("this LM has no reference encoder (ref_encoder: null); pass spk_emb")
            spk_emb = self.ref_encoder(self._norm(ref_mels), ref_lens)
        if spk_emb is None:
            return self.null_spk.expand(b, -1)
        return self.spk_proj(spk_emb)

    def _ids(self, text_ids: torch.Tensor, text_lens: torch.Tensor) -> torch.Tensor:
        """``<bos> text <eos>`` ids ``(B, Lt + 2)`` (padding after ``<eos>``)."""
        cfg = self.cfg
        b, lt = text_ids.shape
        text_lens = text_lens.to(text_ids.device).long()
        col = text_ids.new_full((b, 1), cfg.bos_id)
        ids = torch.cat([col, text_ids, col], dim=1)  # (B, Lt + 2)
        ids = ids.scatter(1, (text_lens + 1)[:, None], cfg.eos_id)
        return ids.masked_fill(~length_mask(text_lens + 2, lt + 2), cfg.pad_id)

    def _pointer_inputs(
        self, text_ids: torch.Tensor, text_lens: torch.Tensor, text_start: torch.Tensor | None, ptr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pointer embeddings ``(B, n, D)`` of slot values ``ptr (B, n)`` and the ``(ids, table, n_phones)`` they
        index (:class:`~voxar.models.pointer.TextPointer`)."""
        assert self.pointer is not None
        ids = self._ids(text_ids, text_lens)
        table, n_phones = self.pointer.phone_table(ids, text_lens, text_start)
        dwell = self.pointer.dwell(ptr) if self.pointer.max_dwell else None
        return self.pointer.embed(ids, table, ptr, dwell), ids, table, n_phones

    def _prefix(
        self, text_ids: torch.Tensor, text_lens: torch.Tensor, spk: torch.Tensor
    ) -> tuple[Tokens, torch.Tensor]:
        """``[spk] <bos> text <eos>`` -> tokens ``(B, L, ...)`` and the prefix lengths ``(B,)``."""
        cfg = self.cfg
        b, lt = text_ids.shape
        text_lens = text_lens.to(text_ids.device).long()
        if b and int(text_lens.max()) > cfg.max_text_len:
            raise VoxarTextError(
                f"text of {int(text_lens.max())} tokens exceeds the model's max_text_len {cfg.max_text_len}; "
                "split it into sentences"
            )
        ids = self._ids(text_ids, text_lens)
        lens = text_lens + 3  # speaker + bos + text + eos
        emb = torch.cat([spk[:, None].to(self.audio_bos.dtype), self.text_emb(ids)], dim=1)  # (B, L, D)
        idx = torch.arange(lt + 3, device=ids.device).expand(b, -1)
        kind = torch.where(length_mask(lens, lt + 3), PREFIX, PAD)
        return Tokens(emb, kind, idx, idx), lens

    def _encode(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch encoder ``(B, n, F) -> (B, n, D)`` (input noise and whole-patch dropout in training)."""
        if self.training and self.cfg.input_noise > 0:
            patches = patches + self.cfg.input_noise * torch.randn_like(patches)
        enc = self.patch_enc(patches)
        if self.training and self.cfg.input_drop > 0:  # whole patches: the query must go by the text (pointer)
            keep = torch.rand(*enc.shape[:-1], 1, device=enc.device) >= self.cfg.input_drop
            enc = enc * keep.to(enc.dtype)
        return enc

    def _query_inputs(self, enc: torch.Tensor, q0: int, q1: int) -> torch.Tensor:
        """Inputs of queries ``q0..q1-1``: ``<audio-bos>`` for query 0, else ``enc[:, i - 1]`` (``enc`` encodes
        patches ``0..``); returns ``(B, q1 - q0, D)``."""
        b = enc.shape[0]
        parts = [self.audio_bos.expand(b, 1, -1)] if q0 == 0 else []
        return torch.cat([*parts, enc[:, max(q0 - 1, 0) : q1 - 1]], dim=1)

    @staticmethod
    def _speech(
        plens: torch.Tensor,
        clean_in: torch.Tensor,
        j0: int,
        clean_len: torch.Tensor,
        query_in: torch.Tensor,
        q0: int,
        query_len: torch.Tensor,
    ) -> Tokens:
        """Clean tokens ``j0..`` (inputs ``clean_in (B, nc, D)``) then queries ``q0..`` (``query_in (B, nq, D)``).

        Clean ``j`` is valid when ``j < clean_len``, query ``i`` when ``i < query_len`` (both ``(B,)``); positions
        are ``plens + j + 1`` and ``plens + i``.
        """
        dev = query_in.device
        cj = torch.arange(j0, j0 + clean_in.shape[1], device=dev)
        qi = torch.arange(q0, q0 + query_in.shape[1], device=dev)
        c_kind = torch.where(cj[None] < clean_len[:, None], CLEAN, PAD)
        q_kind = torch.where(qi[None] < query_len[:, None], QUERY, PAD)
        idx = torch.cat([cj, qi]).expand(query_in.shape[0], -1)
        pos = plens[:, None] + torch.cat([cj + 1, qi])[None]
        return Tokens(torch.cat([clean_in, query_in], dim=1), torch.cat([c_kind, q_kind], dim=1), idx, pos)

    def _run(self, tokens: Tokens, chunk: int, state: LMState | None = None, **probs: Any) -> torch.Tensor:
        """Transformer over new tokens (appending to ``state``'s caches and metadata if given) -> ``(B, T, D)``;
        ``probs``: ``probs_from``/``probs_out`` of :meth:`Transformer.forward`."""
        k_kind, k_idx = tokens.kind, tokens.idx
        if state is not None:
            k_kind, k_idx = torch.cat([state.key_kind, k_kind], 1), torch.cat([state.key_idx, k_idx], 1)
        mask = slot_mask(tokens.kind, tokens.idx, k_kind, k_idx, chunk, self.cfg.prefix_causal)
        y = self.transformer(tokens.emb, tokens.pos, mask, state.caches if state is not None else None, **probs)
        if state is not None:
            state.key_kind, state.key_idx = k_kind, k_idx
        return y

    def _chunk(self, chunk_size: int | None) -> int:
        if chunk_size is None:
            sizes = self.cfg.train_chunk_sizes
            if not self.training:
                return self.cfg.chunk_size
            return int(sizes[int(torch.randint(len(sizes), ()).item())])
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return int(chunk_size)

    # ------------------------------------------------------------------------------------------- training
    def forward(
        self,
        text_ids: torch.Tensor,
        text_lens: torch.Tensor,
        mels: torch.Tensor,
        mel_lens: torch.Tensor,
        *,
        spk_emb: torch.Tensor | None = None,
        ref_mels: torch.Tensor | None = None,
        ref_lens: torch.Tensor | None = None,
        prompt_mels: torch.Tensor | None = None,
        prompt_lens: torch.Tensor | None = None,
        chunk_size: int | None = None,
        n_history: int = 0,
        align_layers: tuple[int, ...] = (),
        align_sigma: float = 0.2,
        align_heads: int = 0,
        input_patches: torch.Tensor | None = None,
        pointer: torch.Tensor | None = None,
        text_start: torch.Tensor | None = None,
        feedback: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Teacher-forced pass. ``text_ids (B, Lt)`` raw ids (padding anywhere past ``text_lens``), ``mels (B,
        n_mels, T)`` raw log-mels, ``spk_emb (B, speaker_dim)`` or ``ref_mels (B, n_mels, T_ref)`` (or neither),
        ``prompt_mels`` for continuation training, ``chunk_size`` (None: drawn from ``train_chunk_sizes`` in
        training, ``cfg.chunk_size`` in eval), ``n_history`` history patches to return for the head.

        Returns ``h (B, N, D)`` (``h[:, i]`` predicts target patch i), ``stop_logits (B, N)``, ``targets (B, N, F)``
        (normalised), ``target_mask (B, N, F)`` (valid frames), ``mask (B, N)`` (valid patches), ``lengths (B,)``
        (patches), ``history (B, N, n_history * F)`` (previous patches, prompt included), ``chunk_size``, and with
        ``align_layers`` the scalar ``align`` (:func:`~voxar.models.align.alignment_prior_loss` of the first
        ``align_heads`` heads of those layers, 0 = all).

        ``input_patches (B, N, F)`` (normalised, as ``targets``): what the queries read as the previous target
        patches instead of the recordings' (scheduled sampling: the model's own predictions); the targets, the
        prompt and the history stay the real ones.

        ``pointer (B, N)`` (LMs with ``cfg.pointer``): the aligned phone index of each target patch (``-1..U``;
        ``pointer[:, 0]`` is -1), ``text_start (B,)`` where the target text starts in ``text_ids`` (continuation);
        the output then has ``adv_logits (B, N, K)``.

        ``feedback=False``: no query reads a previous target patch (zeros, as decoding with feedback off), so with
        the pointer given, ``h`` is what free-running generation along that pointer path computes (the conditions of
        ground-truth-aligned outputs, :mod:`voxar.bin.gta_mels`).
        """
        chunk = self._chunk(chunk_size)
        b, dev = mels.shape[0], mels.device
        tgt, n_tgt, tgt_mask = self.patchify(mels, mel_lens)
        n = tgt.shape[1]
        if prompt_mels is not None:
            pr, n_pr, _ = self.patchify(prompt_mels, prompt_lens, align="end")
            m = int((n_pr + n_tgt).max())
            slots = torch.arange(m, device=dev)[None, :].expand(b, -1)  # (B, M)
            from_tgt = (slots - n_pr[:, None]).clamp(0, max(n - 1, 0))
            seq = torch.gather(tgt, 1, from_tgt[:, :, None].expand(-1, -1, tgt.shape[2]))
            if pr.shape[1]:
                from_pr = slots.clamp_max(pr.shape[1] - 1)
                seq_pr = torch.gather(pr, 1, from_pr[:, :, None].expand(-1, -1, pr.shape[2]))
                seq = torch.where((slots < n_pr[:, None])[:, :, None], seq_pr, seq)  # (B, M, F)
        else:
            seq, n_pr = tgt, torch.zeros(b, dtype=torch.long, device=dev)
        n_seq = n_pr + n_tgt
        m = seq.shape[1]
        seq_in = seq
        if input_patches is not None:
            if input_patches.shape != tgt.shape:
                raise ValueError(f"input_patches must have the targets' shape {tuple(tgt.shape)}")
            slots = torch.arange(m, device=dev)[None, :] - n_pr[:, None]  # (B, M): target index of each slot
            own = torch.gather(input_patches, 1, slots.clamp(0, max(n - 1, 0))[:, :, None].expand(-1, -1, tgt.shape[2]))
            seq_in = torch.where((slots >= 0)[:, :, None], own.to(seq.dtype), seq)  # (B, M, F)
        prefix, plens = self._prefix(text_ids, text_lens, self._speaker(b, spk_emb, ref_mels, ref_lens))
        n_clean = ((m - 1) // chunk) * chunk if chunk > 1 else 0  # clean chunks some query can see
        enc = self._encode(seq_in[:, : m - 1])  # (B, M - 1, D): patch M-1 is never an input
        if not feedback:  # the target patches are never read back (the prompt's still are)
            if chunk > 1:
                raise VoxarConfigError("feedback=False needs LM chunk size 1 (as decoding without feedback)")
            own = torch.arange(m - 1, device=dev)[None, :] >= n_pr[:, None]  # (B, M - 1)
            enc = enc.masked_fill(own[:, :, None], 0.0)
        clean_in, query_in = enc[:, :n_clean], self._query_inputs(enc, 0, m)
        if self.pointer is not None:
            if pointer is None:
                raise VoxarConfigError("this LM has a text pointer (lm.pointer): training needs the aligned pointer")
            slots = torch.arange(m, device=dev)[None, :] - n_pr[:, None]  # (B, M): target index of each slot
            vals = torch.gather(pointer.to(dev), 1, slots.clamp(0, max(n - 1, 0)))
            pemb = self._pointer_inputs(text_ids, text_lens, text_start, torch.where(slots >= 0, vals, NO_POINTER))[0]
            clean_in, query_in = clean_in + pemb[:, 1 : n_clean + 1], query_in + pemb  # clean j reads slot j + 1
        speech = self._speech(plens, clean_in, 0, n_seq, query_in, 0, n_seq)
        probs: list[torch.Tensor] = []
        y = self._run(_cat(prefix, speech), chunk, probs_from=tuple(align_layers), probs_out=probs)
        lp = prefix.emb.shape[1]
        q = y[:, lp + n_clean :]  # (B, M, D): query outputs
        sel = (n_pr[:, None] + torch.arange(n, device=dev)[None, :]).clamp_max(max(m - 1, 0))  # (B, N)
        h = torch.gather(q, 1, sel[:, :, None].expand(-1, -1, q.shape[2]))
        hist = history_from_sequence(seq, n_history)
        hist = torch.gather(hist, 1, sel[:, :, None].expand(-1, -1, hist.shape[2]))
        out = {
            "h": h,
            "stop_logits": self.stop_head(h),
            "targets": tgt,
            "target_mask": tgt_mask,
            "mask": length_mask(n_tgt, n),
            "lengths": n_tgt,
            "history": hist,
            "chunk_size": torch.tensor(chunk),
        }
        if self.pointer is not None:
            out["adv_logits"] = self.pointer.advance(h)
        if probs:  # speech queries after prefix + clean tokens; text keys = prefix slots 1.. (bos, text, eos)
            out["align"] = alignment_prior_loss(
                probs, slice(lp + n_clean, None), slice(1, lp), n_seq, plens - 1, align_sigma, align_heads
            )
        return out

    def stop_loss(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted stop BCE on ``forward``'s output (``stop_pos_weight``, ``stop_n_positive``)."""
        return stop_loss(out["stop_logits"], out["lengths"], self.cfg.stop_pos_weight, self.cfg.stop_n_positive)

    def pointer_loss(self, out: dict[str, torch.Tensor], pointer: torch.Tensor) -> torch.Tensor:
        """Advance-head cross-entropy on ``forward``'s output for the aligned ``pointer (B, N)``."""
        if self.pointer is None:
            raise VoxarConfigError("this LM has no text pointer (set lm.pointer: true)")
        return self.pointer.loss(out["adv_logits"], pointer, out["lengths"])

    def ctc_loss(self, out: dict[str, torch.Tensor], targets: torch.Tensor, target_lens: torch.Tensor) -> torch.Tensor:
        """CTC of the phone sequence ``targets (B, S)`` (``target_lens (B,)``; the target text without silent
        symbols) from ``forward``'s ``h (B, N, D)`` over each item's ``lengths`` patches (blank = ``pad_id``).

        ``h_i`` conditions the head for patch ``i``, so this asks it to know which phone patch ``i`` holds: a dense,
        low-variance signal for the text alignment, where the flow loss alone lets the heads lean on the history.
        Mean over items of the loss per target symbol; impossible alignments (more phones than patches) count 0.
        """
        if self.ctc_head is None:
            raise VoxarConfigError("this LM has no CTC head (set lm.ctc: true to train with ctc_weight > 0)")
        logits = self.ctc_head(out["h"]).float()  # (B, N, V)
        log_probs = logits.log_softmax(-1).transpose(0, 1)  # (B, N, V) -> (N, B, V), as ctc_loss wants
        return nn.functional.ctc_loss(
            log_probs, targets, out["lengths"], target_lens, blank=self.cfg.pad_id, reduction="mean",
            zero_infinity=True,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------- decoding
    def prefill(
        self,
        text_ids: torch.Tensor,
        text_lens: torch.Tensor,
        *,
        spk_emb: torch.Tensor | None = None,
        ref_mels: torch.Tensor | None = None,
        ref_lens: torch.Tensor | None = None,
        prompt_mels: torch.Tensor | None = None,
        prompt_lens: torch.Tensor | None = None,
        chunk_size: int | None = None,
        text_start: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LMState]:
        """Encode the prefix (and the prompt patches, equal in number across the batch); returns ``(h (B, D),
        state)`` where ``h`` predicts the first patch to generate. Conditioning as in :meth:`forward`; with a text
        pointer, ``text_start (B,)`` is where the target text starts in ``text_ids`` (after a prompt transcript)."""
        cfg = self.cfg
        chunk = chunk_size or cfg.chunk_size
        b, dev = text_ids.shape[0], text_ids.device
        if prompt_mels is not None:
            seq, n_pr, _ = self.patchify(prompt_mels, prompt_lens, align="end")
            if b and bool((n_pr != n_pr[0]).any()):
                raise ValueError(f"batched prompts must have the same number of patches, got {n_pr.tolist()}")
            seq = seq[:, : int(n_pr[0]) if b else 0]
        else:
            seq = torch.zeros(b, 0, cfg.patch_dim, device=dev)
        n_p = seq.shape[1]
        if n_p >= cfg.max_patches:
            raise ValueError(f"prompt of {n_p} patches leaves no room: the model's max_patches is {cfg.max_patches}")
        q0 = (n_p // chunk) * chunk if chunk > 1 else 0
        prefix, plens = self._prefix(text_ids, text_lens, self._speaker(b, spk_emb, ref_mels, ref_lens))
        full = torch.full((b,), n_p + 1, device=dev)
        enc = self._encode(seq)  # (B, Np, D)
        clean_in, query_in = enc[:, :q0], self._query_inputs(enc, q0, n_p + 1)
        ptr_state: dict[str, torch.Tensor] = {}
        if self.pointer is not None:
            slots = torch.full((b, n_p + 1), NO_POINTER, dtype=torch.long, device=dev)
            slots[:, n_p] = -1  # the first target query: before the first phone
            pemb, ids, table, n_phones = self._pointer_inputs(text_ids, text_lens, text_start, slots)
            clean_in, query_in = clean_in + pemb[:, 1 : q0 + 1], query_in + pemb[:, q0:]
            ptr_state = dict(ptr_slots=slots, ptr_ids=ids, ptr_table=table, ptr_n=n_phones)
        speech = self._speech(plens, clean_in, 0, full, query_in, q0, full)
        lp, dtype = prefix.emb.shape[1], self.audio_bos.dtype
        caches = self.transformer.init_caches(b, lp + q0 + chunk + 64, dev, dtype, lp + cfg.max_patches + chunk + 1)
        empty = prefix.kind[:, :0]
        buf = seq[:, q0:] if chunk > 1 else seq[:, :0]  # the current chunk's patches so far
        state = LMState(caches, empty, empty, plens, n_p + 1, chunk, lp + q0, buf, **ptr_state)
        y = self._run(_cat(prefix, speech), chunk, state)
        if self.pointer is not None:
            start, acc = torch.full((b,), -1, device=dev), torch.zeros(b, device=dev)
            state.ptr, state.ptr_acc = self.pointer.next_pointer(y[:, -1], start, state.ptr_n, acc)
        return y[:, -1], state

    def step(self, prev_patch: torch.Tensor, state: LMState) -> tuple[torch.Tensor, LMState]:
        """Feed the last generated patch ``(B, F)`` (normalised); returns ``(h (B, D), state)`` for the next one.

        In chunk mode a completed chunk's queries are rolled back and its clean tokens cached (module docstring).
        """
        i, chunk, b = state.n_query, state.chunk_size, prev_patch.shape[0]
        full = torch.full((b,), i + 1, device=prev_patch.device)
        none = prev_patch.new_zeros(b, 0, self.cfg.d_model)
        ptr = state.ptr
        if ptr is not None:
            state.ptr_slots = torch.cat([state.ptr_slots, ptr[:, None]], dim=1)  # query i reads phone ptr
        if chunk > 1:
            state.buf = torch.cat([state.buf, prev_patch[:, None].to(state.buf.dtype)], dim=1)
            if state.buf.shape[1] == chunk:  # chunk i // C - 1 is complete: re-encode it as clean tokens
                for cache in state.caches:
                    cache.truncate(state.chunk_start)
                state.key_kind = state.key_kind[:, : state.chunk_start]
                state.key_idx = state.key_idx[:, : state.chunk_start]
                clean_in = self._encode(state.buf)  # (B, C, D): clean j = i - C .. i - 1 reads slot j + 1
                if ptr is not None:
                    clean_in = clean_in + self._embed_ptr(state, i - chunk + 1, i + 1)
                clean = self._speech(state.prefix_lens, clean_in, i - chunk, full, none, i, full)
                self._run(clean, chunk, state)
                state.chunk_start = state.caches[0].length
                state.buf = state.buf[:, :0]
        if not self.feedback and chunk > 1:
            raise VoxarConfigError("decoding without feedback needs LM chunk size 1")
        q_in = self.query_input(prev_patch)
        if ptr is not None:
            q_in = q_in + self._embed_ptr(state, i, i + 1)  # ptr_slots[:, i] is ptr
        y = self._run(self._speech(state.prefix_lens, none, i, full, q_in, i, full), chunk, state)
        state.n_query = i + 1
        if ptr is not None:
            state.ptr, state.ptr_acc = self.pointer.next_pointer(y[:, -1], ptr, state.ptr_n, state.ptr_acc)
        return y[:, -1], state

    def query_input(self, prev_patch: torch.Tensor) -> torch.Tensor:
        """A decoding query's input ``(B, 1, D)`` from the last generated patch ``(B, F)``: its encoding, or with
        feedback off zeros (what ``input_drop`` trained: no previous patch; the text pointer is added by the caller)."""
        if self.feedback:
            return self._encode(prev_patch[:, None])  # query i's input is patch i - 1
        return prev_patch.new_zeros(prev_patch.shape[0], 1, self.cfg.d_model)

    def _embed_ptr(self, state: LMState, lo: int, hi: int) -> torch.Tensor:
        """Pointer embeddings ``(B, hi - lo, D)`` of slots ``lo:hi`` of ``state.ptr_slots`` for ``state``'s text
        (the dwell is counted over the whole slot history)."""
        vals, dwell, w = state.ptr_slots[:, lo:hi], None, self.pointer.max_dwell
        if w:  # enough history that the first of the slots can reach the clamp
            dwell = self.pointer.dwell(state.ptr_slots[:, max(0, lo - w) : hi])[:, -(hi - lo) :]
        return self.pointer.embed(state.ptr_ids, state.ptr_table, vals, dwell)
