"""Adding items to a trained run from their text alone (``darec catalog add``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from darec.cli import app
from darec.config import Config, apply_overrides
from darec.errors import ConfigError, DataError
from darec.experiment import run_experiment
from darec.models.content import ContentModel
from darec.models.text_sasrec import TextSASRec
from darec.run import RunFolder
from darec.serving.catalog import add_items
from darec.serving.recommend import Recommender
from tests.conftest import tiny_config

runner = CliRunner()


def text_run(data: Path, tmp_path: Path, llm: Path, model: str, *extra: str) -> Path:
    cfg: Config = tiny_config(
        data,
        tmp_path / "cache",
        f"model.name={model}",
        f"text.encoder={llm}",
        "text.dtype=fp32",
        "text.max_tokens=6",
        "train.epochs=2",
        *extra,
    )
    run = tmp_path / model
    run_experiment(cfg, run)
    return run


def new_items_file(folder: Path) -> Path:
    """Two new items: ``n3`` has exactly the text of the trained item ``i3``."""
    path = folder / "new.item"
    path.write_text("item_id:token\ttitle:token_seq\nn3\tItem number 3\nnx\tSomething else\n")
    return path


def test_sasrec_text_run_ranks_added_items_without_retraining(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    run = text_run(tiny_data, tmp_path, tiny_llm_dir, "sasrec-text")
    folder = RunFolder.open(run)
    trained = folder.num_items
    pointers = (run / "checkpoints" / "pointers.json").read_text()

    assert add_items(run, new_items_file(tmp_path)) == ["n3", "nx"]
    assert folder.item_ids[-2:] == ["n3", "nx"] and len(folder.item_ids) == trained + 3
    model = folder.load_model()
    assert isinstance(model, TextSASRec) and model.num_items == trained + 2
    table = model.item_embedding
    i3, n3 = folder.ids["item_ids"].index("i3"), trained + 1
    # same text, same features (the training catalog's scale); the new item's ID row is zero
    assert torch.allclose(table.feats[n3], table.feats[i3], atol=1e-5)
    assert table.ids is not None and torch.all(table.ids.weight[trained + 1 :] == 0)
    assert torch.allclose(table(torch.tensor([n3])), table.proj(table.feats[i3])[None], atol=1e-5)
    # the trained model is untouched: checkpoints, and a load without the added items
    assert (run / "checkpoints" / "pointers.json").read_text() == pointers
    assert folder.load_model(with_added_items=False).num_items == trained

    # model.new_item_ids = "from_text": ID rows predicted from the text instead of zero
    mapped = apply_overrides(folder.config, ["model.new_item_ids=from_text"])
    rows = model.item_rows_from_text(mapped, folder.load_data().catalog, [{"title": "New"}])
    assert rows["ids"].shape == (1, mapped.model.hidden_size) and rows["ids"].abs().sum() > 0

    rec = Recommender(run, device="cpu")
    ranked = [r.item for r in rec.for_history(["i1", "i2"], k=trained + 2)]
    assert {"n3", "nx"} <= set(ranked)  # ranked with the rest
    assert len(ranked) == trained  # every item but the two in the history
    assert rec.for_history(["n3"], k=3)  # a new item can be in a history too

    # adding more appends; an id the run knows already is refused
    more = tmp_path / "more.csv"
    more.write_text("item_id,title\nn9,Item number 9\n")
    assert add_items(run, more) == ["n9"]
    assert folder.item_ids[-3:] == ["n3", "nx", "n9"]
    with pytest.raises(DataError, match="already in the run's catalog.*'n9'"):
        add_items(run, more)


def test_content_scores_an_added_item_like_the_trained_one_with_its_text(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    run = text_run(tiny_data, tmp_path, tiny_llm_dir, "content")
    add_items(run, new_items_file(tmp_path))
    model = RunFolder.open(run).load_model()
    assert isinstance(model, ContentModel)
    ids = RunFolder.open(run).item_ids
    state = model.encode_users(torch.tensor([[1, 2, 3]]))
    scores = model.score_items(state, torch.tensor([ids.index("i3"), ids.index("n3")]))
    assert scores[0, 0] == pytest.approx(float(scores[0, 1]), abs=1e-5)


def test_id_models_refuse_and_the_cli_adds_recommends_and_evaluates(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    env = {"DAREC_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}
    sasrec = text_run(tiny_data, tmp_path, tiny_llm_dir, "sasrec", "train.epochs=1")
    with pytest.raises(ConfigError, match="model 'sasrec' cannot add items from text"):
        add_items(sasrec, new_items_file(tmp_path))
    out = runner.invoke(app, ["catalog", "add", str(sasrec), str(tmp_path / "new.item")], env=env)
    assert out.exit_code == 2 and "cannot add items from text" in out.output

    run = text_run(tiny_data, tmp_path, tiny_llm_dir, "sasrec-text", "train.epochs=1")
    before = runner.invoke(app, ["evaluate", str(run), "--json", "--device", "cpu"], env=env)
    out = runner.invoke(app, ["catalog", "add", str(run), str(new_items_file(tmp_path))], env=env)
    assert out.exit_code == 0, out.output
    assert "added 2 item(s)" in out.output
    out = runner.invoke(
        app, ["recommend", str(run), "--items", "i1", "--k", "40", "--json"], env=env
    )
    assert out.exit_code == 0, out.output
    items = [json.loads(line)["item"] for line in out.output.splitlines()]
    assert "n3" in items and "nx" in items
    after = runner.invoke(app, ["evaluate", str(run), "--json", "--device", "cpu"], env=env)
    assert after.exit_code == 0, after.output
    old, new = json.loads(before.output), json.loads(after.output)
    assert new["users"] == old["users"]  # same test cases, ranked over a larger catalog
    assert new["NDCG@10"] <= old["NDCG@10"] + 1e-9


def test_id_rows_from_text_fit_the_trained_rows_and_extend_with_them() -> None:
    from torch import nn

    from darec.models.text_sasrec import TextItemTable

    gen = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(201, 8, generator=gen), dim=-1)
    feats[0] = 0.0  # padding has no text
    truth = torch.randn(8, 4, generator=gen)
    ids = nn.Embedding(201, 4, padding_idx=0)
    with torch.no_grad():
        ids.weight.copy_(feats @ truth)  # ID rows exactly linear in the text here
    table = TextItemTable(ids, feats)
    new = F.normalize(torch.randn(3, 8, generator=gen), dim=-1)
    assert torch.allclose(table.ids_from_text(new, ridge=1e-6), new @ truth, atol=1e-4)
    table.extend(new, table.ids_from_text(new, ridge=1e-6))
    assert table.ids is not None and table.ids.weight.shape == (204, 4)
    assert torch.allclose(table.ids.weight[201:], new @ truth, atol=1e-4)
    assert torch.equal(table.ids.weight[:201], feats @ truth)  # the trained rows unchanged


def test_darec_adds_items_through_its_item_encoder_and_catalog_cache(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    from darec.models.darec import DARec
    from darec.serving.inference_cache import attach_inference_cache
    from tests.conftest import train_tiny_darec

    run = train_tiny_darec(tiny_data, tmp_path, tiny_llm_dir, "darec")
    folder = RunFolder.open(run)
    trained = folder.num_items
    Recommender(run, device="cpu")  # writes the catalog cache of the trained items
    add_items(run, new_items_file(tmp_path))

    rec = Recommender(run, device="cpu")  # the cache no longer fits: built again, and saved
    model = rec.model
    assert isinstance(model, DARec) and model.num_items == trained + 2
    i3, n3 = folder.ids["item_ids"].index("i3"), trained + 1
    assert torch.equal(model.item_tokens[n3], model.item_tokens[i3])  # same text, same tokens
    assert torch.all(model.cf.item_embedding.weight[trained + 1 :] == 0)  # no CF rows
    with torch.no_grad():
        fresh = model.item_vectors(torch.tensor([n3, n3 + 1]))
    assert torch.allclose(model.catalog_vectors()[n3:], fresh, atol=1e-4)
    ranked = [r.item for r in rec.for_history(["i1", "i2"], k=trained + 2)]
    assert {"n3", "nx"} <= set(ranked)
    assert attach_inference_cache(folder.load_model(), run) == "loaded"  # the saved cache fits


def test_id_dropout_drops_the_same_id_rows_in_inputs_and_softmax_for_one_step() -> None:
    from darec.config import ModelConfig
    from darec.data.batching import TrainBatch

    cfg = ModelConfig(
        max_seq_len=4, hidden_size=16, num_heads=2, inner_size=32, num_layers=1, id_dropout=0.5
    )
    torch.manual_seed(0)
    model = TextSASRec(cfg, 20, F.normalize(torch.randn(21, 8), dim=-1))
    batch = TrainBatch(
        torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]]),
        torch.tensor([[2, 3, 4, 5], [6, 7, 8, 9]]),
        torch.arange(2),
    )
    model.train()
    torch.manual_seed(1)
    model.loss(batch).backward()
    table = model.item_embedding
    assert table.keep is None  # only for that step
    torch.manual_seed(1)
    kept = (torch.rand(21, 1) >= 0.5).flatten()  # the draw the step made
    grad = table.ids.weight.grad.abs().sum(-1)
    assert torch.all(grad[~kept] == 0) and torch.all(grad[1:][kept[1:]] > 0)
    model.eval()  # never at evaluation: every ID row counts
    state = model.encode_users(batch.inputs)
    assert torch.allclose(model.score_items(state, torch.arange(1, 21)), state @ table.weight[1:].T)
