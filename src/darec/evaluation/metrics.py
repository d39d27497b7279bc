"""Ranking metrics from the 1-based rank of each user's target item."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["METRIC_NAMES", "metrics_from_ranks", "tie_aware_rank"]

METRIC_NAMES = ("HR", "NDCG", "MRR")


def tie_aware_rank(
    greater: torch.Tensor, ties: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """1-based rank of a target with ``greater`` better items and ``ties`` equally scored ones.

    Ties are broken uniformly at random: the target lands at any of the ``ties + 1`` places of its
    tie group with equal probability, so a model that scores every item the same gets exactly the
    rank distribution of a random guess (never rank 1 by luck of ordering, never the worst place).
    """
    # uniform integer in [0, ties] without a Python loop
    u = torch.rand(greater.shape, generator=generator, dtype=torch.float64)
    offset = torch.floor(u * (ties.to(torch.float64) + 1)).to(torch.long)
    return greater + offset + 1


def metrics_from_ranks(ranks: np.ndarray | torch.Tensor, ks: tuple[int, ...]) -> dict[str, float]:
    """Mean HR@k, NDCG@k and MRR@k over users (one target per user, so IDCG = 1).

    HR@k = [rank <= k]; NDCG@k = 1 / log2(rank + 1) if rank <= k; MRR@k = 1 / rank if rank <= k.
    """
    r = torch.as_tensor(ranks, dtype=torch.float64)
    if r.numel() == 0:
        raise ValueError("no ranks to compute metrics from (no evaluation users)")
    if bool((r < 1).any()):
        raise ValueError("ranks are 1-based; got a rank below 1")
    out: dict[str, float] = {}
    for k in ks:
        hit = (r <= k).to(torch.float64)
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float((hit / torch.log2(r + 1)).mean())
        out[f"MRR@{k}"] = float((hit / r).mean())
    return out
