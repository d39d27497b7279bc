"""Explicit registry: model name -> class."""

from __future__ import annotations

import torch

from darec.config import Config
from darec.errors import ConfigError
from darec.models.base import ModelContext, SequentialRecommender
from darec.models.bert4rec import BERT4Rec
from darec.models.content import ContentModel
from darec.models.content_cf import ContentCF
from darec.models.darec import DARec
from darec.models.gru4rec import GRU4Rec
from darec.models.pop import Pop
from darec.models.sasrec import SASRec
from darec.models.text_sasrec import TextSASRec

__all__ = ["MODELS", "build_model", "check_model_name"]

MODELS: dict[str, type[SequentialRecommender]] = {
    "pop": Pop,
    "content": ContentModel,
    "content-cf": ContentCF,
    "gru4rec": GRU4Rec,
    "sasrec": SASRec,
    "sasrec-text": TextSASRec,
    "bert4rec": BERT4Rec,
    "darec": DARec,
}


def check_model_name(name: str) -> None:
    """Raise :class:`ConfigError` listing the valid names if ``name`` is not registered."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")


def build_model(cfg: Config, ctx: ModelContext) -> SequentialRecommender:
    """Instantiate the model named ``cfg.model.name`` for the data described by ``ctx``."""
    check_model_name(cfg.model.name)
    try:
        return MODELS[cfg.model.name].from_config(cfg, ctx)
    except (MemoryError, torch.OutOfMemoryError, RuntimeError) as exc:
        if not isinstance(exc, MemoryError | torch.OutOfMemoryError) and "allocate" not in str(exc):
            raise
        m = cfg.model
        raise ConfigError(
            f"the {m.name} model does not fit in memory with model.hidden_size={m.hidden_size}, "
            f"model.num_layers={m.num_layers}, model.inner_size={m.inner_size} and "
            f"{ctx.num_items} items: {str(exc).splitlines()[0]}; choose smaller sizes"
        ) from exc
