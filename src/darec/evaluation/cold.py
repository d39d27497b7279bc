"""Cold- and warm-target test metrics of a model trained on a :class:`ColdSplit`'s warm items."""

from __future__ import annotations

import numpy as np
import torch

from darec.config import Config
from darec.data.cold import ColdSplit
from darec.evaluation.evaluator import evaluate
from darec.evaluation.metrics import metrics_from_ranks
from darec.models.base import SequentialRecommender

__all__ = ["cold_warm_metrics"]


def cold_warm_metrics(
    model: SequentialRecommender,
    cfg: Config,
    data: ColdSplit,
    device: torch.device | str = "cpu",
) -> dict[str, dict[str, float]]:
    """``{"cold": metrics, "warm": metrics}`` on ``data``'s test cases (protocol in
    :mod:`darec.data.cold`). A model that reads item text first adds the cold items from their
    text (``model`` is extended in place); any other scores 0 on cold targets by construction
    and is tested on the warm targets with what it knows."""
    ks = cfg.eval.ks
    if not model.adds_items_from_text:
        ranks = evaluate(model, data.test_known, cfg.eval, cfg.model.max_seq_len, device).ranks
        zero = dict.fromkeys(metrics_from_ranks(np.ones(1), ks), 0.0)
        return {"cold": zero, "warm": metrics_from_ranks(ranks, ks)}
    with torch.no_grad():
        rows = model.item_rows_from_text(cfg, data.warm.catalog, data.cold_catalog)
    model.extend_catalog(rows)
    model.to(device)
    ranks = evaluate(model, data.test, cfg.eval, cfg.model.max_seq_len, device).ranks
    return {
        "cold": metrics_from_ranks(ranks[data.cold_target], ks),
        "warm": metrics_from_ranks(ranks[~data.cold_target], ks),
    }
