"""Leave-one-out split on hand-made sequences."""

from __future__ import annotations

import numpy as np

from darec.data.split import leave_one_out
from darec.data.types import PAD, SequenceDataset


def dataset(sequences: list[list[int]], num_items: int) -> SequenceDataset:
    lengths = [0, *(len(s) for s in sequences)]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.asarray([i for s in sequences for i in s], dtype=np.int64)
    return SequenceDataset(
        name="hand",
        user_ids=[PAD, *(f"u{k}" for k in range(1, len(sequences) + 1))],
        item_ids=[PAD, *(f"i{k}" for k in range(1, num_items + 1))],
        offsets=offsets,
        items=items,
        times=np.arange(items.size, dtype=np.float64),
        catalog=[{} for _ in range(num_items + 1)],
    )


def test_leave_one_out_on_hand_made_sequences() -> None:
    ds = dataset([[1, 2, 3, 4, 5], [5, 4], [3, 1, 2], [2]], num_items=5)
    split = leave_one_out(ds)

    assert [s.tolist() for s in split.train] == [[], [1, 2, 3], [5, 4], [3], [2]]
    # users 2 (two items) and 4 (one item) are too short to evaluate
    assert split.valid.users.tolist() == [1, 3] and split.test.users.tolist() == [1, 3]
    assert [h.tolist() for h in split.valid.histories] == [[1, 2, 3], [3]]
    assert split.valid.targets.tolist() == [4, 1]
    assert [h.tolist() for h in split.test.histories] == [[1, 2, 3, 4], [3, 1]]
    assert split.test.targets.tolist() == [5, 2]
    assert len(split.valid) == len(split.test) == 2
    for arr in (split.valid.users, split.valid.targets, split.test.users, split.test.targets):
        assert arr.dtype == np.int64


def test_valid_history_is_train_and_test_history_adds_the_valid_target() -> None:
    ds = dataset([[3, 1, 4, 1, 5, 2], [2, 6, 5]], num_items=6)
    split = leave_one_out(ds)
    for row, user in enumerate(split.test.users):
        seq = ds.sequence(int(user))
        assert np.array_equal(split.valid.histories[row], split.train[user])
        assert np.array_equal(
            split.test.histories[row],
            np.append(split.valid.histories[row], split.valid.targets[row]),
        )
        assert split.test.targets[row] == seq[-1]


def test_no_evaluable_users_gives_empty_eval_sets() -> None:
    split = leave_one_out(dataset([[1, 2], [2]], num_items=2))
    assert len(split.valid) == 0 and split.test.targets.shape == (0,)
    assert [s.tolist() for s in split.train] == [[], [1, 2], [2]]
