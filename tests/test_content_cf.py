"""content-cf: text similarity plus counted transitions; new items borrow their text
neighbours' transitions. And the text neighbours themselves (also sasrec-text's
``model.new_item_ids = "neighbours"``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from darec.config import ModelConfig
from darec.errors import ConfigError
from darec.experiment import run_experiment
from darec.models.content_cf import FLOOR, ContentCF, transition_matrix
from darec.models.text_neighbours import text_neighbours
from darec.models.text_sasrec import TextItemTable
from darec.run import RunFolder, load_trained_model
from darec.serving.catalog import add_items
from tests.conftest import ndcg_on_test
from tests.test_content import content_config

SEQUENCES = [np.array([1, 2, 3]), np.array([2, 3, 4, 5])]


def hand_model(**settings: float) -> ContentCF:
    """Six items with random unit text features (item 6 has none), counts of SEQUENCES."""
    gen = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(7, 4, generator=gen), dim=-1)
    feats[0] = feats[6] = 0.0
    cfg = ModelConfig(
        name="content-cf", max_seq_len=5, content_decay=0.5, transition_weight=0.1, **settings
    )
    model = ContentCF(cfg, 6, feats)
    model.prepare(SEQUENCES)
    return model


def test_transitions_are_weighted_successor_shares() -> None:
    table = transition_matrix(SEQUENCES, 7).to_dense()
    # item 2 is followed by 3 (next, twice: 1 + 1), 4 (one after: 1/2) and 5 (two after: 1/4)
    assert torch.allclose(table[2, 3:6], torch.tensor([2.0, 0.5, 0.25]) / 2.75)
    assert torch.allclose(table.sum(1), torch.tensor([0.0, 1, 1, 1, 1, 0, 0]))


def test_scores_are_cosine_plus_weighted_log_transition_probability() -> None:
    model = hand_model()
    assert not model.trainable
    history = torch.tensor([[0, 1, 2]])
    state = model.encode_users(history)
    text, follow = state[:, :4], state[:, 4:]
    table = transition_matrix(SEQUENCES, 7).to_dense()
    # recency weights: item 2 (newest) 1, item 1 0.5
    assert torch.allclose(follow[0], (table[2] + 0.5 * table[1]) / 1.5)
    scores = model.score_items(state, torch.arange(7))
    cos = text[0] @ model.feats.T
    bonus = 0.1 * (follow[0].clamp_min(FLOOR).log() - math.log(FLOOR))
    assert torch.allclose(scores[0, 1:], (cos + bonus)[1:])
    assert torch.isneginf(scores[0, 0])
    assert scores[0, 6] == 0  # no text, never a successor: nothing to go on
    # a subset of the catalog scores the same
    assert torch.allclose(model.score_items(state, torch.tensor([3, 5])), scores[:, [3, 5]])


def test_added_item_with_an_items_text_borrows_its_transitions() -> None:
    model = hand_model(neighbours=1)
    before = model.score_items(model.encode_users(torch.tensor([[1, 2]])), torch.arange(7))
    model.extend_catalog({"feats": model.feats[3:4].clone()})  # item 7 reads like item 3
    assert model.num_items == 7
    table = torch.sparse_coo_tensor(
        model.trans_index, model.trans_value, (8, 8), check_invariants=True
    ).to_dense()
    assert torch.allclose(table[:7, 7], table[:7, 3])  # what led to 3 leads to 7
    assert torch.all(table[7] == 0)  # in a history it adds no transitions of its own
    after = model.score_items(model.encode_users(torch.tensor([[1, 2]])), torch.arange(8))
    assert after[0, 7] == pytest.approx(float(after[0, 3]))
    # the trained items' pairs are untouched
    assert torch.allclose(after[0, 1:7], before[0, 1:7])


def test_borrowing_is_the_same_added_at_once_or_one_by_one() -> None:
    gen = torch.Generator().manual_seed(1)
    new = F.normalize(torch.randn(2, 4, generator=gen), dim=-1)
    once, apart = hand_model(neighbours=2), hand_model(neighbours=2)
    once.extend_catalog({"feats": new})
    apart.extend_catalog({"feats": new[:1]})
    apart.extend_catalog({"feats": new[1:]})
    history = torch.tensor([[1, 7, 8]])
    assert torch.allclose(
        once.score_items(once.encode_users(history), torch.arange(9)),
        apart.score_items(apart.encode_users(history), torch.arange(9)),
    )


def test_text_neighbours_weights() -> None:
    known = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.6, 0.8]])
    new = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    idx, w = text_neighbours(new, known, k=3, temperature=0.1)
    assert idx[0].tolist() == [0, 3, 1]  # by cosine; the row without text comes last
    want = torch.softmax(torch.tensor([1.0, 0.6, 0.0]) / 0.1, dim=0)
    assert torch.allclose(w[0], want)
    assert torch.all(w[1] == 0)  # no text: borrows nothing
    idx, w = text_neighbours(new, known, k=10, temperature=1.0)  # k capped at the known rows
    assert idx.shape == (2, 4) and w[0, -1] == 0  # the textless row weighs nothing


def test_sasrec_text_id_rows_from_neighbours() -> None:
    gen = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(11, 8, generator=gen), dim=-1)
    feats[0] = 0.0
    ids = nn.Embedding(11, 4, padding_idx=0)
    table = TextItemTable(ids, feats)
    rows = table.ids_from_neighbours(feats[[3, 5]], k=1, temperature=0.05)
    assert torch.allclose(rows, ids.weight[[3, 5]].detach())
    # several neighbours: a convex mix of trained rows; items beyond `trained` never count
    mixed = table.ids_from_neighbours(feats[[3]], k=3, temperature=1.0, trained=5)
    idx, w = text_neighbours(feats[[3]], feats[:5], 3, 1.0)
    assert torch.allclose(mixed, w @ ids.weight[:5].detach()[idx[0]])


def test_invalid_neighbour_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="neighbours"):
        ModelConfig(neighbours=0)
    with pytest.raises(ConfigError, match="neighbour_temperature"):
        ModelConfig(neighbour_temperature=0.0)
    with pytest.raises(ConfigError, match="transition_weight"):
        ModelConfig(transition_weight=-1.0)


def test_content_cf_runs_reload_score_the_same_and_add_items(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    cfg = content_config(tiny_data, tmp_path, tiny_llm_dir, "content-cf")
    run = tmp_path / "run"
    result, _ = run_experiment(cfg, run)
    assert result.stopped == "untrainable"
    _, model, _ = load_trained_model(run)
    assert isinstance(model, ContentCF) and model.trans_value.numel() > 0
    assert ndcg_on_test(model, cfg) == pytest.approx(result.test["NDCG@10"], abs=1e-6)

    items = tmp_path / "new.item"
    items.write_text("item_id:token\ttitle:token_seq\nn3\tItem number 3\n")
    assert add_items(run, items) == ["n3"]
    folder = RunFolder.open(run)
    grown = folder.load_model()
    assert isinstance(grown, ContentCF) and grown.num_items == model.num_items + 1
    n3 = grown.num_items
    table = torch.sparse_coo_tensor(
        grown.trans_index, grown.trans_value, (n3 + 1, n3 + 1), check_invariants=True
    ).to_dense()
    assert table[:, n3].sum() > 0  # it borrowed transitions: it can be reached from histories
