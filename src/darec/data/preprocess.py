"""Cleaning raw interactions into per-user chronological sequences with internal ids.

Steps, in order:
1. drop repeated (user, item) pairs, keeping the earliest (ties: the first in the file);
2. iterative k-core: remove users with fewer than ``user_min`` and items with fewer than
   ``item_min`` interactions until nothing changes; this yields the largest subset in which every
   remaining user and item meets its threshold;
3. number users and items 1..U and 1..N in order of first appearance in the file among the kept
   rows (0 is padding; ``PAD`` is the external id at index 0);
4. sort each user's interactions by time, stably: equal times keep their file order;
5. with ``data.keep_text_only_items``, append the catalog items that have text but no kept
   interaction (ids N+1.., in catalog order): they occur in no sequence, and only models that
   read item text can rank them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from darec.config import DataConfig
from darec.data.types import PAD, RawData, SequenceDataset
from darec.errors import DataError

__all__ = ["preprocess", "kcore_mask"]


def kcore_mask(users: np.ndarray, items: np.ndarray, user_min: int, item_min: int) -> np.ndarray:
    """(M,) bool mask of the rows in the (user_min, item_min)-core of a bipartite multigraph.

    ``users`` and ``items`` are (M,) non-negative int codes. Rows are removed in rounds (all
    under-threshold users and items at once) until a round removes nothing. A removed row can
    never belong to a valid subset (its user or item is short even with every surviving row), so
    the fixed point is the maximal core.
    """
    keep = np.arange(users.shape[0])  # (K,) indices of the surviving rows
    while keep.size:
        u, i = users[keep], items[keep]  # (K,), (K,)
        user_count = np.bincount(u)
        item_count = np.bincount(i)
        ok = (user_count[u] >= user_min) & (item_count[i] >= item_min)
        if ok.all():
            break
        keep = keep[ok]
    mask = np.zeros(users.shape[0], dtype=bool)
    mask[keep] = True
    return mask


def _first_per_pair(users: np.ndarray, items: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(M,) bool mask keeping the earliest row of every (user, item) pair (file order on ties)."""
    order = np.lexsort((np.arange(times.size), times))  # by time, then file position
    pair = users.astype(np.int64) * (int(items.max()) + 1) + items  # unique code per pair
    _, first = np.unique(pair[order], return_index=True)
    mask = np.zeros(times.size, dtype=bool)
    mask[order[first]] = True
    return mask


def _check_catalog_ids(raw: RawData, item_names: pd.Index) -> None:
    """Raise when an item file was read but none of its ids is an item of the interactions
    (its id column is likely the wrong one, or it belongs to other data)."""
    if not raw.catalog or any(str(name) in raw.catalog for name in item_names):
        return
    source = raw.item_source or "the item file"
    ours = ", ".join(repr(str(i)) for i in item_names[:3])
    theirs = ", ".join(repr(i) for i in list(raw.catalog)[:3])
    raise DataError(
        f"none of the {len(raw.catalog)} item ids of {source} (e.g. {theirs}) is an item of "
        f"{raw.source or 'the interactions'} (e.g. {ours}); is the item file's id column "
        "the right one (data.item_id_column) and the file the right one (data.item_path)?"
    )


def preprocess(raw: RawData, cfg: DataConfig, name: str) -> SequenceDataset:
    """Deduplicate, k-core filter, remap ids and sort by time (see the module docstring)."""
    frame = raw.interactions
    where = raw.source or "the interactions"
    if frame.empty:
        raise DataError(f"no interactions to preprocess in {where}")
    user_codes, user_names = pd.factorize(frame["user"], sort=False)
    item_codes, item_names = pd.factorize(frame["item"], sort=False)
    times = frame["time"].to_numpy(dtype=np.float64)
    if not np.isfinite(times).all():
        row = int(np.flatnonzero(~np.isfinite(times))[0])
        raise DataError(f"interaction {row} of {where} has a non-finite time {times[row]}")

    _check_catalog_ids(raw, item_names)
    keep = np.ones(times.size, dtype=bool)
    if cfg.drop_duplicates:
        keep = _first_per_pair(user_codes, item_codes, times)
    rows = np.flatnonzero(keep)  # (K,) file positions, ascending
    core = kcore_mask(user_codes[rows], item_codes[rows], cfg.user_min, cfg.item_min)
    if not core.any():
        raise DataError(
            f"k-core filtering (data.user_min={cfg.user_min}, data.item_min={cfg.item_min}) left "
            f"0 users and 0 items of {np.unique(user_codes[rows]).size} users and "
            f"{np.unique(item_codes[rows]).size} items ({rows.size} interactions) in {where}; "
            "lower data.user_min and/or data.item_min"
        )
    rows = rows[core]

    # Internal ids in order of first appearance among the kept rows (rows are in file order).
    user_new, user_old = pd.factorize(user_codes[rows], sort=False)  # codes 0..U-1
    item_new, item_old = pd.factorize(item_codes[rows], sort=False)
    user_ids = [PAD, *(str(user_names[c]) for c in user_old)]
    item_ids = [PAD, *(str(item_names[c]) for c in item_old)]
    users = user_new.astype(np.int64) + 1  # (K,)
    items = item_new.astype(np.int64) + 1  # (K,)
    row_times = times[rows]

    order = np.lexsort((rows, row_times, users))  # user, then time, then file position
    counts = np.bincount(users, minlength=len(user_ids))  # (U + 1,), counts[0] == 0
    offsets = np.zeros(len(user_ids) + 1, dtype=np.int64)  # (U + 2,)
    np.cumsum(counts, out=offsets[1:])
    if cfg.keep_text_only_items:
        known = set(item_ids)
        texts = raw.catalog.items()
        item_ids += [i for i, attrs in texts if i not in known and any(attrs.values())]
    catalog: list[dict[str, str]] = [{}, *(dict(raw.catalog.get(i, {})) for i in item_ids[1:])]
    kept_users = np.zeros(len(user_names), dtype=bool)
    kept_users[user_old] = True
    filtering = {
        "users": len(user_names),
        "items": len(item_names),
        "interactions": int(times.size),
        "duplicates": int(times.size - keep.sum()),
        "user_min": cfg.user_min,
        "item_min": cfg.item_min,
    }
    return SequenceDataset(
        name=name,
        user_ids=user_ids,
        item_ids=item_ids,
        offsets=offsets,
        items=items[order],
        times=row_times[order],
        catalog=catalog,
        filtering=filtering,
        removed_users=[str(u) for u in user_names[~kept_users]],
        notes=list(raw.notes),
    )
