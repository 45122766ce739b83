"""The TTS LM's text pointer: an explicit, monotonic "which phone am I speaking" input to every speech query.

**Why.** Without it the LM must find its place in the text through attention alone. Teacher-forced it does (its
states CTC-decode the text at 42 % PER), but running free on its own patches it loses the place within a few phones
and babbles (82-87 % PER, near chance; docs/benchmarks.md): exposure bias on the alignment. The pointer makes the
alignment a discrete decision that the model takes and then reads back, as ELLA-V and VALL-E R do with phone tokens
interleaved or aligned with the acoustic ones.

**What.** Each speech query ``i`` (which predicts patch ``i``) gets, added to its input, the embedding of the text
around phone ``ptr_i``: the tokens at offsets ``-w..w`` from that phone's position in ``<bos> text <eos>`` (each
offset its own table, so stress marks, punctuation and the neighbouring phones are seen), summed and RMS-normalised
with a learned gain that starts at the scale of the patch input (:data:`INIT_GAIN`). ``ptr_0 = -1`` (before the
first phone); the **advance head** on ``h_i`` classifies ``ptr_{i+1} - ptr_i`` in ``0..max_step``, so the pointer
only moves forward, at most ``max_step`` phones a patch, and stops at ``U`` (after the last phone; its window holds
``<eos>``). Prompt patches (continuation) get a learned "no pointer" embedding. With ``max_dwell > 0`` the input
also holds the **dwell**: how many earlier queries read the same phone (clamped to ``max_dwell``), so a query knows
how far into its phone it is without counting through attention, and the advance head becomes a hazard on it.
Training reads ``ptr`` from forced alignments (:mod:`voxar.data.phone_align`); decoding moves it by the accumulated
expected advance (:meth:`TextPointer.next_pointer`).

Phones are the text tokens that are not in ``skip_ids`` (specials, spaces, punctuation, stress marks: the same set
as the content encoder's CTC targets, so the alignments index the same sequence). With a prompt transcript the text
is ``prompt_text + " " + text``; ``text_start`` (tokens) says where the target's phones begin.

Legend: B batch, L prefix ids (``<bos> text <eos>``, padded), U phones, n queries, D width, K = max_step + 1.
"""

from __future__ import annotations

import torch
from torch import nn

NO_POINTER = -2  # slot value of prompt patches (continuation): the learned "no pointer" embedding
# RMS of the pointer input at initialisation. The patch encoder's output is large (RMS ~3 per channel in a trained
# base model: an input of norm ~50 at d 256); an embedding at the usual 0.02 scale next to it is invisible, and a
# first run ignored it (a frozen pointer rendered as well as the true one).
INIT_GAIN = 3.0


class TextPointer(nn.Module):
    """Window embedding of the pointed-at phone and the advance head (module docstring)."""

    def __init__(
        self, vocab_size: int, d_model: int, window: int, max_step: int, skip_ids: list[int], max_dwell: int = 0
    ) -> None:
        super().__init__()
        self.vocab_size, self.window, self.max_step, self.max_dwell = vocab_size, window, max_step, max_dwell
        self.emb = nn.Embedding((2 * window + 1) * vocab_size + 1, d_model)  # the last row: "no pointer"
        self.dwell_emb = nn.Embedding(max_dwell + 1, d_model) if max_dwell > 0 else None
        self.norm = nn.RMSNorm(d_model)  # the window sum, RMS-normalised, with a learned gain (INIT_GAIN)
        nn.init.constant_(self.norm.weight, INIT_GAIN)
        self.adv_head = nn.Linear(d_model, max_step + 1)
        skip = torch.zeros(vocab_size, dtype=torch.bool)
        skip[[i for i in skip_ids if 0 <= i < vocab_size]] = True
        self.register_buffer("skip", skip, persistent=False)

    def phone_table(
        self, ids: torch.Tensor, text_lens: torch.Tensor, text_start: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``ids (B, L)`` = ``<bos> text <eos>`` ids -> ``(pos (B, U_max + 2), n_phones (B,))``.

        ``pos[:, p + 1]`` is the position in ``ids`` of pointer value ``p``: ``-1`` -> the token before the first
        phone, ``0..U-1`` -> the phones, ``U`` and beyond -> ``<eos>``.
        """
        b, length = ids.shape
        dev = ids.device
        start = torch.zeros(b, dtype=torch.long, device=dev) if text_start is None else text_start.to(dev).long()
        j = torch.arange(length, device=dev)[None, :]  # (1, L)
        inside = (j >= 1 + start[:, None]) & (j < 1 + text_lens.to(dev)[:, None])
        is_phone = inside & ~self.skip[ids.clamp(0, self.vocab_size - 1)]  # (B, L)
        n_phones = is_phone.sum(1)  # (B,)
        u_max = int(n_phones.max()) if b else 0
        eos = (text_lens.to(dev).long() + 1)[:, None]  # (B, 1)
        pos = eos.expand(b, u_max + 2).clone()
        rank = (is_phone.cumsum(1) - 1).clamp_min(0) + 1  # (B, L): table column of each phone
        src = j.expand(b, -1)
        pos.scatter_(1, torch.where(is_phone, rank, torch.zeros_like(rank)), torch.where(is_phone, src, pos[:, :1]))
        first = torch.where(n_phones > 0, pos[:, 1], eos[:, 0])
        pos[:, 0] = (first - 1).clamp_min(0)
        return pos, n_phones

    def dwell(self, ptr: torch.Tensor) -> torch.Tensor:
        """``ptr (B, n)`` a whole slot sequence -> ``(B, n)``: how many slots before each one hold the same value
        (the pointer is monotonic, so: slots since it last moved), clamped to ``max_dwell``."""
        n = ptr.shape[1]
        idx = torch.arange(n, device=ptr.device)[None, :].expand_as(ptr)  # (B, n)
        moved = torch.ones_like(ptr, dtype=torch.bool)
        moved[:, 1:] = ptr[:, 1:] != ptr[:, :-1]
        start = torch.where(moved, idx, torch.zeros_like(idx)).cummax(1).values  # (B, n): first slot of each run
        return (idx - start).clamp_max(self.max_dwell)

    def embed(
        self, ids: torch.Tensor, pos: torch.Tensor, ptr: torch.Tensor, dwell: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``ptr (B, n)`` pointer values (``-1..U``, or :data:`NO_POINTER`) -> embeddings ``(B, n, D)``; ``dwell
        (B, n)`` (:meth:`dwell`) is required when ``max_dwell > 0``."""
        w, v = self.window, self.vocab_size
        none = ptr == NO_POINTER
        p = ptr.clamp(-1, pos.shape[1] - 2) + 1
        centre = torch.gather(pos, 1, p)  # (B, n) positions in ids
        offsets = torch.arange(-w, w + 1, device=ids.device)  # (2w + 1,)
        at = centre[:, :, None] + offsets  # (B, n, 2w + 1)
        ok = (at >= 0) & (at < ids.shape[1])
        tok = torch.gather(ids, 1, at.clamp(0, ids.shape[1] - 1).flatten(1)).view_as(at)
        tok = torch.where(ok, tok, torch.zeros_like(tok))  # outside the text: <pad>
        rows = (offsets + w)[None, None, :] * v + tok  # (B, n, 2w + 1)
        out = self.emb(rows).sum(2)  # (B, n, 2w + 1, D) -> (B, n, D)
        if self.dwell_emb is not None:
            if dwell is None:
                raise ValueError("this pointer has a dwell input (max_dwell > 0): pass dwell")
            out = out + self.dwell_emb(dwell.clamp(0, self.max_dwell))
        out = torch.where(none[:, :, None], self.emb.weight[-1].to(out.dtype), out)
        return self.norm(out)

    def advance(self, h: torch.Tensor) -> torch.Tensor:
        """Advance logits ``(..., K)`` of hidden states ``h (..., D)``."""
        return self.adv_head(h)

    def next_pointer(
        self, h: torch.Tensor, ptr: torch.Tensor, n_phones: torch.Tensor, acc: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step: ``(ptr, acc)`` -> the next ``(ptr, acc)``, all ``(B,)``, from ``h (B, D)``.

        The pointer moves by the *expected* advance, accumulated: ``acc += E[step]``, then it takes the whole part.
        A phone whose advance probability is 0.4 per patch lasts 2-3 patches, as in the data, where the argmax
        would hold it forever (p < 0.5) or move every patch (p > 0.5). Deterministic; capped at ``n_phones``.
        """
        probs = self.advance(h).float().softmax(-1)  # (B, K)
        acc = acc + (probs * torch.arange(probs.shape[-1], device=h.device)).sum(-1)
        step = acc.floor()
        ptr = torch.minimum(ptr + step.long(), n_phones.to(ptr.device))
        return ptr, acc - step

    def loss(self, logits: torch.Tensor, ptr: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the advances: ``logits (B, N, K)`` from ``h``, ``ptr (B, N)`` the aligned pointer of
        each target patch, ``lengths (B,)`` valid patches. The last patch has no next pointer."""
        steps = (ptr[:, 1:] - ptr[:, :-1]).clamp(0, self.max_step)  # (B, N - 1)
        n = steps.shape[1]
        valid = torch.arange(n, device=ptr.device)[None, :] < (lengths.to(ptr.device)[:, None] - 1)
        if not bool(valid.any()):
            return logits.sum() * 0.0
        return nn.functional.cross_entropy(logits[:, :n][valid].float(), steps[valid])
