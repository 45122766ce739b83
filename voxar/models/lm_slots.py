"""The patch LM's token slots: slot kinds, token groups, the attention mask rule and the decoding state.

:func:`slot_mask` is the one function both the teacher-forced pass and the KV-cache decoder build their masks
with (:mod:`voxar.models.lm` explains the sequence and the two speech streams).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from voxar.modules.attention import KVCache

PAD, PREFIX, QUERY, CLEAN = 0, 1, 2, 3  # slot kinds

__all__ = ["CLEAN", "PAD", "PREFIX", "QUERY", "LMState", "Tokens", "slot_mask"]


class Tokens(NamedTuple):
    """Token embeddings ``emb (B, T, D)`` with slot metadata ``kind``, ``idx`` and RoPE ``pos`` (each ``(B, T)``)."""

    emb: torch.Tensor
    kind: torch.Tensor
    idx: torch.Tensor
    pos: torch.Tensor


def _cat(*parts: Tokens) -> Tokens:
    """Concatenate token groups along time."""
    return Tokens(*(torch.cat(field_parts, dim=1) for field_parts in zip(*parts, strict=True)))


def slot_mask(
    q_kind: torch.Tensor,
    q_idx: torch.Tensor,
    k_kind: torch.Tensor,
    k_idx: torch.Tensor,
    chunk_size: int,
    prefix_causal: bool = False,
) -> torch.Tensor:
    """The LM attention mask from slot metadata (module docstring): ``(B, 1, Tq, Tk)`` bool, True = may attend.

    ``*_kind`` (PAD, PREFIX, QUERY, CLEAN) and ``*_idx`` (prefix index, query index i, clean patch index j) are
    ``(B, Tq)`` / ``(B, Tk)``; the new queries must be the last ``Tq`` keys (each query also sees itself, so padding
    rows are never empty).
    """
    qk, qi = q_kind[:, :, None], q_idx[:, :, None]  # (B, Tq, 1)
    kk, ki = k_kind[:, None, :], k_idx[:, None, :]  # (B, 1, Tk)
    allowed = (kk == PREFIX) & (qk != PAD)
    if prefix_causal:
        allowed &= (qk != PREFIX) | (ki <= qi)
    same_q = (qk == QUERY) & (kk == QUERY) & (ki <= qi)
    if chunk_size > 1:
        qc, kc = qi // chunk_size, ki // chunk_size
        allowed |= same_q & (qc == kc)
        allowed |= (kk == CLEAN) & (((qk == QUERY) & (kc < qc)) | ((qk == CLEAN) & (kc <= qc)))
    else:
        allowed |= same_q
    tq, tk = q_kind.shape[1], k_kind.shape[1]
    slots = torch.arange(tk, device=q_kind.device)
    allowed |= slots[None, :] == slots[tk - tq :, None]  # (Tq, Tk): each query sees itself
    return allowed[:, None]  # (B, Tq, Tk) -> (B, 1, Tq, Tk), broadcast over heads


@dataclass
class LMState:
    """Decoding state: KV ``caches`` (one per layer) and per-slot metadata ``key_kind``/``key_idx`` ``(B, S)``;
    ``n_query`` = index of the next query; in chunk mode ``chunk_start`` = first cache slot of the current chunk's
    queries and ``buf (B, n, F)`` its patches so far. Snapshot/rollback with :func:`voxar.modules.clone_state`."""

    caches: list[KVCache]
    key_kind: torch.Tensor
    key_idx: torch.Tensor
    prefix_lens: torch.Tensor
    n_query: int
    chunk_size: int
    chunk_start: int
    buf: torch.Tensor
    # text pointer (lm.pointer): ``ptr (B,)`` the next query's phone, ``ptr_slots (B, n_query)`` every query's,
    # ``ptr_ids`` the prefix ids, ``ptr_table``/``ptr_n`` :meth:`TextPointer.phone_table`
    ptr: torch.Tensor | None = None
    ptr_slots: torch.Tensor | None = None
    ptr_ids: torch.Tensor | None = None
    ptr_table: torch.Tensor | None = None
    ptr_n: torch.Tensor | None = None
    ptr_acc: torch.Tensor | None = None  # the expected advance not yet taken (TextPointer.next_pointer)
