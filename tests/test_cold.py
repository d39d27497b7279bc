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


def test_demo_shows_a_column_for_held_out_items(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    from typer.testing import CliRunner

    from darec.cli import app

    tiny = [
        f"data.path={tiny_data}",
        "data.format=atomic",
        "data.user_min=3",
        "data.item_min=1",
        "model.max_seq_len=8",
        "model.hidden_size=16",
        "model.inner_size=32",
        "train.epochs=1",
        f"text.encoder={tiny_llm_dir}",
        "text.dtype=fp32",
        "text.encoder_layers=0",
        "text.fields=title",
        "text.max_tokens=6",
    ]
    sets = [arg for s in tiny for arg in ("--set", s)]
    out = CliRunner().invoke(
        app,
        ["demo", "-o", str(tmp_path / "demo"), "--models", "pop,content", "--cold", "0.2", *sets],
        env={"DAREC_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"},
    )
    assert out.exit_code == 0, out.output
    assert "items held out of training" in out.output and "cold NDCG@10" in out.output
    pop_row = next(line for line in out.output.splitlines() if line.startswith("│ pop"))
    assert "cannot" in pop_row
    assert (tmp_path / "demo" / "content-cold" / "checkpoints").is_dir()
