"""SASRec with frozen-LLM item text features (``--model sasrec-text``).

Each item's sentence (``text.fields``, ``text.max_tokens``) is encoded once, before training,
by the frozen encoder (``text.encoder``, ``text.encoder_layers``, ``text.dtype``): the mean of
its final word states (``text.pooling``), standardised (or whitened, ``text.whiten``) over the
catalog and L2-normalised, and cached by content (src/darec/models/text_features.py). The item
vectors SASRec reads and scores against are then ``ID_i + W t_i``, with ``W`` learned and zero
at the start, so the model starts as plain SASRec and training adds what the text explains. The
encoder never runs during training or scoring, so this costs what SASRec costs plus one pass
over the catalog (none when the features are cached).

Measured with ``benchmarks/text_signal.py`` (docs/results.md): +4-7% test NDCG@10 over SASRec on
Amazon Beauty, no change on MovieLens-100K, where the IDs already hold what titles and genres
say. The features are part of the checkpoint, so a run reloads without the backbone.
"""

from __future__ import annotations

import torch
from torch import nn

from darec.config import Config, ModelConfig
from darec.models.base import ModelContext
from darec.models.sasrec import SASRec
from darec.models.text_features import item_text_features

__all__ = ["TextItemTable", "TextSASRec", "fit_text_table", "item_text_features"]


class TextItemTable(nn.Module):
    """Drop-in for SASRec's ``item_embedding``: ID rows + projected (fixed) text rows.

    ``with_ids=False`` (``model.text_only``) keeps the text part only; the projection then
    starts random instead of at zero."""

    def __init__(self, ids: nn.Embedding, feats: torch.Tensor, with_ids: bool = True) -> None:
        super().__init__()
        self.ids = ids if with_ids else None
        self.feats: torch.Tensor
        self.register_buffer("feats", feats)
        self.proj = nn.Linear(feats.shape[1], ids.embedding_dim, bias=False)
        if with_ids:
            nn.init.zeros_(self.proj.weight)  # start as plain SASRec

    @property
    def weight(self) -> torch.Tensor:
        """(N + 1, D) every item's vector."""
        text = self.proj(self.feats)
        return text if self.ids is None else self.ids.weight + text

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        text = self.proj(self.feats[items])
        return text if self.ids is None else self.ids(items) + text


def fit_text_table(model: SASRec, state: dict[str, torch.Tensor], prefix: str = "") -> None:
    """Make ``model``'s item table fit a saved text-feature SASRec state before it is loaded.

    A model built without its data (restored from a checkpoint) has no features yet, or none at
    all (DARec's CF model starts as plain SASRec): give it a text table whose feature buffer has
    the saved shape, trainable or frozen as the table it replaces. Does nothing when the state
    holds no text features or the table fits."""
    feats = state.get(f"{prefix}item_embedding.feats")
    if feats is None:
        return
    table = model.item_embedding
    if isinstance(table, TextItemTable) and table.feats.shape == feats.shape:
        return
    with_ids = f"{prefix}item_embedding.ids.weight" in state
    ids = table.ids if isinstance(table, TextItemTable) else table
    if ids is None:
        ids = nn.Embedding(model.num_items + 1, model.cfg.hidden_size, padding_idx=0)
    trainable = any(p.requires_grad for p in table.parameters())
    fitted = TextItemTable(ids, torch.zeros_like(feats), with_ids).requires_grad_(trainable)
    model.item_embedding = fitted  # type: ignore[assignment]


class TextSASRec(SASRec):
    """SASRec whose item vectors add a learned projection of frozen-LLM text features."""

    def __init__(self, cfg: ModelConfig, num_items: int, feats: torch.Tensor) -> None:
        super().__init__(cfg, num_items)
        table = TextItemTable(self.item_embedding, feats, with_ids=not cfg.text_only)
        self.item_embedding = table  # type: ignore[assignment]

    @classmethod
    def from_config(cls, cfg: Config, ctx: ModelContext) -> TextSASRec:
        if ctx.catalog is None:  # restored from a checkpoint: the features come with it
            return cls(cfg.model, ctx.num_items, torch.zeros(ctx.num_items + 1, 1))
        return cls(cfg.model, ctx.num_items, item_text_features(cfg, ctx))

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        fit_text_table(self, state)  # a restored model's placeholder features have the wrong width
        super().load_trained_state(state)
