"""Building blocks shared by the baselines: a transformer encoder and next-item losses.

SASRec (causal) and BERT4Rec (bidirectional) run the same :class:`TransformerEncoder`; only the
attention mask differs. The defaults follow RecBole's SASRec (``model.norm = "post"``):

    x = dropout(LayerNorm(item_emb + pos_emb))
    per block:  x = LayerNorm(x + dropout(Attention(x)))
                x = LayerNorm(x + dropout(W2 GELU(W1 x)))

Post-LN (as RecBole and the original SASRec/BERT4Rec papers) is what the published RecBole
numbers use; with 2 layers it trains stably without warm-up. Item embeddings are not scaled by
sqrt(D) (RecBole does not either; the input LayerNorm makes the scale irrelevant up to the
item/position balance).

``model.norm = "pre"`` is the block of the original SASRec code (Kang & McAuley; also the CE
SASRec of Xu et al. 2024), where only the attention query is normalised:

    x = dropout(item_emb + pos_emb), zero at padding
    per block:  x = x + Attention(query=LayerNorm(x), keys=values=x)
                x = LayerNorm(x);  x = x + dropout(W2 dropout(act(W1 x))), zero at padding
    x = LayerNorm(x)

The other switches of :class:`~darec.config.ModelConfig` (``activation``, ``embedding_scale``,
``init``, ``positions``) pick that code's choices one by one. Padding keys are masked in
attention under every setting.

Positions (``model.positions = "from_oldest"``, the default) count from the first real item of
the (left-padded) row, as in RecBole: the oldest item read gets position 0. So states do not
depend on how much left padding a row carries, and the state at step t of a training window is
exactly the state the evaluator computes for that window's first t + 1 items; every per-step
training target is a real evaluation situation. ``"from_newest"`` (the original SASRec code)
counts from the end of the ``max_seq_len`` window instead: the newest item is always at position
``max_seq_len - 1``, so an item sits at different positions in training and at evaluation (a
tiny model then fails to rank most training prefixes; only each window's last step is seen as
the evaluator sees it).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from darec.config import ModelConfig
from darec.models.fused_ce import linear_cross_entropy

__all__ = [
    "init_weights",
    "weight_init",
    "attention_mask",
    "position_ids",
    "SelfAttention",
    "Block",
    "TransformerEncoder",
    "next_item_loss",
    "sample_negatives",
    "mask_padding_scores",
]


def init_weights(module: nn.Module, scheme: str = "normal") -> None:
    """Initialise one module: Linear and Embedding weights by ``scheme``, zero biases,
    LayerNorm 1/0.

    ``scheme`` is ``"normal"`` (RecBole's normal(0, 0.02)), ``"xavier"`` (Xavier normal, std
    sqrt(2 / (fan_in + fan_out))) or ``"xavier-clamped"`` (that, clipped to [-0.02, 0.02]). Use
    with ``model.apply(weight_init(scheme))``. The padding row (``padding_idx``) of an embedding
    is reset to zero, so padding contributes nothing before it is masked out.
    """
    if isinstance(module, (nn.Linear, nn.Embedding)):
        if scheme == "normal":
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        elif scheme in ("xavier", "xavier-clamped"):
            nn.init.xavier_normal_(module.weight)
            if scheme == "xavier-clamped":
                with torch.no_grad():
                    module.weight.clamp_(-0.02, 0.02)
        else:
            raise ValueError(
                f"unknown init scheme {scheme!r}; expected 'normal', 'xavier' or 'xavier-clamped'"
            )
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def weight_init(scheme: str) -> Callable[[nn.Module], None]:
    """:func:`init_weights` with ``scheme`` bound, for ``model.apply``."""

    def apply(module: nn.Module) -> None:
        init_weights(module, scheme)

    return apply


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


def position_ids(inputs: torch.Tensor, scheme: str, max_seq_len: int) -> torch.Tensor:
    """(B, L) position ids of the left-padded ids ``inputs`` (B, L), L <= max_seq_len.

    ``"from_oldest"``: the first real item of a row is at 0 (padding columns get 0, masked);
    ``"from_newest"``: the last column is at ``max_seq_len - 1`` whatever L is.
    """
    if scheme == "from_oldest":
        return ((inputs != 0).long().cumsum(dim=1) - 1).clamp(min=0)  # (B, L)
    if scheme == "from_newest":
        B, L = inputs.shape
        pos = torch.arange(max_seq_len - L, max_seq_len, device=inputs.device)  # (L,)
        return pos.expand(B, L)
    raise ValueError(f"unknown positions {scheme!r}; expected 'from_oldest' or 'from_newest'")


class SelfAttention(nn.Module):
    """Multi-head self-attention: ``F.scaled_dot_product_attention`` with an explicit mask.

    Queries may come from other states than keys and values (``query``), as in the original
    SASRec's pre-LN blocks; the query, key and value projections stay one fused Linear.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.attn_dropout = cfg.attn_dropout
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, query: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attend from ``query`` (default ``x``) (B, L, D) over keys/values of ``x`` (B, L, D)."""
        B, L, D = x.shape
        if query is None:
            q, k, v = self.qkv(x).split(D, dim=-1)  # 3 x (B, L, D)
        else:
            w, b = self.qkv.weight, self.qkv.bias  # (3D, D), (3D,)
            q = F.linear(query, w[:D], b[:D])  # (B, L, D)
            k, v = F.linear(x, w[D:], b[D:]).split(D, dim=-1)  # 2 x (B, L, D)
        H = self.num_heads
        q, k, v = (t.view(B, L, H, D // H).transpose(1, 2) for t in (q, k, v))  # (B, H, L, D/H)
        y = F.scaled_dot_product_attention(  # (B, H, L, D/H)
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(B, L, D)  # (B, L, D)
        return self.proj(y)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU}


class Block(nn.Module):
    """Transformer block: attention, then a feed-forward; post-LN or the original pre-LN.

    post (``cfg.norm``): ``x = LN(x + drop(Attn(x)))``, ``x = LN(x + drop(W2 act(W1 x)))``.
    pre: ``x = x + Attn(query=LN(x), kv=x)``, ``x = LN(x)``, ``x = x + drop(W2 drop(act(W1 x)))``,
    then padding states (``keep`` False) are zeroed.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.pre_norm = cfg.norm == "pre"
        self.attn = SelfAttention(cfg)
        self.ln_1 = nn.LayerNorm(cfg.hidden_size, eps=1e-8 if self.pre_norm else 1e-12)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.hidden_size, cfg.inner_size),
            ACTIVATIONS[cfg.activation](),
            *([nn.Dropout(cfg.dropout)] if self.pre_norm else []),
            nn.Linear(cfg.inner_size, cfg.hidden_size),
        )
        self.ln_2 = nn.LayerNorm(cfg.hidden_size, eps=1e-8 if self.pre_norm else 1e-12)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, L, D) states, (B, 1, L, L) attention mask, (B, L, 1) real positions -> (B, L, D)."""
        if self.pre_norm:
            x = x + self.attn(x, mask, query=self.ln_1(x))  # (B, L, D)
            x = self.ln_2(x)
            x = x + self.dropout(self.ffn(x))  # (B, L, D)
            return x * keep
        x = self.ln_1(x + self.dropout(self.attn(x, mask)))  # (B, L, D)
        x = self.ln_2(x + self.dropout(self.ffn(x)))  # (B, L, D)
        return x


class TransformerEncoder(nn.Module):
    """Learned positions + ``cfg.num_layers`` blocks, post-LN (input LayerNorm/dropout first) or
    pre-LN (input dropout, a final LayerNorm); see the module docstring.

    The item embedding lives in the model that owns this encoder (its vocabulary differs between
    SASRec and BERT4Rec); :meth:`forward` takes the embedded items and the raw ids (for the mask).
    """

    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.max_seq_len = cfg.max_seq_len
        self.positions = cfg.positions
        self.pre_norm = cfg.norm == "pre"
        self.item_scale = math.sqrt(cfg.hidden_size) if cfg.embedding_scale else 1.0
        self.position_embedding = nn.Embedding(cfg.max_seq_len, cfg.hidden_size)
        # post: LayerNorm of the input; pre: LayerNorm of the output
        self.ln = nn.LayerNorm(cfg.hidden_size, eps=1e-8 if self.pre_norm else 1e-12)
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
        keep = (inputs != 0).unsqueeze(-1).to(item_emb.dtype)  # (B, L, 1)
        pos = position_ids(inputs, self.positions, self.max_seq_len)  # (B, L)
        x = item_emb * self.item_scale + self.position_embedding(pos)  # (B, L, D)
        mask = attention_mask(inputs, self.causal)  # (B, 1, L, L)
        if self.pre_norm:
            x = self.dropout(x) * keep  # (B, L, D)
            for block in self.blocks:
                x = block(x, mask, keep)  # (B, L, D)
            return self.ln(x) * keep  # (B, L, D)
        x = self.dropout(self.ln(x))  # (B, L, D)
        for block in self.blocks:
            x = block(x, mask, keep)  # (B, L, D)
        return x * keep  # (B, L, D)


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
        # == F.cross_entropy(h @ item_weight[1:].T + bias[1:], pos - 1), without the (P, N) logits
        return linear_cross_entropy(h, item_weight[1:], pos - 1, None if bias is None else bias[1:])
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


def catalog_span(items: torch.Tensor) -> slice | None:
    """``slice(lo, hi)`` when ``items`` (C,) is exactly ``lo, lo + 1, ..., hi - 1`` (the
    evaluator's and the recommender's catalog chunks), else None."""
    n = items.numel()
    if n == 0 or items.dim() != 1 or items.dtype.is_floating_point:
        return None
    lo, hi = int(items[0]), int(items[-1]) + 1
    if hi - lo != n or (n > 1 and not bool((items[1:] > items[:-1]).all())):
        return None
    return slice(lo, hi)


def item_rows(table: torch.Tensor | nn.Embedding, items: torch.Tensor) -> torch.Tensor:
    """``table``'s rows of ``items`` (C,): a view when they are a catalog chunk (see
    :func:`catalog_span`), so scoring the whole catalog copies nothing (a gathered copy of
    Beauty's 12k x 64 table cost 0.3-0.9 ms a request); other tables (a module computing its
    rows, e.g. sasrec-text's) are called."""
    weight = table.weight if isinstance(table, nn.Embedding) else table
    if not isinstance(weight, torch.Tensor):
        return table(items)  # type: ignore[operator]
    span = catalog_span(items)
    return weight[items] if span is None else weight[span]
