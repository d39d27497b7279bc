"""Summary statistics of a processed dataset (``darec data info``)."""

from __future__ import annotations

import numpy as np

from darec.data.types import SequenceDataset

__all__ = ["dataset_stats"]


def dataset_stats(ds: SequenceDataset) -> dict[str, float | int | str]:
    """Sizes, density, sequence-length and item-popularity statistics, as plain numbers.

    Keys: name, users, items, interactions, density (interactions / (users * items)),
    items_with_text (items with any text attribute), input_users/items/interactions and
    duplicates_dropped (before deduplication and k-core filtering, when recorded),
    seq_len_min/mean/median/p90/max over users, item_pop_min/mean/max (interactions per item).
    """
    lengths = np.diff(ds.offsets)[1:]  # (U,) interactions per user, skipping the padding user
    popularity = np.bincount(ds.items, minlength=ds.num_items + 1)[1:]  # (N,)
    cells = ds.num_users * ds.num_items
    stats: dict[str, float | int | str] = {
        "name": ds.name,
        "users": ds.num_users,
        "items": ds.num_items,
        "interactions": ds.num_interactions,
        "density": ds.num_interactions / cells if cells else 0.0,
        "items_with_text": sum(1 for attributes in ds.catalog[1:] if attributes),
    }
    f = ds.filtering
    if f:  # what preprocessing started from (datasets cached before it was recorded: unknown)
        stats |= {
            "input_users": f["users"],
            "input_items": f["items"],
            "input_interactions": f["interactions"],
            "duplicates_dropped": f["duplicates"],
        }
    if lengths.size:
        stats |= {
            "seq_len_min": int(lengths.min()),
            "seq_len_mean": float(lengths.mean()),
            "seq_len_median": float(np.median(lengths)),
            "seq_len_p90": float(np.percentile(lengths, 90)),
            "seq_len_max": int(lengths.max()),
        }
    if popularity.size:
        stats |= {
            "item_pop_min": int(popularity.min()),
            "item_pop_mean": float(popularity.mean()),
            "item_pop_max": int(popularity.max()),
        }
    return stats
