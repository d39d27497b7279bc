"""The two data structures every stage shares: raw reader output and the processed dataset."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from darec.errors import UnknownIdError

__all__ = ["RawData", "SequenceDataset", "PAD"]

PAD = "[PAD]"
"""External id stored at internal index 0 (padding) of the user and item id lists."""


@dataclass
class RawData:
    """What a reader returns, before any cleaning.

    ``interactions`` has the columns ``user`` (str), ``item`` (str) and ``time`` (float64) in file
    order; ``catalog`` maps an external item id to its text attributes (title, brand, ...).
    """

    interactions: pd.DataFrame
    catalog: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str = ""
    """The interaction file, for messages."""
    item_source: str = ""
    """The item file the catalog came from (empty: none), for messages."""
    notes: list[str] = field(default_factory=list)
    """What the reader assumed and the user should know (e.g. the time column it chose)."""


@dataclass
class SequenceDataset:
    """Cleaned interactions as one chronological item sequence per user.

    Internal ids run 1..N for items and 1..U for users; 0 is padding. The sequence of user ``u``
    is ``items[offsets[u]:offsets[u + 1]]`` (CSR layout; user 0 has an empty sequence).
    """

    name: str
    user_ids: list[str]
    """External user id per internal id; ``user_ids[0] == PAD``."""
    item_ids: list[str]
    """External item id per internal id; ``item_ids[0] == PAD``."""
    offsets: np.ndarray
    """(U + 2,) int64 row pointers."""
    items: np.ndarray
    """(M,) int64 internal item ids, chronological within each user."""
    times: np.ndarray
    """(M,) float64 timestamps aligned with ``items``."""
    catalog: list[dict[str, str]]
    """Attributes per internal item id; ``catalog[0] == {}``."""
    key: str = ""
    """Cache key (hash of the source content and the preprocessing options)."""
    filtering: dict[str, int] = field(default_factory=dict)
    """What preprocessing started from and removed: ``users``, ``items``, ``interactions`` of
    the input, ``duplicates`` dropped, and the k-core thresholds ``user_min``/``item_min``
    (empty for datasets built before it was recorded)."""
    removed_users: list[str] = field(default_factory=list)
    """External ids of the input's users that filtering removed (so a lookup can say why)."""
    notes: list[str] = field(default_factory=list)
    """What the reader assumed (e.g. the time column it chose), given again at every load."""
    _user_index: dict[str, int] | None = field(default=None, repr=False, compare=False)
    _item_index: dict[str, int] | None = field(default=None, repr=False, compare=False)

    @property
    def num_users(self) -> int:
        return len(self.user_ids) - 1

    @property
    def num_items(self) -> int:
        return len(self.item_ids) - 1

    @property
    def num_interactions(self) -> int:
        return int(self.items.shape[0])

    def sequence(self, user: int) -> np.ndarray:
        """Chronological internal item ids of internal user ``user``."""
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def sequences(self) -> list[np.ndarray]:
        """Every user's sequence, indexed by internal user id (index 0 is empty)."""
        return [self.sequence(u) for u in range(self.num_users + 1)]

    def user_index(self, external: str) -> int:
        if self._user_index is None:
            self._user_index = {u: i for i, u in enumerate(self.user_ids) if i > 0}
        if external not in self._user_index:
            if external in self.removed_users:
                f = self.filtering
                raise UnknownIdError(
                    f"user {external!r} is in the input of dataset {self.name!r} but was removed "
                    f"by k-core filtering (data.user_min={f.get('user_min')}, data.item_min="
                    f"{f.get('item_min')}: too few interactions once rare items were dropped); "
                    "lower data.user_min or data.item_min to keep such users"
                )
            raise UnknownIdError(
                f"unknown user id {external!r}: not in dataset {self.name!r} "
                f"({self.num_users} users, e.g. {', '.join(map(repr, self.user_ids[1:4]))})"
            )
        return self._user_index[external]

    def item_index(self, external: str) -> int:
        if self._item_index is None:
            self._item_index = {it: i for i, it in enumerate(self.item_ids) if i > 0}
        if external not in self._item_index:
            raise UnknownIdError(
                f"unknown item id {external!r}: not in dataset {self.name!r} "
                f"({self.num_items} items, e.g. {', '.join(map(repr, self.item_ids[1:4]))})"
            )
        return self._item_index[external]
