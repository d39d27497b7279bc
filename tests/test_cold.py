"""Held-out (cold) items: the split that keeps them from training, and cold/warm metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from darec.data.cold import hold_out_items
from darec.data.split import leave_one_out
from darec.errors import ConfigError
from darec.experiment import run_cold_experiment
from darec.run import load_data
from tests.conftest import tiny_config


def test_cold_items_never_reach_training_or_selection(tiny_data: Path, tmp_path: Path) -> None:
    ds = load_data(tiny_config(tiny_data, tmp_path / "cache"))
    data = hold_out_items(ds, 0.2, seed=3)
    w = data.warm.num_items
    assert (
        len(data.cold_ids) == round(0.2 * ds.num_items) and w + len(data.cold_ids) == ds.num_items
    )
    assert set(data.cold_ids).isdisjoint(data.warm.item_ids)
    assert data.warm.catalog[1] == ds.catalog[ds.item_index(data.warm.item_ids[1])]
    for seq in [*data.train.train, *data.train.valid.histories, data.train.valid.targets]:
        assert np.all((seq >= 1) & (seq <= w))
    assert np.all(data.warm.items <= w) and data.warm.offsets[-1] == data.warm.items.size
    # every test case stays, in the new ids: warm 1..W, then the cold items in their order
    full = leave_one_out(ds).test
    ids = data.warm.item_ids + data.cold_ids
    assert len(data.test) == len(full)
    assert [ids[i] for i in data.test.targets] == [ds.item_ids[i] for i in full.targets]
    assert [ids[i] for i in data.test.histories[0]] == [ds.item_ids[i] for i in full.histories[0]]
    assert data.cold_target.tolist() == [ids[i] in data.cold_ids for i in data.test.targets]
    assert 0 < data.cold_target.sum() < len(data.test)
    # ID models: the warm-target cases, cold items left out of their histories
    assert len(data.test_known) == (~data.cold_target).sum()
    assert all(np.all(h <= w) for h in data.test_known.histories)
    # the same seed draws the same items
    assert hold_out_items(ds, 0.2, seed=3).cold_ids == data.cold_ids
    with pytest.raises(ConfigError, match="held-out items"):
        hold_out_items(ds, 1.0, seed=3)


def test_pop_scores_zero_on_cold_targets(tiny_data: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_data, tmp_path / "cache", "model.name=pop")
    data = hold_out_items(load_data(cfg), 0.2, seed=3)
    result, metrics = run_cold_experiment(cfg, data, tmp_path / "run")
    assert result.stopped == "untrainable" and result.test == {}
    assert set(metrics["cold"].values()) == {0.0}
    assert metrics["warm"]["HR@20"] > 0
