"""sasrec-text: SASRec with frozen-LLM item text features (tiny random LLaMA backbone)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from darec.config import Config, apply_overrides
from darec.data.batching import TrainBatch
from darec.data.split import leave_one_out
from darec.errors import ConfigError
from darec.evaluation.evaluator import evaluate
from darec.experiment import run_experiment
from darec.models.base import ModelContext
from darec.models.content import ContentModel
from darec.models.registry import build_model
from darec.models.sasrec import SASRec
from darec.models.text_sasrec import TextSASRec, item_text_features
from darec.run import load_data, load_trained_model
from tests.conftest import ndcg_on_test, tiny_config


def text_cfg(data: Path, cache: Path, llm: Path, *extra: str) -> Config:
    return tiny_config(
        data,
        cache,
        "model.name=sasrec-text",
        f"text.encoder={llm}",
        "text.dtype=fp32",
        "text.max_tokens=6",
        *extra,
    )


def context(cfg: Config) -> ModelContext:
    data = load_data(cfg)
    return ModelContext(data.num_items, data.catalog, data.key, None)


def test_features_are_normalised_and_padding_is_zero(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    cfg = text_cfg(tiny_data, tmp_path / "cache", tiny_llm_dir)
    ctx = context(cfg)
    feats = item_text_features(cfg, ctx, batch_size=7, cache=False)  # several batches
    assert feats.shape[0] == ctx.num_items + 1
    assert torch.all(feats[0] == 0)
    norms = feats[1:].norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    # an item's features do not depend on the batch it was encoded in
    assert torch.allclose(
        feats, item_text_features(cfg, ctx, batch_size=256, cache=False), atol=1e-5
    )
    # different texts, different features
    assert not torch.allclose(feats[1], feats[2])


def test_untrained_model_scores_exactly_like_sasrec(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    cfg = text_cfg(tiny_data, tmp_path / "cache", tiny_llm_dir)
    ctx = context(cfg)
    model = build_model(cfg, ctx)
    assert isinstance(model, TextSASRec)
    plain = SASRec(cfg.model, ctx.num_items)
    plain.load_state_dict(
        {
            k.replace("item_embedding.ids.", "item_embedding."): v
            for k, v in model.state_dict().items()
            if not k.startswith(("item_embedding.feats", "item_embedding.proj"))
        }
    )
    model.eval()
    plain.eval()
    history = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    items = torch.arange(1, ctx.num_items + 1)
    want = plain.score_items(plain.encode_users(history), items)
    got = model.score_items(model.encode_users(history), items)
    assert torch.allclose(got, want)
    # and training moves the text projection
    model.train()
    batch = TrainBatch(history, torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]]), torch.arange(2))
    model.loss(batch).backward()
    assert model.item_embedding.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("text_only", [False, True])
def test_train_then_reload_gives_the_same_scores(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path, text_only: bool
) -> None:
    cfg = text_cfg(
        tiny_data,
        tmp_path / "cache",
        tiny_llm_dir,
        "train.epochs=2",
        f"model.text_only={text_only}",
    )
    run = tmp_path / "run"
    result, _ = run_experiment(cfg, run)
    _, model, _ = load_trained_model(run)
    assert isinstance(model, TextSASRec)
    assert (model.item_embedding.ids is None) == text_only  # text_only: no ID table
    assert ndcg_on_test(model, cfg) == pytest.approx(result.test["NDCG@10"], abs=1e-9)


def test_content_prior_adds_the_content_models_scores(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    cfg = text_cfg(tiny_data, tmp_path / "cache", tiny_llm_dir, "model.content_decay=0.5")
    ctx = context(cfg)
    model = build_model(cfg, ctx)
    assert isinstance(model, TextSASRec)
    model.eval()
    content = ContentModel(cfg.model, ctx.num_items, model.item_embedding.feats)
    history = torch.tensor([[0, 0, 1, 2], [3, 4, 5, 6], [0, 0, 0, 0]])
    items = torch.arange(ctx.num_items + 1)
    plain = model.score_items(model.encode_users(history), items)
    model.prior.weight = 2.5
    blended = model.score_items(model.encode_users(history), items)
    cosines = content.score_items(content.encode_users(history), items)
    assert torch.allclose(blended[:, 1:], plain[:, 1:] + 2.5 * cosines[:, 1:], atol=1e-5)
    assert torch.isinf(blended[:, 0]).all()  # padding stays out of every ranking
    assert torch.equal(blended[2], plain[2])  # an empty history has no text vector
    # a catalog chunk scores like the same items in any order
    order = torch.randperm(ctx.num_items) + 1
    state = model.encode_users(history)
    assert torch.allclose(model.score_items(state, order), blended[:, order], atol=1e-6)


@pytest.mark.parametrize("start", [0.0, 3.0])
def test_content_weight_is_chosen_on_validation_and_kept_by_the_run(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path, start: float
) -> None:
    """The choice among the weights, whatever the weight trained with (``start``: with 3 the
    sweep scores weight 0 with the users it encoded for the others, text part included)."""
    weights = (0.0, 0.5, 3.0)
    cfg = text_cfg(
        tiny_data,
        tmp_path / "cache",
        tiny_llm_dir,
        "train.epochs=2",
        f"model.content_weight={start}",
        f"eval.content_weights={','.join(map(str, weights))}",
    )
    run = tmp_path / "run"
    result, record = run_experiment(cfg, run)
    chosen = result.content_weight
    assert set(chosen["valid"]) == {"0", "0.5", "3"}
    best = max(chosen["valid"].values())
    assert result.valid["NDCG@10"] == pytest.approx(best)
    # the smallest weight among the best ones
    assert chosen["weight"] == min(w for w in weights if chosen["valid"][f"{w:g}"] == best)
    assert json.loads((run / "content_weight.json").read_text()) == chosen
    assert json.loads((run / "metrics.json").read_text())["content_weight"] == chosen
    assert record.content_weight == chosen
    _, model, _ = load_trained_model(run)
    assert isinstance(model, TextSASRec)
    assert model.prior.weight == chosen["weight"]
    assert ndcg_on_test(model, cfg) == pytest.approx(result.test["NDCG@10"], abs=1e-9)
    # each tried weight's validation is what the reloaded model gives with it
    data = load_data(cfg)
    split = leave_one_out(data)
    for weight, value in chosen["valid"].items():
        model.prior.weight = float(weight)
        got = evaluate(model, split.valid, cfg.eval, cfg.model.max_seq_len, torch.device("cpu"))
        assert got.metrics["NDCG@10"] == pytest.approx(value, abs=1e-9)


def test_content_weights_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="content_weights"):
        apply_overrides(Config(), ["eval.content_weights=0,-1"])
    with pytest.raises(ConfigError, match="content_weight"):
        apply_overrides(Config(), ["model.content_weight=-0.5"])


def test_a_finished_run_resumed_with_content_weights_chooses_one(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    cfg = text_cfg(tiny_data, tmp_path / "cache", tiny_llm_dir, "train.epochs=2")
    run = tmp_path / "run"
    first, _ = run_experiment(cfg, run)
    assert not first.content_weight and not (run / "content_weight.json").exists()
    again, _ = run_experiment(apply_overrides(cfg, ["eval.content_weights=0,1"]), run, resume=True)
    assert again.best_epoch == first.best_epoch  # nothing trained again
    assert again.content_weight["valid"]["0"] == pytest.approx(first.valid["NDCG@10"])
    _, model, _ = load_trained_model(run)
    assert isinstance(model, TextSASRec)
    assert model.prior.weight == again.content_weight["weight"]
    assert ndcg_on_test(model, cfg) == pytest.approx(again.test["NDCG@10"], abs=1e-9)
    # resumed without candidates: model.content_weight again, and the old choice is gone
    last, _ = run_experiment(apply_overrides(cfg, ["eval.content_weights="]), run, resume=True)
    assert not last.content_weight and not (run / "content_weight.json").exists()
    assert last.test == first.test
    assert load_trained_model(run)[1].content_prior().weight == 0.0
