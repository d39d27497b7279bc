"""The interface every recommender implements, so one trainer and one evaluator serve them all."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from darec.config import ModelConfig

__all__ = ["TrainBatch", "SequentialRecommender"]


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


class SequentialRecommender(nn.Module):
    """Base class: a next-item model over a catalog of ``num_items`` items (ids 1..num_items).

    Scoring is split in two so the evaluator can rank huge catalogs in chunks:
    ``encode_users`` runs once per batch of users, ``score_items`` once per catalog chunk.
    Randomness (dropout, masking, negative sampling) must come from torch's RNG so that a
    checkpoint's saved RNG state makes resuming exact.
    """

    def __init__(self, cfg: ModelConfig, num_items: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_items = num_items

    def prepare(self, train_sequences: list[np.ndarray]) -> None:
        """Hook called once before training with every user's training sequence."""

    def loss(self, batch: TrainBatch) -> torch.Tensor:
        """Scalar training loss of one batch."""
        raise NotImplementedError

    def encode_users(self, history: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded item ids -> a per-user state consumed by :meth:`score_items`."""
        raise NotImplementedError

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores (B, C) of the items ``items`` (C,) for the users encoded in ``state``."""
        raise NotImplementedError

    @property
    def trainable(self) -> bool:
        """Whether the trainer has anything to optimise (Pop has not)."""
        return any(p.requires_grad for p in self.parameters())
