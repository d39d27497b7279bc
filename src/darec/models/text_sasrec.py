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
from darec.data.batching import TrainBatch
from darec.errors import CheckpointError
from darec.models.base import ModelContext
from darec.models.content_prior import ContentPrior
from darec.models.sasrec import SASRec
from darec.models.text_features import (
    features_for,
    item_text_features,
    new_item_text_features,
)
from darec.models.text_neighbours import text_neighbours

__all__ = [
    "features_for",
    "TextItemTable",
    "TextSASRec",
    "fit_text_table",
    "item_text_features",
    "new_item_text_features",
    "new_text_table_rows",
]


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
        self.keep: torch.Tensor | None = None
        """(N + 1, 1) 0/1 factor on each item's ID row for one training step (ID dropout);
        None: every ID row counts."""

    @property
    def weight(self) -> torch.Tensor:
        """(N + 1, D) every item's vector."""
        text = self.proj(self.feats)
        if self.ids is None:
            return text
        ids = self.ids.weight if self.keep is None else self.ids.weight * self.keep
        return ids + text

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        text = self.proj(self.feats[items])
        if self.ids is None:
            return text
        ids = self.ids(items) if self.keep is None else self.ids(items) * self.keep[items]
        return ids + text

    def ids_from_text(
        self, feats: torch.Tensor, ridge: float = 1.0, trained: int | None = None
    ) -> torch.Tensor:
        """(M, H) ID rows predicted for text features ``feats`` (M, D): the ridge regression
        (penalty ``ridge``) from text features to ID rows, fitted on the items with text among
        the first ``trained`` rows (None: all; rows appended after training are not trained)."""
        assert self.ids is not None
        feats_known, ids_known = self.feats[:trained], self.ids.weight.detach()[:trained]
        rows = feats_known.norm(dim=-1) > 0  # items with text (never padding)
        x = feats_known[rows].double()  # (n, D)
        y = ids_known[rows].double()  # (n, H)
        gram = x.T @ x + ridge * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        weights = torch.linalg.solve(gram, x.T @ y)  # (D, H)
        return (feats.to(x) @ weights).to(self.ids.weight.dtype)

    def ids_from_neighbours(
        self, feats: torch.Tensor, k: int, temperature: float, trained: int | None = None
    ) -> torch.Tensor:
        """(M, H) ID rows for text features ``feats`` (M, D): each the weighted mean of the ID
        rows of its ``k`` text neighbours among the first ``trained`` rows (None: all), weighted
        by a softmax of cosine / ``temperature`` (:func:`text_neighbours`)."""
        assert self.ids is not None
        ids_known = self.ids.weight.detach()[:trained]
        idx, w = text_neighbours(feats.to(self.feats), self.feats[:trained], k, temperature)
        return torch.einsum("mk,mkh->mh", w.to(ids_known), ids_known[idx])

    def extend(self, feats: torch.Tensor, ids: torch.Tensor | None = None) -> None:
        """Append M items with text features ``feats`` (M, D) and ID rows ``ids`` (M, H), zero
        when None."""
        if feats.ndim != 2 or feats.shape[1] != self.feats.shape[1]:
            raise CheckpointError(
                f"new item features have shape {tuple(feats.shape)}; expected (M, "
                f"{self.feats.shape[1]}) like the model's"
            )
        if (
            ids is not None
            and self.ids is not None
            and ids.shape != (len(feats), self.ids.weight.shape[1])
        ):
            raise CheckpointError(
                f"new item ID rows have shape {tuple(ids.shape)}; expected "
                f"({len(feats)}, {self.ids.weight.shape[1]})"
            )
        feats = feats.to(self.feats)
        self.feats = torch.cat([self.feats, feats])
        if self.ids is not None:
            old = self.ids.weight
            grown = nn.Embedding(old.shape[0] + feats.shape[0], old.shape[1], padding_idx=0)
            grown.to(old.device, old.dtype).requires_grad_(old.requires_grad)
            with torch.no_grad():
                grown.weight.zero_()
                grown.weight[: old.shape[0]] = old
                if ids is not None:
                    grown.weight[old.shape[0] :] = ids.to(old)
            self.ids = grown


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
        # model.content_weight x the content score is added to the scores (0: off)
        self.prior = ContentPrior(cfg.content_weight, cfg.content_decay, cfg.max_seq_len)

    @classmethod
    def from_config(cls, cfg: Config, ctx: ModelContext) -> TextSASRec:
        return cls(cfg.model, ctx.num_items, features_for(cfg, ctx))

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        fit_text_table(self, state)  # a restored model's placeholder features have the wrong width
        super().load_trained_state(state)

    def content_prior(self) -> ContentPrior:
        return self.prior

    def encode_users(self, history: torch.Tensor) -> torch.Tensor:
        """SASRec's (B, H) user state, followed by the (B, D) text vector of the history when
        the content prior is on."""
        state = super().encode_users(history)
        if not self.prior.active:
            return state
        text = self.prior.user_vectors(self._table().feats, history)
        return torch.cat([state, text.to(state.dtype)], dim=-1)

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        hidden = self.cfg.hidden_size
        scores = super().score_items(state[:, :hidden], items)
        if state.shape[1] == hidden:  # encoded with the content prior off
            return scores
        return scores + self.prior.scores(state[:, hidden:], self._table().feats, items)

    def _table(self) -> TextItemTable:
        table = self.item_embedding
        assert isinstance(table, TextItemTable)  # set in __init__ (or by fit_text_table)
        return table

    def loss(self, batch: TrainBatch) -> torch.Tensor:
        """SASRec's loss; with ``model.id_dropout`` a random share of the items has no ID row in
        this step (inputs and softmax alike), so their text alone must represent them."""
        table = self.item_embedding
        p = self.cfg.id_dropout
        if not (p and self.training and isinstance(table, TextItemTable) and table.ids is not None):
            return super().loss(batch)
        rows = table.feats.shape[0]
        table.keep = (torch.rand(rows, 1, device=table.feats.device) >= p).to(table.feats.dtype)
        try:
            return super().loss(batch)
        finally:
            table.keep = None

    adds_items_from_text = True

    def item_rows_from_text(
        self, cfg: Config, catalog: list[dict[str, str]], new: list[dict[str, str]]
    ) -> dict[str, torch.Tensor]:
        """The new items' rows of its text table (:func:`new_text_table_rows`)."""
        return new_text_table_rows(self._table(), cfg, catalog, new)

    def extend_catalog(self, rows: dict[str, torch.Tensor]) -> None:
        """Append items with the text features ``rows["feats"]`` (M, D) and the ID rows
        ``rows["ids"]`` (M, H) if given, else zero ones (the text branch alone represents
        them)."""
        self._table().extend(rows["feats"], rows.get("ids"))
        self.num_items += rows["feats"].shape[0]


def new_text_table_rows(
    table: TextItemTable, cfg: Config, catalog: list[dict[str, str]], new: list[dict[str, str]]
) -> dict[str, torch.Tensor]:
    """Rows of ``table`` (trained on ``catalog``) for the items ``new``, for
    :meth:`TextItemTable.extend`: ``feats`` (M, D), their text features as ``cfg.text`` computes
    them (see :func:`new_item_text_features`); with ``model.new_item_ids = "from_text"`` also
    ``ids`` (M, H): their ID rows predicted from those features
    (:meth:`TextItemTable.ids_from_text`), with ``"neighbours"`` the weighted mean of their text
    neighbours' ID rows (:meth:`TextItemTable.ids_from_neighbours`, ``model.neighbours``,
    ``model.neighbour_temperature``)."""
    feats = new_item_text_features(cfg, catalog, new)
    m = cfg.model
    if m.new_item_ids == "zero" or table.ids is None:
        return {"feats": feats}
    # from the trained rows only (catalog[0] is padding): the same rows whether or not items
    # were added before
    if m.new_item_ids == "neighbours":
        ids = table.ids_from_neighbours(
            feats, m.neighbours, m.neighbour_temperature, trained=len(catalog)
        )
    else:
        ids = table.ids_from_text(feats, trained=len(catalog))
    return {"feats": feats, "ids": ids}
