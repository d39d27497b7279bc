"""Explicit registry: model name -> class."""

from __future__ import annotations

from darec.config import ModelConfig
from darec.errors import ConfigError
from darec.models.base import SequentialRecommender
from darec.models.bert4rec import BERT4Rec
from darec.models.gru4rec import GRU4Rec
from darec.models.pop import Pop
from darec.models.sasrec import SASRec

__all__ = ["MODELS", "build_model", "check_model_name"]

MODELS: dict[str, type[SequentialRecommender]] = {
    "pop": Pop,
    "gru4rec": GRU4Rec,
    "sasrec": SASRec,
    "bert4rec": BERT4Rec,
}


def check_model_name(name: str) -> None:
    """Raise :class:`ConfigError` listing the valid names if ``name`` is not registered."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")


def build_model(cfg: ModelConfig, num_items: int) -> SequentialRecommender:
    """Instantiate the model named ``cfg.name`` for a catalog of ``num_items`` items."""
    check_model_name(cfg.name)
    return MODELS[cfg.name](cfg, num_items)
