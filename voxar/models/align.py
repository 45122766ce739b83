"""Diagonal alignment prior for the patch LM's attention to the text (a training-only loss).

A decoder-only TTS model must discover on its own that speech patch ``i`` of ``N`` should read text token ``n`` of
``Lt`` near ``n / Lt ~ i / N``. Without help that takes many thousands of steps; a soft diagonal prior on a few
attention layers makes it emerge early (the guided attention of Tachibana et al., 2017, DCTTS; the attention
prior of Neekhara et al., 2024, for decoder-style TTS). A few *alignment heads* (the first ``heads`` heads of some
layers) are trained to read the text along the diagonal:

    W[i, n] = 1 - exp(-((n + 0.5) / Lt - (i + 0.5) / N) ** 2 / (2 * sigma ** 2))
    mass[i] = sum_n A[i, n]                       (attention on the text keys: bos, text, eos)
    loss = mean over heads and valid queries of  sum_n (A[i, n] / mass[i]) * W[i, n]  +  (1 - mass[i])

The first term is the off-diagonal share of the head's text attention, the second makes the head attend to the
text at all: with the first term alone (an earlier version), the constrained heads escaped the prior by attending
to the speech history instead and the model read the text elsewhere, unaligned. Other heads are free. Inference is
unchanged: the prior only shapes what the model learns.
"""

from __future__ import annotations

import torch


def diagonal_penalty(n_query: torch.Tensor, n_text: torch.Tensor, m: int, lt: int, sigma: float) -> torch.Tensor:
    """Penalty ``W (B, m, lt)`` in [0, 1) for ``n_query (B,)`` valid queries over ``n_text (B,)`` valid text keys.

    Entries past an item's lengths are 0.
    """
    dev = n_query.device
    i = (torch.arange(m, device=dev)[None, :, None] + 0.5) / n_query.clamp_min(1)[:, None, None].float()  # (B, m, 1)
    n = (torch.arange(lt, device=dev)[None, None, :] + 0.5) / n_text.clamp_min(1)[:, None, None].float()  # (B, 1, lt)
    w = 1.0 - torch.exp(-((n - i) ** 2) / (2.0 * sigma**2))  # (B, m, lt)
    valid = (torch.arange(m, device=dev)[None, :, None] < n_query[:, None, None]) & (
        torch.arange(lt, device=dev)[None, None, :] < n_text[:, None, None]
    )
    return w * valid


def alignment_prior_loss(
    probs: list[torch.Tensor],
    q_slice: slice,
    text_slice: slice,
    n_query: torch.Tensor,
    n_text: torch.Tensor,
    sigma: float = 0.2,
    heads: int = 0,
) -> torch.Tensor:
    """The alignment-head loss of the module docstring over the attention maps ``probs``.

    ``probs``: attention probabilities ``(B, H, T, S)`` of some layers; ``q_slice`` selects the speech queries
    (query ``i`` of an item at ``q_slice.start + i``) along ``T``, ``text_slice`` the text keys (bos, text, eos)
    along ``S``; ``n_query (B,)`` / ``n_text (B,)`` are the valid counts; ``heads``: the first ``heads`` heads of
    each map are alignment heads (0: all). Returns a scalar in [0, 2).
    """
    if not probs:
        raise ValueError("alignment_prior_loss needs at least one attention map")
    h = heads or probs[0].shape[1]
    a = torch.stack([p[:, :h, q_slice, text_slice] for p in probs])  # (Lyr, B, h, m, lt)
    m, lt = a.shape[-2], a.shape[-1]
    w = diagonal_penalty(n_query, n_text, m, lt, sigma).to(a.dtype)  # (B, m, lt)
    mass = a.sum(-1)  # (Lyr, B, h, m)
    per_query = (a * w[None, :, None]).sum(-1) / mass.clamp_min(1e-6) + (1.0 - mass)  # (Lyr, B, h, m)
    valid = torch.arange(m, device=a.device)[None, :] < n_query[:, None]  # (B, m)
    denom = valid.sum().clamp_min(1) * a.shape[0] * a.shape[2]
    return (per_query * valid[None, :, None]).sum() / denom
