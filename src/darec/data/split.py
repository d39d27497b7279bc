"""Leave-one-out split by time (the protocol of SASRec, S3-Rec and RecBole's full ranking).

For a user with at least three items ``s_1 .. s_n``:

- train: ``s_1 .. s_{n-2}``;
- valid: history ``s_1 .. s_{n-2}``, target ``s_{n-1}``;
- test:  history ``s_1 .. s_{n-1}``, target ``s_n``.

Users with fewer than three items cannot give a training item, a validation target and a test
target, so they are not evaluated; their whole sequence goes to training (it still teaches item
transitions). With the default 5-core filter every user has at least five items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from darec.data.types import SequenceDataset

__all__ = ["EvalSet", "Split", "leave_one_out", "MIN_EVAL_LENGTH"]

MIN_EVAL_LENGTH = 3
"""Shortest sequence that is split into train, valid and test."""


@dataclass
class EvalSet:
    """Users to evaluate, each with the history the model sees and the item it must rank."""

    users: np.ndarray
    """(n,) int64 internal user ids."""
    histories: list[np.ndarray]
    """n chronological int64 arrays of internal item ids."""
    targets: np.ndarray
    """(n,) int64 internal item id to predict after each history."""

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass
class Split:
    """Training sequences and the validation and test sets."""

    train: list[np.ndarray]
    """Training sequence per internal user id (index 0, the padding user, is empty)."""
    valid: EvalSet
    test: EvalSet


def leave_one_out(ds: SequenceDataset) -> Split:
    """Hold out each user's last item for test and the one before it for validation."""
    sequences = ds.sequences()
    train: list[np.ndarray] = [sequences[0][:0]]
    users: list[int] = []
    for user in range(1, len(sequences)):
        seq = sequences[user]
        if len(seq) >= MIN_EVAL_LENGTH:
            train.append(seq[:-2])
            users.append(user)
        else:
            train.append(seq)
    evaluated = np.asarray(users, dtype=np.int64)
    valid = EvalSet(
        users=evaluated,
        histories=[sequences[u][:-2] for u in users],
        targets=np.asarray([sequences[u][-2] for u in users], dtype=np.int64),
    )
    test = EvalSet(
        users=evaluated.copy(),
        histories=[sequences[u][:-1] for u in users],
        targets=np.asarray([sequences[u][-1] for u in users], dtype=np.int64),
    )
    return Split(train=train, valid=valid, test=test)
