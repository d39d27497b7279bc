"""BERT4Rec (Sun et al., 2019): a bidirectional transformer trained to fill in masked items.

It shares the encoder of SASRec (:class:`darec.models.layers.TransformerEncoder`), without the
causal mask. The vocabulary is the N items, padding (0) and a mask token (N + 1). Outputs are
scored against the tied item embeddings plus a per-item bias (``model.output_bias``); the mask
token is never a candidate.

Training (cloze task): each batch window is rebuilt as one item sequence, every real item is
replaced by the mask token with probability ``cfg.mask_prob``, and cross-entropy over the catalog
is taken at the masked positions. A sequence in which nothing was drawn gets its last item masked
(``model.mask_fallback``), so every sequence contributes and the model also sees the exact
inference situation (the mask at the end, after the whole history).

Inference: the mask token is appended after the history (dropping the oldest item when the
history already fills ``max_seq_len``) and its state scores the catalog.
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

__all__ = ["BERT4Rec"]


class BERT4Rec(SequentialRecommender):
    """Bidirectional transformer over the history with a trailing mask token."""

    def __init__(self, cfg: ModelConfig, num_items: int) -> None:
        super().__init__(cfg, num_items)
        self.mask_token = num_items + 1
        self.item_embedding = nn.Embedding(num_items + 2, cfg.hidden_size, padding_idx=0)
        self.encoder = TransformerEncoder(cfg, causal=False)
        self.apply(weight_init(cfg.init))
        # output bias per item id (row 0, padding, is never scored); model.output_bias=false: none
        self.output_bias = nn.Parameter(torch.zeros(num_items + 1)) if cfg.output_bias else None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """States (B, L, D) of left-padded ids ``inputs`` (B, L), mask tokens allowed."""
        return self.encoder(self.item_embedding(inputs), inputs)  # (B, L, D)

    def _window_items(self, batch: TrainBatch) -> torch.Tensor:
        """(B, <= max_seq_len) each window's items, left-padded: inputs + the last target.

        ``make_batch`` stores a window w as inputs = w[:-1] and targets = w[1:], both left-padded
        to the same width, so appending the last target column gives w; only a window longer
        than max_seq_len loses its oldest item (which the previous window trains on).
        """
        items = torch.cat([batch.inputs, batch.targets[:, -1:]], dim=1)  # (B, L' + 1)
        return items[:, -self.cfg.max_seq_len :]

    def loss(self, batch: TrainBatch) -> torch.Tensor:
        items = self._window_items(batch)  # (B, L)
        real = items != 0  # (B, L)
        masked = (torch.rand(items.shape, device=items.device) < self.cfg.mask_prob) & real
        if self.cfg.mask_fallback:
            # sequences with nothing masked: mask their last item (rows are left-padded, so it
            # is in the last column)
            empty = ~masked.any(dim=1) & real[:, -1]  # (B,)
            masked[empty, -1] = True
        inputs = items.masked_fill(masked, self.mask_token)  # (B, L)
        targets = items * masked  # (B, L) item ids at masked positions, 0 elsewhere
        states = self(inputs)  # (B, L, D)
        weight = self.item_embedding.weight[: self.num_items + 1]  # (N + 1, D) without the mask
        return next_item_loss(states, targets, weight, "ce", bias=self.output_bias)

    def loss_terms(self, batch: TrainBatch) -> int:
        """The masked positions are drawn inside :meth:`loss`; their expected count grows with
        the window's items, which is what this counts (so shares are weighed in expectation)."""
        return int((self._window_items(batch) != 0).sum())

    def encode_users(self, history: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded history -> (B, D) state of a mask token appended after it."""
        L = self.cfg.max_seq_len
        mask = torch.full_like(history[:, :1], self.mask_token)  # (B, 1)
        inputs = torch.cat([history[:, -(L - 1) :] if L > 1 else history[:, :0], mask], dim=1)
        return self(inputs)[:, -1]  # (B, D)

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        scores = state @ item_rows(self.item_embedding, items).T  # (B, C)
        if self.output_bias is not None:
            scores = scores + item_rows(self.output_bias, items)
        return mask_padding_scores(scores, items)
