"""Content-based baseline (``--model content``): recommend items whose text resembles the user's
recent history.

Every item's vector is its frozen-LLM text feature (:func:`item_text_features`, the ``[text]``
encoder, as ``sasrec-text`` reads it). A user's vector is the recency-weighted mean of the
features of the last ``model.max_seq_len`` history items (weight ``model.content_decay ** age``,
age 0 for the newest); an item's score is the cosine between the two
(:mod:`darec.models.content_prior`, which text models can add to their own scores). Nothing is
trained (like Pop, ``trainable`` is False); the features are the checkpoint. Since it knows items
by their text alone, it ranks items added after training (``darec catalog add``) exactly like the
others: the reference point for cold-start items.
"""

from __future__ import annotations

import torch

from darec.config import Config, ModelConfig
from darec.data.batching import TrainBatch
from darec.errors import CheckpointError
from darec.models.base import ModelContext, SequentialRecommender
from darec.models.content_prior import text_vectors
from darec.models.layers import item_rows, mask_padding_scores
from darec.models.text_sasrec import features_for, new_item_text_features

__all__ = ["ContentModel"]


class ContentModel(SequentialRecommender):
    """Cosine similarity between item text features and the user's recent-history mean."""

    feats: torch.Tensor

    def __init__(self, cfg: ModelConfig, num_items: int, feats: torch.Tensor) -> None:
        super().__init__(cfg, num_items)
        if feats.shape[0] != num_items + 1:
            raise ValueError(f"expected {num_items + 1} feature rows, got {feats.shape[0]}")
        self.register_buffer("feats", feats)  # (N + 1, D), rows L2-normalised or zero

    @classmethod
    def from_config(cls, cfg: Config, ctx: ModelContext) -> ContentModel:
        return cls(cfg.model, ctx.num_items, features_for(cfg, ctx))

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        feats = state.get("feats")
        if feats is not None and feats.shape != self.feats.shape:
            self.feats = torch.zeros_like(feats, device=self.feats.device)  # placeholder width
        super().load_trained_state(state)

    def loss(self, batch: TrainBatch) -> torch.Tensor:
        raise RuntimeError("the content model has nothing to train")

    def encode_users(self, history: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded history -> (B, D) unit user vectors (0 for an empty history or
        one without text)."""
        return text_vectors(self.feats, history, self.cfg.content_decay, self.cfg.max_seq_len)

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        scores = state @ item_rows(self.feats, items).T  # (B, C) cosines (both sides unit or 0)
        return mask_padding_scores(scores, items)

    adds_items_from_text = True

    def item_rows_from_text(
        self, cfg: Config, catalog: list[dict[str, str]], new: list[dict[str, str]]
    ) -> dict[str, torch.Tensor]:
        """``feats`` (M, D): the new items' text features (see :func:`new_item_text_features`)."""
        return {"feats": new_item_text_features(cfg, catalog, new)}

    def extend_catalog(self, rows: dict[str, torch.Tensor]) -> None:
        """Append items with the text features ``rows["feats"]`` (M, D)."""
        feats = rows["feats"]
        if feats.ndim != 2 or feats.shape[1] != self.feats.shape[1]:
            raise CheckpointError(
                f"new item features have shape {tuple(feats.shape)}; expected (M, "
                f"{self.feats.shape[1]})"
            )
        self.feats = torch.cat([self.feats, feats.to(self.feats)])
        self.num_items += feats.shape[0]
