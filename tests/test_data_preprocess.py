"""Preprocessing: k-core properties (against brute force), dedup, stable order, id maps."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from darec.config import DataConfig
from darec.data.preprocess import kcore_mask, preprocess
from darec.data.types import PAD, RawData
from darec.errors import DataError


def raw_of(rows: list[tuple[str, str, float]], catalog=None) -> RawData:
    users, items, times = zip(*rows, strict=True) if rows else ((), (), ())
    frame = pd.DataFrame(
        {
            "user": pd.Series(users, dtype=str),
            "item": pd.Series(items, dtype=str),
            "time": pd.Series(times, dtype=np.float64),
        }
    )
    return RawData(frame, catalog or {}, source="test")


def brute_force_core(
    users: np.ndarray, items: np.ndarray, user_min: int, item_min: int
) -> set[int]:
    """Rows of the largest valid core: the union of every (user set, item set) whose induced
    rows meet both thresholds (the union of valid cores is itself valid)."""
    best: set[int] = set()
    all_users, all_items = sorted(set(users.tolist())), sorted(set(items.tolist()))
    for nu in range(len(all_users) + 1):
        for us in itertools.combinations(all_users, nu):
            for ni in range(len(all_items) + 1):
                for its in itertools.combinations(all_items, ni):
                    rows = [r for r in range(len(users)) if users[r] in us and items[r] in its]
                    u_count = np.bincount(users[rows], minlength=int(users.max()) + 1)
                    i_count = np.bincount(items[rows], minlength=int(items.max()) + 1)
                    if all(u_count[u] >= user_min for u in us) and all(
                        i_count[i] >= item_min for i in its
                    ):
                        best |= set(rows)
    return best


edges = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=14)


@settings(max_examples=60, deadline=None)
@given(edges=edges, user_min=st.integers(1, 4), item_min=st.integers(1, 4))
def test_kcore_is_the_maximal_valid_subset(edges, user_min: int, item_min: int) -> None:
    users = np.array([u for u, _ in edges])
    items = np.array([i for _, i in edges])
    mask = kcore_mask(users, items, user_min, item_min)
    kept = np.flatnonzero(mask)
    # both thresholds hold on what is kept
    if kept.size:
        assert np.bincount(users[kept])[np.unique(users[kept])].min() >= user_min
        assert np.bincount(items[kept])[np.unique(items[kept])].min() >= item_min
    # it is the largest such subset
    assert set(kept.tolist()) == brute_force_core(users, items, user_min, item_min)
    # idempotent
    assert kcore_mask(users[kept], items[kept], user_min, item_min).all()


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 3)), min_size=1, max_size=40
    ),
    k=st.integers(1, 3),
)
def test_preprocess_invariants(rows, k: int) -> None:
    raw = raw_of([(f"u{u}", f"i{i}", float(t)) for u, i, t in rows])
    cfg = DataConfig(user_min=k, item_min=k)
    try:
        ds = preprocess(raw, cfg, "p")
    except DataError:
        return  # everything filtered out: covered by its own test
    assert ds.user_ids[0] == PAD and ds.item_ids[0] == PAD and ds.catalog[0] == {}
    assert ds.offsets.shape == (ds.num_users + 2,) and ds.offsets[0] == ds.offsets[1] == 0
    assert ds.offsets[-1] == ds.num_interactions == ds.times.shape[0]
    seen: set[tuple[str, str]] = set()
    for user in range(1, ds.num_users + 1):
        seq, times = ds.sequence(user), ds.times[ds.offsets[user] : ds.offsets[user + 1]]
        assert len(seq) >= k and np.all(np.diff(times) >= 0)
        pairs = {(ds.user_ids[user], ds.item_ids[i]) for i in seq}
        assert len(pairs) == len(seq)  # no duplicates left
        seen |= pairs
    assert np.bincount(ds.items, minlength=ds.num_items + 1)[1:].min() >= k
    # round trip external -> internal -> external
    for internal, external in enumerate(ds.user_ids[1:], start=1):
        assert ds.user_index(external) == internal
    for internal, external in enumerate(ds.item_ids[1:], start=1):
        assert ds.item_index(external) == internal
    # every kept pair exists in the input
    assert seen <= {(f"u{u}", f"i{i}") for u, i, _ in rows}


def test_duplicates_keep_the_earliest_and_ties_keep_file_order() -> None:
    raw = raw_of(
        [
            ("a", "x", 5.0),
            ("a", "y", 2.0),
            ("a", "x", 1.0),  # earlier repeat of (a, x): this one is kept
            ("a", "z", 2.0),  # same time as y, later in the file: stays after y
            ("a", "w", 2.0),
            ("b", "x", 0.0),
        ]
    )
    ds = preprocess(raw, DataConfig(user_min=1, item_min=1), "t")
    assert [ds.item_ids[i] for i in ds.sequence(ds.user_index("a"))] == ["x", "y", "z", "w"]
    assert ds.times[: ds.offsets[2]].tolist() == [1.0, 2.0, 2.0, 2.0]
    kept_all = preprocess(raw, DataConfig(user_min=1, item_min=1, drop_duplicates=False), "t")
    assert [kept_all.item_ids[i] for i in kept_all.sequence(1)] == ["x", "y", "z", "w", "x"]


def test_ids_follow_first_appearance_and_catalog_aligns() -> None:
    raw = raw_of(
        [("u2", "b", 3.0), ("u1", "a", 1.0), ("u2", "c", 0.0), ("u1", "b", 2.0)],
        catalog={"a": {"title": "A"}, "b": {"title": "B"}, "zzz": {"title": "unused"}},
    )
    ds = preprocess(raw, DataConfig(user_min=1, item_min=1), "t")
    assert ds.user_ids == [PAD, "u2", "u1"]
    assert ds.item_ids == [PAD, "b", "a", "c"]
    assert ds.catalog == [{}, {"title": "B"}, {"title": "A"}, {}]
    assert ds.sequence(1).tolist() == [3, 1]  # u2: c (t=0) then b (t=3)
    assert ds.sequence(2).tolist() == [2, 1]


def test_kcore_cascades() -> None:
    # removing item q (one interaction) drops user c below 2, which drops item p below 2 ...
    raw = raw_of([("a", "p", 0), ("a", "r", 1), ("b", "r", 0), ("b", "p", 1), ("c", "q", 0)])
    ds = preprocess(raw, DataConfig(user_min=2, item_min=2), "t")
    assert sorted(ds.user_ids[1:]) == ["a", "b"] and sorted(ds.item_ids[1:]) == ["p", "r"]


def test_empty_after_kcore_says_what_to_lower() -> None:
    raw = raw_of([("a", "x", 0.0), ("b", "y", 1.0), ("b", "x", 2.0)])
    with pytest.raises(DataError) as info:
        preprocess(raw, DataConfig(user_min=5, item_min=5), "t")
    message = str(info.value)
    assert "left 0 users and 0 items of 2 users and 2 items" in message
    assert "user_min" in message and "item_min" in message


def test_kcore_on_skewed_data_meets_both_thresholds() -> None:
    rng = np.random.default_rng(0)
    users = rng.zipf(1.5, 100_000) % 5_000
    items = rng.zipf(1.3, 100_000) % 8_000
    mask = kcore_mask(users, items, 5, 5)
    assert 0 < mask.sum() < mask.size
    assert np.unique(users[mask], return_counts=True)[1].min() >= 5
    assert np.unique(items[mask], return_counts=True)[1].min() >= 5


def test_text_only_items_are_kept_after_the_others_when_asked() -> None:
    rows = [("u1", "a", 1.0), ("u1", "b", 2.0), ("u2", "a", 3.0), ("u2", "rare", 4.0)]
    catalog = {
        "a": {"title": "A"},
        "new": {"title": "New thing"},
        "rare": {"title": "Rare"},
        "blank": {"title": ""},
        "b": {"title": "B"},
    }
    plain = preprocess(raw_of(rows, catalog), DataConfig(user_min=1, item_min=2), "t")
    assert plain.item_ids == [PAD, "a"]
    cfg = DataConfig(user_min=1, item_min=2, keep_text_only_items=True)
    ds = preprocess(raw_of(rows, catalog), cfg, "t")
    # interacted items first; then catalog items with text, in catalog order ("blank" has none)
    assert ds.item_ids == [PAD, "a", "new", "rare", "b"]
    assert ds.catalog[2] == {"title": "New thing"} and len(ds.catalog) == 5
    assert np.array_equal(ds.items, plain.items)  # the sequences are the same
    assert ds.num_interactions == plain.num_interactions == 2
