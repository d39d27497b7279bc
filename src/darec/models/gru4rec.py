"""GRU4Rec (Hidasi et al., 2016) in RecBole's form: embedding -> dropout -> GRU -> linear.

The GRU's per-step state is scored by dot product with the (tied) item embedding table and
trained with cross-entropy over all items at every position (or BPR with one sampled negative).

Left padding and recurrence do not mix: a GRU's state after a run of zero inputs is not zero
(its biases move it), so the state after the last item would depend on how much padding came
first. The histories are therefore rolled to right padding and packed, so the GRU sees only the
real items, and the outputs are rolled back to the left-padded layout.

Dropout is applied to the embeddings only: the GRU's own inter-layer dropout runs inside cuDNN
with a generator that torch's saved RNG state does not cover, which would break exact resume.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from darec.config import ModelConfig
from darec.data.batching import TrainBatch
from darec.models.base import SequentialRecommender
from darec.models.layers import item_rows, mask_padding_scores, next_item_loss

__all__ = ["GRU4Rec"]


class GRU4Rec(SequentialRecommender):
    """A GRU over the item embeddings; the state after step t predicts item t + 1."""

    def __init__(self, cfg: ModelConfig, num_items: int) -> None:
        super().__init__(cfg, num_items)
        D = cfg.hidden_size
        self.item_embedding = nn.Embedding(num_items + 1, D, padding_idx=0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(D, D, num_layers=cfg.num_layers, batch_first=True, bias=False)
        self.proj = nn.Linear(D, D)
        # RecBole's initialisation
        nn.init.xavier_normal_(self.item_embedding.weight)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        for weight in self.gru.parameters():  # bias=False: weights only
            nn.init.xavier_uniform_(weight)
        nn.init.xavier_normal_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Per-step states (B, L, D) of left-padded ids ``inputs`` (B, L); 0 at padding."""
        B, L = inputs.shape
        lengths = (inputs != 0).sum(dim=1)  # (B,)
        steps = torch.arange(L, device=inputs.device)[None, :]  # (1, L)
        shift = (L - lengths)[:, None]  # (B, 1) amount of left padding
        to_right = (steps + shift) % L  # (B, L) right-padded column t reads left column t+shift
        right = inputs.gather(1, to_right)  # (B, L) right-padded
        x = self.dropout(self.item_embedding(right))  # (B, L, D)
        # an empty history runs one padding step (pack needs length >= 1); its output is
        # rolled to column 0, and its last column stays 0
        packed = pack_padded_sequence(
            x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)  # (B, L, D)
        out = self.proj(out) * (right != 0).unsqueeze(-1).to(out.dtype)  # (B, L, D)
        to_left = (steps - shift) % L  # (B, L) inverse roll
        return out.gather(1, to_left.unsqueeze(-1).expand_as(out))  # (B, L, D)

    def loss(self, batch: TrainBatch) -> torch.Tensor:
        states = self(batch.inputs)  # (B, L, D)
        return next_item_loss(states, batch.targets, self.item_embedding.weight, self.cfg.loss)

    def encode_users(self, history: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded history -> (B, D) state after its last item (0 if it is empty)."""
        return self(history)[:, -1]  # (B, D)

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        scores = state @ item_rows(self.item_embedding, items).T  # (B, C)
        return mask_padding_scores(scores, items)
