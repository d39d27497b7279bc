"""The content score, on its own (``--model content``) or added to a text model's scores.

A user's *text vector* is the recency-weighted mean of the text features of the last
``model.max_seq_len`` history items (weight ``model.content_decay ** age``, age 0 for the newest),
L2-normalised; an item's *content score* is the cosine between it and the item's text features.
It needs nothing trained, and it ranks items added after training like any other, since it knows
items by their text alone.

:class:`ContentPrior` adds ``weight`` times that score to a trained text model's scores
(``model.content_weight``): the model learns what follows what from the interactions, the prior
says "more like what this user has just picked", which on catalogs of brands and
product lines (Amazon Beauty) an ID model cannot say about items it has seen rarely or never. The
trainer can choose the weight on validation after training (``eval.content_weights``): the run
folder's ``content_weight.json`` keeps the choice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from darec.models.layers import item_rows

__all__ = ["ContentPrior", "text_vectors"]


def text_vectors(
    feats: torch.Tensor, history: torch.Tensor, decay: float, max_len: int
) -> torch.Tensor:
    """(B, D) unit text vectors of left-padded histories ``history`` (B, L) over item features
    ``feats`` (N + 1, D); 0 for an empty history or one without text."""
    history = history[:, -max_len:]  # (B, L)
    age = torch.arange(history.shape[1] - 1, -1, -1, device=history.device)  # (L,) newest 0
    weight = decay ** age.to(feats.dtype)  # (L,)
    weight = weight[None] * (history > 0)  # (B, L), padding weighs nothing
    user = torch.einsum("bl,bld->bd", weight, feats[history])  # (B, D)
    return F.normalize(user, dim=-1)


class ContentPrior:
    """``weight`` x content score, for a model whose item text features are ``feats``.

    A model using it appends :meth:`user_vectors` to its user state in ``encode_users`` (only
    when :attr:`active`) and adds :meth:`scores` of that part in ``score_items``. It holds no
    tensor: the weight comes from ``model.content_weight`` or from the weight the trainer chose
    on validation (the run folder's ``content_weight.json``, applied when the run is loaded)."""

    def __init__(self, weight: float, decay: float, max_len: int) -> None:
        self.weight, self.decay, self.max_len = float(weight), decay, max_len

    @property
    def active(self) -> bool:
        return self.weight != 0.0

    def user_vectors(self, feats: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """(B, D) the users' text vectors (:func:`text_vectors`)."""
        return text_vectors(feats, history, self.decay, self.max_len)

    def scores(self, users: torch.Tensor, feats: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, C) ``weight`` x cosine of the text vectors ``users`` (B, D) and ``items`` (C,)."""
        return self.weight * (users @ item_rows(feats, items).T)
