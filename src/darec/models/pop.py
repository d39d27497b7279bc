"""Pop: recommend the items most frequent in the training sequences, the same for every user."""

from __future__ import annotations

import numpy as np
import torch

from darec.config import ModelConfig
from darec.data.batching import TrainBatch
from darec.models.base import SequentialRecommender
from darec.models.layers import item_rows, mask_padding_scores

__all__ = ["Pop"]


class Pop(SequentialRecommender):
    """Scores each item by its number of occurrences in the training sequences.

    The counts are a persistent buffer (saved in the state dict); there are no parameters, so
    the trainer skips it (``trainable`` is False) and :meth:`prepare` is all the fitting it needs.
    """

    counts: torch.Tensor

    def __init__(self, cfg: ModelConfig, num_items: int) -> None:
        super().__init__(cfg, num_items)
        self.register_buffer("counts", torch.zeros(num_items + 1, dtype=torch.long))

    def prepare(self, train_sequences: list[np.ndarray]) -> None:
        """Count every item of ``train_sequences`` (replacing earlier counts)."""
        items = (
            np.concatenate([np.asarray(s, dtype=np.int64) for s in train_sequences])
            if train_sequences
            else np.zeros(0, dtype=np.int64)
        )
        if items.size and (items.min() < 0 or items.max() > self.num_items):
            raise ValueError(
                f"item ids must be in 0..{self.num_items}, got range {items.min()}..{items.max()}"
            )
        counts = np.bincount(items, minlength=self.num_items + 1)
        counts[0] = 0  # padding is not an item
        self.counts.copy_(torch.from_numpy(counts))

    def loss(self, batch: TrainBatch) -> torch.Tensor:
        raise RuntimeError("Pop has no trainable parameters; fit it with prepare()")

    def encode_users(self, history: torch.Tensor) -> torch.Tensor:
        """A placeholder state (B, 1) of zeros: Pop does not personalise."""
        return torch.zeros(history.shape[0], 1, device=history.device)

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        scores = item_rows(self.counts, items).to(torch.float32)  # (C,)
        scores = scores.expand(state.shape[0], -1).clone()  # (B, C) writable, not a view
        return mask_padding_scores(scores, items)
