"""The interface every recommender implements, so one trainer and one evaluator serve them all."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from darec.config import ModelConfig
from darec.errors import CheckpointError

if TYPE_CHECKING:
    from darec.config import Config

__all__ = ["TrainBatch", "ModelContext", "SequentialRecommender"]


@dataclass
class ModelContext:
    """What a model may know about the data when it is built."""

    num_items: int
    catalog: list[dict[str, str]] | None = None
    """Text attributes per internal item id (``catalog[0] == {}``); None when the model is
    restored from a checkpoint, which carries what the model derived from them."""
    data_key: str = ""
    """Cache key of the processed dataset (for caches derived from it)."""
    cache_dir: Path | None = None
    """Cache folder for derived data; None disables such caches."""


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

    @classmethod
    def from_config(cls, cfg: Config, ctx: ModelContext) -> SequentialRecommender:
        """Build the model of a run; most models need only the ``[model]`` section and N."""
        return cls(cfg.model, ctx.num_items)

    @property
    def device(self) -> torch.device:
        """Where the model's tensors are (the CPU for a model without any)."""
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint stores (models with frozen parts leave those out)."""
        return self.state_dict()

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load what :meth:`trained_state` saved; raise :class:`CheckpointError` on a mismatch."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint does not fit model {self.cfg.name!r} "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )

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
