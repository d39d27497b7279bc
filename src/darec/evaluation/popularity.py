"""Metrics by how popular the target is: head, torso and tail thirds of the catalog.

Items are ordered by their number of training interactions (most first; ties by item id, so the
split is deterministic) and cut into three groups of (nearly) equal item counts. On sparse data
the head third holds most interactions, the tail many items seen a handful of times: where text
should help most, and a figure a user can act on (a model that only wins on the head mostly
recommends bestsellers)."""

from __future__ import annotations

import numpy as np

from darec.evaluation.metrics import metrics_from_ranks

__all__ = ["GROUPS", "item_counts", "popularity_groups", "metrics_by_group"]

GROUPS = ("head", "torso", "tail")


def item_counts(train: list[np.ndarray], num_items: int) -> np.ndarray:
    """(N + 1,) how often each item occurs in the training sequences (row 0: padding, 0)."""
    every = np.concatenate([*train, np.zeros(0, dtype=np.int64)]).astype(np.int64)
    counts = np.bincount(every, minlength=num_items + 1)
    counts[0] = 0
    return counts


def popularity_groups(counts: np.ndarray) -> np.ndarray:
    """(N + 1,) group index (0 head, 1 torso, 2 tail) of every item by its training count
    ``counts`` (N + 1,); the padding item 0 gets -1. Items never trained on are in the tail."""
    num_items = len(counts) - 1
    items = np.arange(1, num_items + 1)
    order = items[np.lexsort((items, -counts[1:]))]  # most trained first, then by id
    groups = np.full(num_items + 1, -1, dtype=np.int64)
    groups[order] = np.arange(num_items) * len(GROUPS) // max(1, num_items)
    return groups


def metrics_by_group(
    ranks: np.ndarray, targets: np.ndarray, groups: np.ndarray, ks: tuple[int, ...]
) -> dict[str, dict[str, float]]:
    """HR/NDCG/MRR at ``ks`` over the users whose target is in each group, with ``users`` (how
    many); a group without users is left out."""
    out: dict[str, dict[str, float]] = {}
    target_groups = groups[targets]
    for index, name in enumerate(GROUPS):
        chosen = target_groups == index
        if chosen.any():
            out[name] = {"users": int(chosen.sum()), **metrics_from_ranks(ranks[chosen], ks)}
    return out
