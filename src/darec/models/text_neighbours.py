"""Text neighbours: how an item added after training borrows what was learned about the trained
items whose text resembles its own (``model.neighbours``, ``model.neighbour_temperature``).

A model that learned something per item (an ID row, the items that follow it) knows nothing of
an item it never trained on; its text says which trained items it is like. Each new item gets
its ``k`` trained items of highest cosine between text features, weighted by a softmax of
cosine / temperature, and the model takes the weighted mean of what it holds for them:
``content-cf`` their transitions (:mod:`darec.models.content_cf`), ``sasrec-text`` their ID rows
(``model.new_item_ids = "neighbours"``). On Amazon Beauty's validation, with one tenth of the
training items made unseen, borrowing transitions this way lifted those items' NDCG@10 above the
text similarity alone (benchmarks/cold_probe.py, docs/results.md).
"""

from __future__ import annotations

import torch

__all__ = ["text_neighbours"]


def text_neighbours(
    new: torch.Tensor, known: torch.Tensor, k: int, temperature: float, chunk: int = 2048
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (M, k') into ``known`` (K, D) and weights (M, k') of the neighbours of the rows of
    ``new`` (M, D), k' = min(k, K).

    Both are text features with unit rows (zero for an item without text); a row of ``new``
    without text gets zero weights, so it borrows nothing. Rows of ``known`` without text are
    never chosen over rows with text (their cosine is 0 and they are pushed to -inf)."""
    k = min(k, known.shape[0])
    if k == 0 or new.shape[0] == 0:
        return new.new_zeros(new.shape[0], k, dtype=torch.long), new.new_zeros(new.shape[0], k)
    known = known.to(new.dtype)
    no_text = known.norm(dim=-1) == 0  # (K,)
    indices, weights = [], []
    for part in new.split(chunk):
        sims = (part @ known.T).masked_fill(no_text, -torch.inf)  # (m, K)
        top, idx = sims.topk(k, dim=1)  # (m, k)
        w = torch.softmax(top / temperature, dim=1).nan_to_num(0.0)
        has_text = part.norm(dim=-1, keepdim=True) > 0  # (m, 1)
        indices.append(idx)
        weights.append(w * has_text)
    return torch.cat(indices), torch.cat(weights)
