"""The content-based baseline: text similarity to the recent history, nothing to train."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from darec.config import Config, ModelConfig
from darec.errors import ConfigError
from darec.experiment import run_experiment
from darec.models.content import ContentModel
from darec.run import load_trained_model
from tests.conftest import ndcg_on_test, tiny_config


def hand_model(decay: float = 0.5) -> ContentModel:
    """Four items on the unit circle of a 2-D feature space; item 4 has no text."""
    feats = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])
    return ContentModel(ModelConfig(max_seq_len=3, content_decay=decay), 4, feats)


def test_scores_are_cosines_to_the_recency_weighted_history() -> None:
    model = hand_model(decay=0.5)
    assert not model.trainable
    history = torch.tensor([[0, 1, 2], [0, 0, 1], [3, 1, 2]])  # the last row is cut to 3 items
    state = model.encode_users(history)
    items = torch.arange(5)
    scores = model.score_items(state, items)
    # user 0: 0.5 * item 1 + 1 * item 2, normalised
    want = F.normalize(torch.tensor([0.5, 1.0]), dim=0)
    assert torch.allclose(state[0], want)
    assert torch.allclose(scores[0, 1:4], torch.stack([want[0], want[1], -want[0]]))
    assert scores[0, 4] == 0  # no text: cosine 0
    assert torch.isneginf(scores[:, 0]).all()  # padding is never recommended
    # user 1 saw item 1 only: item 1 is the best match, item 3 (opposite) the worst
    assert scores[1, 1] == pytest.approx(1.0) and scores[1, 3] == pytest.approx(-1.0)
    # user 2: 0.25 * item 3 + 0.5 * item 1 + 1 * item 2
    assert torch.allclose(state[2], F.normalize(torch.tensor([0.25, 1.0]), dim=0))


def test_decay_one_is_the_plain_mean_and_invalid_decay_is_refused() -> None:
    model = hand_model(decay=1.0)
    state = model.encode_users(torch.tensor([[1, 2]]))
    assert torch.allclose(state[0], F.normalize(torch.tensor([1.0, 1.0]), dim=0))
    with pytest.raises(ConfigError, match="content_decay"):
        ModelConfig(content_decay=0.0)


def test_extend_catalog_ranks_new_items_by_their_text() -> None:
    model = hand_model()
    model.extend_catalog({"feats": torch.tensor([[0.6, 0.8]])})
    assert model.num_items == 5
    scores = model.score_items(model.encode_users(torch.tensor([[2]])), torch.arange(6))
    assert scores[0].argmax() == 2 and scores[0, 5] == pytest.approx(0.8)


def content_config(data: Path, tmp_path: Path, llm: Path, model: str = "content") -> Config:
    """A tiny run of a content model (``content``, ``content-cf``) on the tiny LLM's text."""
    return tiny_config(
        data,
        tmp_path / "cache",
        f"model.name={model}",
        f"text.encoder={llm}",
        "text.dtype=fp32",
        "text.max_tokens=6",
    )


def test_content_runs_reload_and_score_the_same(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    cfg = content_config(tiny_data, tmp_path, tiny_llm_dir)
    result, record = run_experiment(cfg, tmp_path / "run")
    assert result.stopped == "untrainable"
    _, model, _ = load_trained_model(tmp_path / "run")
    assert isinstance(model, ContentModel)
    assert model.feats.shape[1] > 1  # the saved features, not the placeholder
    assert ndcg_on_test(model, cfg) == pytest.approx(result.test["NDCG@10"], abs=1e-6)
