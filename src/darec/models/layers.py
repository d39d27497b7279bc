"""Building blocks shared by the baselines: a post-LN transformer encoder and next-item losses.

SASRec (causal) and BERT4Rec (bidirectional) run the same :class:`TransformerEncoder`; only the
attention mask differs. The encoder follows RecBole's SASRec:

    x = dropout(LayerNorm(item_emb + pos_emb))
    per block:  x = LayerNorm(x + dropout(Attention(x)))
                x = LayerNorm(x + dropout(W2 GELU(W1 x)))

Post-LN (as RecBole and the original SASRec/BERT4Rec) is what the published baseline numbers use;
with 2 layers it trains stably without warm-up. Item embeddings are not scaled by sqrt(D)
(RecBole does not either; the input LayerNorm makes the scale irrelevant up to the item/position
balance).

Positions count from the first real item of the (left-padded) row, as in RecBole: the oldest item
read gets position 0. So states do not depend on how much left padding a row carries, and the
state at step t of a training window is exactly the state the evaluator computes for that window's
first t + 1 items; every per-step training target is a real evaluation situation. (Counting from
the end instead, as the original SASRec code does, puts an item at different positions in training
and at evaluation, which a tiny model cannot bridge: it fails to rank most training prefixes.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from darec.config import ModelConfig

__all__ = [
    "init_weights",
    "attention_mask",
    "SelfAttention",
    "Block",
    "TransformerEncoder",
    "next_item_loss",
    "sample_negatives",
    "mask_padding_scores",
]


def init_weights(module: nn.Module) -> None:
    """RecBole's initialisation: normal(0, 0.02) weights, zero biases, LayerNorm 1/0.

    Use with ``model.apply(init_weights)``. The padding row (``padding_idx``) of an embedding is
    reset to zero, so padding contributes nothing before it is masked out.
    """
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def attention_mask(inputs: torch.Tensor, causal: bool) -> torch.Tensor:
    """Boolean mask (B, 1, L, L), True where query i may attend to key j.

    Padding keys (item 0) are masked. Every query may always attend to itself: a padding query
    then has one allowed key instead of none, which would make softmax return NaN. The states at
    padding positions are meaningless and callers ignore (or zero) them.
    """
    B, L = inputs.shape
    keep = (inputs != 0)[:, None, None, :]  # (B, 1, 1, L) real keys
    eye = torch.eye(L, dtype=torch.bool, device=inputs.device)  # (L, L)
    if causal:
        order = torch.ones(L, L, dtype=torch.bool, device=inputs.device).tril()  # (L, L)
        keep = keep & order
    return keep | eye  # (B, 1, L, L)


class SelfAttention(nn.Module):
    """Multi-head self-attention: ``F.scaled_dot_product_attention`` with an explicit mask."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.attn_dropout = cfg.attn_dropout
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)  # 3 x (B, L, D)
        H = self.num_heads
        q, k, v = (t.view(B, L, H, D // H).transpose(1, 2) for t in (q, k, v))  # (B, H, L, D/H)
        y = F.scaled_dot_product_attention(  # (B, H, L, D/H)
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(B, L, D)  # (B, L, D)
        return self.proj(y)


class Block(nn.Module):
    """Post-LN transformer block: attention, then a GELU feed-forward, each residual + LayerNorm."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.ln_1 = nn.LayerNorm(cfg.hidden_size, eps=1e-12)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.hidden_size, cfg.inner_size),
            nn.GELU(),
            nn.Linear(cfg.inner_size, cfg.hidden_size),
        )
        self.ln_2 = nn.LayerNorm(cfg.hidden_size, eps=1e-12)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(x + self.dropout(self.attn(x, mask)))  # (B, L, D)
        x = self.ln_2(x + self.dropout(self.ffn(x)))  # (B, L, D)
        return x


class TransformerEncoder(nn.Module):
    """Learned positions + input LayerNorm/dropout + ``cfg.num_layers`` post-LN blocks.

    The item embedding lives in the model that owns this encoder (its vocabulary differs between
    SASRec and BERT4Rec); :meth:`forward` takes the embedded items and the raw ids (for the mask).
    """

    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.max_seq_len = cfg.max_seq_len
        self.position_embedding = nn.Embedding(cfg.max_seq_len, cfg.hidden_size)
        self.ln = nn.LayerNorm(cfg.hidden_size, eps=1e-12)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))

    def forward(self, item_emb: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """(B, L, D) item embeddings of the left-padded ids ``inputs`` (B, L) -> (B, L, D) states.

        States at padding positions are set to zero.
        """
        B, L = inputs.shape
        if L > self.max_seq_len:
            raise ValueError(
                f"sequence length {L} exceeds model.max_seq_len={self.max_seq_len}; "
                "pass the most recent max_seq_len items"
            )
        # positions count from the first real item; padding columns get position 0 (masked)
        pos = ((inputs != 0).long().cumsum(dim=1) - 1).clamp(min=0)  # (B, L)
        x = self.dropout(self.ln(item_emb + self.position_embedding(pos)))  # (B, L, D)
        mask = attention_mask(inputs, self.causal)  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, mask)  # (B, L, D)
        return x * (inputs != 0).unsqueeze(-1).to(x.dtype)  # (B, L, D)


def sample_negatives(positives: torch.Tensor, num_items: int) -> torch.Tensor:
    """One uniform random item in 1..num_items per entry, never equal to the positive.

    Draws from 1..num_items-1 and shifts draws at or above the positive up by one, which is
    exactly uniform over the other items. Uses torch's global RNG (resumable).
    """
    if num_items < 2:
        raise ValueError(f"negative sampling needs at least 2 items, got num_items={num_items}")
    neg = torch.randint(1, num_items, positives.shape, device=positives.device)
    return neg + (neg >= positives).long()


def next_item_loss(
    states: torch.Tensor,
    targets: torch.Tensor,
    item_weight: torch.Tensor,
    loss: str,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Next-item loss at every position with a target (``targets != 0``).

    ``states`` (B, L, D) are scored against ``item_weight`` (N + 1, D), row i = item i, row 0 =
    padding (never a candidate). ``loss`` is ``"ce"`` (softmax over all N items) or ``"bpr"``
    (one uniform negative per position). ``bias`` (N + 1,) is an optional per-item output bias.
    """
    valid = targets != 0  # (B, L)
    h = states[valid]  # (P, D)
    pos = targets[valid]  # (P,)
    if h.shape[0] == 0:
        return states.sum() * 0.0  # no target in this batch: a zero that keeps the graph
    num_items = item_weight.shape[0] - 1
    if loss == "ce":
        logits = h @ item_weight[1:].T  # (P, N)
        if bias is not None:
            logits = logits + bias[1:]
        return F.cross_entropy(logits, pos - 1)
    if loss == "bpr":
        neg = sample_negatives(pos, num_items)  # (P,)
        pos_score = (h * item_weight[pos]).sum(-1)  # (P,)
        neg_score = (h * item_weight[neg]).sum(-1)  # (P,)
        if bias is not None:
            pos_score, neg_score = pos_score + bias[pos], neg_score + bias[neg]
        return F.softplus(neg_score - pos_score).mean()  # -log sigmoid(pos - neg)
    raise ValueError(f"unknown loss {loss!r}; expected 'ce' or 'bpr'")


def mask_padding_scores(scores: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Set the scores (B, C) of the padding item 0 among ``items`` (C,) to -inf, in place."""
    return scores.masked_fill_((items == 0)[None, :], -math.inf)
