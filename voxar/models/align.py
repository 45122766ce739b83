"""Diagonal alignment prior for the patch LM's attention to the text (a training-only loss).

A decoder-only TTS model must discover on its own that speech patch ``i`` of ``N`` should read text token ``n`` of
``Lt`` near ``n / Lt ~ i / N``. Without help that takes many thousands of steps; a soft diagonal prior on a few
attention layers makes it emerge early (the guided attention of Tachibana et al., 2017, DCTTS; the attention
prior of Neekhara et al., 2024, for decoder-style TTS). The loss is the attention mass that speech queries put on
text keys far from the diagonal:

    W[i, n] = 1 - exp(-((n + 0.5) / Lt - (i + 0.5) / N) ** 2 / (2 * sigma ** 2))
    loss = mean over layers, heads and valid queries of  sum_n A[i, n] * W[i, n]

Mass on the speaker token or on earlier speech patches is free, so heads that do not read the text are not
disturbed. Inference is unchanged: the prior only shapes what the model learns.
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
) -> torch.Tensor:
    """Mean off-diagonal text attention (module docstring) over the attention maps ``probs``.

    ``probs``: attention probabilities ``(B, H, T, S)`` of some layers; ``q_slice`` selects the speech queries
    (query ``i`` of an item at ``q_slice.start + i``) along ``T``, ``text_slice`` the text keys (bos, text, eos)
    along ``S``; ``n_query (B,)`` / ``n_text (B,)`` are the valid counts. Returns a scalar.
    """
    if not probs:
        raise ValueError("alignment_prior_loss needs at least one attention map")
    a = torch.stack([p[:, :, q_slice, text_slice] for p in probs])  # (Lyr, B, H, m, lt)
    m, lt = a.shape[-2], a.shape[-1]
    w = diagonal_penalty(n_query, n_text, m, lt, sigma).to(a.dtype)  # (B, m, lt)
    per_query = (a * w[None, :, None]).sum(-1)  # (Lyr, B, H, m)
    valid = torch.arange(m, device=a.device)[None, :] < n_query[:, None]  # (B, m)
    denom = valid.sum().clamp_min(1) * a.shape[0] * a.shape[2]
    return (per_query * valid[None, :, None]).sum() / denom
