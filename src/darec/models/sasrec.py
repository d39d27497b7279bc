"""SASRec (Kang & McAuley, 2018) trained with full cross-entropy, as in RecBole.

Also DARec's collaborative model: its public surface for that use is

- ``item_embedding``: ``nn.Embedding(num_items + 1, D)``, row i = item i, row 0 = padding (zero);
- ``forward(inputs) -> (B, L, D)``: the user state after each step of a left-padded history.

Scores are dot products with the same (tied) item embedding table. See :mod:`darec.models.layers`
for the encoder's design choices: by default RecBole's (post-LN, unscaled embeddings, positions
counted from the oldest item read, normal(0.02) init); ``model.norm``, ``activation``,
``positions``, ``embedding_scale`` and ``init`` switch to the original SASRec code's one by one.
"""

from __future__ import annotations

import torch
from torch import nn

from darec.config import ModelConfig
from darec.data.batching import TrainBatch
from darec.models.base import SequentialRecommender
from darec.models.layers import (
    TransformerEncoder,
    item_rows,
    mask_padding_scores,
    next_item_loss,
    weight_init,
)

__all__ = ["SASRec"]


class SASRec(SequentialRecommender):
    """Causal self-attention over the history; the state at step t predicts item t + 1."""

    def __init__(self, cfg: ModelConfig, num_items: int) -> None:
        super().__init__(cfg, num_items)
        self.item_embedding = nn.Embedding(num_items + 1, cfg.hidden_size, padding_idx=0)
        self.encoder = TransformerEncoder(cfg, causal=True)
        self.apply(weight_init(cfg.init))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Per-step user states (B, L, D) of left-padded item ids ``inputs`` (B, L).

        The state at position t depends only on ``inputs[:, :t + 1]``; padding positions are 0.
        """
        return self.encoder(self.item_embedding(inputs), inputs)  # (B, L, D)

    def loss(self, batch: TrainBatch) -> torch.Tensor:
        states = self(batch.inputs)  # (B, L, D)
        return next_item_loss(states, batch.targets, self.item_embedding.weight, self.cfg.loss)

    def encode_users(self, history: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded history -> (B, D) state after its last item (0 if it is empty)."""
        return self(history[:, -self.cfg.max_seq_len :])[:, -1]  # (B, D)

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        scores = state @ item_rows(self.item_embedding, items).T  # (B, C)
        return mask_padding_scores(scores, items)
