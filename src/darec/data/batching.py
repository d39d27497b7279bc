"""Training windows and padded batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

__all__ = ["TrainBatch", "training_windows", "pad_left", "make_batch"]


@dataclass
class TrainBatch:
    """One training batch of left-padded windows (0 = padding).

    ``targets[b, t]`` is the item that follows ``inputs[b, :t + 1]``; 0 where there is none.
    """

    inputs: torch.Tensor  # (B, L) int64
    targets: torch.Tensor  # (B, L) int64
    users: torch.Tensor  # (B,) int64 internal user ids

    def to(self, device: torch.device | str) -> TrainBatch:
        return TrainBatch(self.inputs.to(device), self.targets.to(device), self.users.to(device))


def training_windows(
    train_sequences: list[np.ndarray], max_len: int, mode: Literal["last", "all"]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Cut training sequences into windows of at most ``max_len + 1`` items.

    A window of n items gives n - 1 (input, next item) pairs. ``last`` keeps each user's most
    recent window (the original SASRec recipe); ``all`` tiles the whole sequence from its end so
    that every interaction after the first is a target exactly once. Returns the windows and the
    internal user id of each.
    """
    windows: list[np.ndarray] = []
    owners: list[int] = []
    span = max_len + 1
    for user, seq in enumerate(train_sequences):
        if len(seq) < 2:
            continue
        end = len(seq)
        while end >= 2:
            start = max(0, end - span)
            windows.append(seq[start:end])
            owners.append(user)
            if mode == "last":
                break
            # the next window ends at this window's first item, which becomes its last target
            end = start + 1
    return windows, np.asarray(owners, dtype=np.int64)


def pad_left(sequences: list[np.ndarray], length: int) -> torch.Tensor:
    """(B, length) int64: the last ``length`` items of each sequence, left-padded with 0."""
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = seq[-length:] if length > 0 else seq[:0]
        if len(tail):
            out[row, length - len(tail) :] = tail
    return torch.from_numpy(out)


def make_batch(windows: list[np.ndarray], users: np.ndarray, max_len: int) -> TrainBatch:
    """Inputs are each window without its last item, targets the window shifted by one.

    The batch is only as long as its longest window (at most ``max_len``): models give the same
    states whatever the amount of left padding, so trimming it only saves time.
    """
    length = min(max_len, max(len(w) for w in windows) - 1)
    inputs = pad_left([w[:-1] for w in windows], length)
    targets = pad_left([w[1:] for w in windows], length)
    return TrainBatch(
        inputs=inputs, targets=targets, users=torch.as_tensor(users, dtype=torch.long)
    )
