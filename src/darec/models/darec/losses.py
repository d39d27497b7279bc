"""DARec's auxiliary tasks: semantic alignment and hard samples (docs/design.md, "The
three tasks"). The link-next-item task is :func:`darec.models.layers.next_item_loss`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["alignment_loss", "hard_sample_loss"]


def alignment_loss(text: torch.Tensor, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE tying each item's text vector to its own ID embedding.

    ``text`` and ``ids`` (U, D) are the U distinct items of a batch, row-aligned; the other
    items of the batch are the negatives.
    """
    if text.shape[0] < 2:
        return text.sum() * 0.0
    z = F.normalize(text, dim=-1)
    e = F.normalize(ids, dim=-1)
    logits = z @ e.T / temperature  # (U, U)
    target = torch.arange(len(z), device=z.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def hard_sample_loss(
    text: torch.Tensor,
    ids: torch.Tensor,
    negative_ids: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """InfoNCE of each item's text vector against its own ID and its hard negatives' IDs.

    ``text``/``ids`` (U, D); ``negative_ids`` (U, K, D) the ID embeddings of each item's hard
    negatives ``negatives`` (U, K) item ids, 0 where there is none. Items without any hard
    negative do not count.
    """
    has = (negatives > 0).any(dim=1)  # (U,)
    if not bool(has.any()):
        return text.sum() * 0.0
    z = F.normalize(text[has], dim=-1)  # (H, D)
    pos = (z * F.normalize(ids[has], dim=-1)).sum(-1, keepdim=True)  # (H, 1)
    neg = torch.einsum("hd,hkd->hk", z, F.normalize(negative_ids[has], dim=-1))  # (H, K)
    neg = neg.masked_fill(negatives[has] == 0, float("-inf"))
    logits = torch.cat([pos, neg], dim=1) / temperature  # (H, 1 + K)
    return F.cross_entropy(logits, torch.zeros(len(z), dtype=torch.long, device=z.device))
