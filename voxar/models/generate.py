"""Autoregressive generation with :class:`voxar.models.lm.PatchLM` and a :class:`voxar.models.heads.FlowHead`.

:func:`stream` prefills the conditioning and text once, then steps the LM with its KV cache, samples each patch with
the head and yields mel chunks as soon as an emission chunk is complete; :func:`generate` collects the whole
utterance. With a fixed ``generator`` seed, stepping chunk by chunk gives the same patches as one full call.

Shapes: B batch, P patch size (frames), F = P * n_mels, T frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from voxar.models.heads import FlowHead, history_push, length_limits, stop_now
from voxar.models.lm import PatchLM


@torch.no_grad()
def stream(
    lm: PatchLM,
    head: FlowHead,
    text_ids: torch.Tensor,
    text_lens: torch.Tensor,
    *,
    chunk_size: int | None = None,
    steps: int | None = None,
    cfg_scale: float | None = None,
    min_patches: int = 1,
    max_patches: int | None = None,
    stop_threshold: float = 0.5,
    generator: torch.Generator | None = None,
    decode: str = "dynamic",
    pointer_tail: int = 5,
    **conditioning: torch.Tensor | None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Generate chunk by chunk: yields ``(mel (B, n_mels, n * P), valid (B,))`` per emission chunk of ``n <=
    chunk_size`` patches (raw log-mel; ``valid`` = frames of this chunk before the item's end).

    ``conditioning``: ``spk_emb`` / ``ref_mels`` / ``ref_lens`` / ``prompt_mels`` / ``prompt_lens`` as in
    :meth:`PatchLM.prefill`. Length guards: at least ``min_patches`` (>= 1) and at most ``4 * text_len + 25`` (minus
    the prompt) or ``max_patches`` / ``cfg.max_patches`` patches, so generation always ends and never yields nothing.
    ``decode``: ``"dynamic"`` (:meth:`PatchLM.step`), ``"static"`` (the fixed-shape
    :class:`~voxar.models.static_decode.StaticDecoder`, LM chunk size 1, same patches to float tolerance) or
    ``"cuda-graph"`` (its step replayed as a CUDA graph; CUDA only). A text-pointer LM (``lm.pointer``) also ends
    an item once its pointer has stood past the last phone for ``pointer_tail`` patches (trailing silence).
    A head with ``noise: utterance`` starts every patch from one noise (:meth:`FlowHead.generation_noise`).
    """
    chunk = chunk_size or lm.cfg.chunk_size
    h, state = lm.prefill(text_ids, text_lens, chunk_size=chunk, **conditioning)
    b, k, f = h.shape[0], head.cfg.history, lm.cfg.patch_dim
    prompt = torch.zeros(b, 0, f, device=h.device)
    if conditioning.get("prompt_mels") is not None:
        prompt = lm.patchify(conditioning["prompt_mels"], conditioning.get("prompt_lens"), align="end")[0]
    n_prompt = state.n_query - 1
    hist = torch.cat([torch.zeros(b, k, f, device=h.device), prompt[:, :n_prompt]], 1)  # (B, k + Np, F)
    hist = hist[:, hist.shape[1] - k :].reshape(b, k * f)  # the last k patches (oldest first)
    cap = min(max_patches or lm.cfg.max_patches, lm.cfg.max_patches - n_prompt)
    min_len, max_len = length_limits(
        text_lens.to(h.device), min_patches=min_patches, max_patches=max(cap, 1), prompt_patches=n_prompt
    )
    decoder = None
    if decode != "dynamic":
        from voxar.models.static_decode import StaticDecoder

        room = int(max_len.max()) + 1  # the length guard bounds the steps: attention covers no more slots than that
        decoder = StaticDecoder(lm, state, capacity=state.caches[0].length + room, cuda_graph=decode == "cuda-graph")
    done = torch.zeros(b, dtype=torch.bool, device=h.device)
    ends = torch.zeros(b, dtype=torch.long, device=h.device)
    tail = torch.zeros(b, dtype=torch.long, device=h.device)  # patches generated with the pointer past the text
    pending: list[torch.Tensor] = []
    noise = head.generation_noise(generator, b, h.device)  # (B, F) shared by every patch, or None
    n = 0
    while True:
        x = head.sample_patch(h, hist if k else None, steps, cfg_scale, generator, noise)
        n += 1
        ends = torch.where(done, ends, torch.full_like(ends, n))
        done = done | stop_now(lm.stop_head(h), n, min_len, max_len, stop_threshold)
        if state.ptr_slots is not None:  # the phone the query that made h read
            read = decoder.last_ptr if decoder is not None else state.ptr_slots[:, -1]
            tail = torch.where(read >= state.ptr_n, tail + 1, torch.zeros_like(tail))
            done = done | ((tail >= pointer_tail) & (n >= min_len))
        pending.append(x)
        if len(pending) == chunk or bool(done.all()):
            n0 = n - len(pending)
            valid = (ends - n0).clamp(0, len(pending)) * lm.cfg.patch_size
            yield lm.unpatchify(torch.stack(pending, 1)), valid
            pending = []
        if bool(done.all()):
            return
        hist = history_push(hist, x)
        if decoder is not None:
            h = decoder.step(x)
        else:
            h, state = lm.step(x, state)


def generate(
    lm: PatchLM, head: FlowHead, text_ids: torch.Tensor, text_lens: torch.Tensor, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole utterance: ``(mel (B, n_mels, T), mel_lens (B,))`` (arguments as :func:`stream`)."""
    mels, lens = [], None
    for mel, valid in stream(lm, head, text_ids, text_lens, **kwargs):
        mels.append(mel)
        lens = valid if lens is None else lens + valid
    return torch.cat(mels, dim=-1), lens
