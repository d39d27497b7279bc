"""DARec through the product: `darec train/evaluate/recommend`, checkpoints and resuming, with a
tiny random LLaMA saved as a local model folder (the same path a user's own backbone takes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from darec.cli import app
from darec.experiment import run_experiment
from darec.run import load_trained_model
from darec.run.checkpoint import checkpoint_path
from tests.conftest import darec_sets, ndcg_on_test, tiny_config

runner = CliRunner()


def test_cli_train_evaluate_recommend(tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path) -> None:
    env = {"DAREC_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}
    run = tmp_path / "run"
    sets: list[str] = []
    for item in [
        "data.user_min=3",
        "data.item_min=1",
        "model.max_seq_len=8",
        "model.hidden_size=16",
        "model.inner_size=32",
        "train.epochs=2",
        "train.batch_size=16",
        *darec_sets(tiny_llm_dir)[1:],
    ]:
        sets += ["--set", item]
    out = runner.invoke(
        app, ["train", "--data", str(tiny_data), "--model", "darec", "-o", str(run), *sets], env=env
    )
    assert out.exit_code == 0, out.output
    test_metrics = json.loads((run / "metrics.json").read_text())["test"]
    out = runner.invoke(app, ["evaluate", str(run), "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["NDCG@10"] == pytest.approx(test_metrics["NDCG@10"], abs=1e-9)
    out = runner.invoke(app, ["recommend", str(run), "--user", "u1", "-k", "3", "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert [json.loads(line)["rank"] for line in out.output.strip().splitlines()] == [1, 2, 3]
    # the catalog cache was saved beside the best checkpoint and a second evaluate reads it
    cache = checkpoint_path(run, "best") / "catalog.safetensors"
    assert cache.exists()
    stamp = cache.stat().st_mtime_ns
    out = runner.invoke(app, ["evaluate", str(run), "--json"], env=env)
    assert json.loads(out.output)["NDCG@10"] == pytest.approx(test_metrics["NDCG@10"], abs=1e-9)
    assert cache.stat().st_mtime_ns == stamp
    # streaming: after each item read from stdin, the same top-k as a fresh call on that history
    out = runner.invoke(
        app,
        ["recommend", str(run), "--items", "i1", "--stream", "-k", "5", "--json"],
        input="i2\nnot-an-item\ni3\n",
        env=env,
    )
    assert out.exit_code == 0, out.output
    lines = [json.loads(line) for line in out.stdout.strip().splitlines()]
    assert [line["after"] for line in lines] == ["the given history", "i2", "i3"]
    assert "unknown item id 'not-an-item'" in out.stderr
    fresh = runner.invoke(
        app, ["recommend", str(run), "--items", "i1,i2,i3", "-k", "5", "--json"], env=env
    )
    expected = [json.loads(line) for line in fresh.output.strip().splitlines()]
    assert [r["item"] for r in lines[-1]["items"]] == [r["item"] for r in expected]
    for got, want in zip(lines[-1]["items"], expected, strict=True):
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)


def test_checkpoint_references_the_backbone_and_reloads_exactly(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    cfg = tiny_config(tiny_data, tmp_path / "cache", *darec_sets(tiny_llm_dir), "train.epochs=2")
    run = tmp_path / "run"
    result, _ = run_experiment(cfg, run)
    best = checkpoint_path(run, "best")
    files = list(Path(best).glob("*.safetensors"))
    keys: list[str] = []
    for f in files:
        with safe_open(str(f), "pt") as fh:
            keys += list(fh.keys())
    model_keys = [k for k in keys if "llm." in k]
    assert model_keys == [], f"frozen backbone weights were copied: {model_keys[:3]}"
    assert any("item_tokens" in k for k in keys)

    _, model, _ = load_trained_model(run)
    assert ndcg_on_test(model, cfg) == pytest.approx(result.test["NDCG@10"], abs=1e-9)


def test_resume_after_interrupt_is_exact(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    sets = [*darec_sets(tiny_llm_dir), "train.epochs=2", "train.batch_size=16"]
    cfg = tiny_config(tiny_data, tmp_path / "cache", *sets, "train.checkpoint_every_steps=1")
    straight, _ = run_experiment(cfg, tmp_path / "straight")

    class Crash(Exception):
        pass

    class CrashAfter:
        def __init__(self) -> None:
            self.steps = 0

        def on_epoch_start(self, epoch: int, steps: int) -> None:
            pass

        def on_step(self, epoch: int, step: int, loss: float) -> None:
            self.steps += 1
            if self.steps == 3:
                raise Crash

        def on_validation(self, epoch: int, metrics: dict[str, float], improved: bool) -> None:
            pass

    with pytest.raises(Crash):
        run_experiment(cfg, tmp_path / "resumed", CrashAfter())
    resumed, _ = run_experiment(cfg, tmp_path / "resumed", resume=True)
    assert resumed.test["NDCG@10"] == pytest.approx(straight.test["NDCG@10"], abs=1e-6)
    assert [h["NDCG@10"] for h in resumed.history] == pytest.approx(
        [h["NDCG@10"] for h in straight.history], abs=1e-6
    )


def test_pretrained_frozen_cf_model(tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path) -> None:
    import shutil

    cache = tmp_path / "cache"
    sasrec_cfg = tiny_config(tiny_data, cache, "model.name=sasrec", "train.epochs=2")
    run_experiment(sasrec_cfg, tmp_path / "sasrec")
    _, sasrec, _ = load_trained_model(tmp_path / "sasrec")
    sets = [
        *darec_sets(tiny_llm_dir),
        f"darec.cf_checkpoint={tmp_path / 'sasrec'}",
        "darec.cf_frozen=true",
        "train.epochs=1",
    ]
    run_experiment(tiny_config(tiny_data, cache, *sets), tmp_path / "darec")
    shutil.rmtree(tmp_path / "sasrec")  # the DARec run carries its CF model
    _, darec, _ = load_trained_model(tmp_path / "darec")
    for name, value in sasrec.state_dict().items():
        assert torch.equal(darec.cf.state_dict()[name], value), name


def text_cf_run(data: Path, tmp_path: Path, llm: Path, epochs: int) -> Path:
    """A tiny sasrec-text run (the tiny LLM's text features) in ``tmp_path / "cf"``."""
    sets = [
        "model.name=sasrec-text",
        f"text.encoder={llm}",
        "text.dtype=fp32",
        "text.max_tokens=6",
        f"train.epochs={epochs}",
    ]
    run_experiment(tiny_config(data, tmp_path / "cache", *sets), tmp_path / "cf")
    return tmp_path / "cf"


def on_text_cf(llm: Path, cf: Path) -> list[str]:
    """A tiny DARec started from the run ``cf``, frozen, trained one epoch."""
    return [*darec_sets(llm), f"darec.cf_checkpoint={cf}", "darec.cf_frozen=true", "train.epochs=1"]


def test_cf_model_from_a_text_feature_sasrec(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    """A sasrec-text run can be the CF model: its text table (features included) becomes the
    ID table, the DARec run carries it, and the reloaded run scores as the trained one did."""
    import shutil

    from darec.models.text_sasrec import TextItemTable

    cache = tmp_path / "cache"
    _, cf, _ = load_trained_model(text_cf_run(tiny_data, tmp_path, tiny_llm_dir, epochs=2))
    cfg = tiny_config(tiny_data, cache, *on_text_cf(tiny_llm_dir, tmp_path / "cf"))
    result, _ = run_experiment(cfg, tmp_path / "darec")
    shutil.rmtree(tmp_path / "cf")  # the DARec run carries its CF model
    _, darec, _ = load_trained_model(tmp_path / "darec")
    assert isinstance(darec.cf.item_embedding, TextItemTable)
    assert not any(p.requires_grad for p in darec.cf.parameters())  # still frozen
    for name, value in cf.state_dict().items():
        assert torch.equal(darec.cf.state_dict()[name], value), name
    assert ndcg_on_test(darec, cfg) == pytest.approx(result.test["NDCG@10"], abs=1e-6)


def test_cf_checkpoint_of_another_model_is_refused(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    from darec.errors import ConfigError

    cache = tmp_path / "cache"
    run_experiment(
        tiny_config(tiny_data, cache, "model.name=gru4rec", "train.epochs=1"), tmp_path / "gru"
    )
    sets = [*darec_sets(tiny_llm_dir), f"darec.cf_checkpoint={tmp_path / 'gru'}"]
    with pytest.raises(ConfigError, match="sasrec or sasrec-text run"):
        run_experiment(tiny_config(tiny_data, cache, *sets), tmp_path / "darec")


def test_content_prior_over_a_text_cf_model(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    """With a sasrec-text CF start DARec has the content prior over that model's text features:
    its weight is chosen on validation like sasrec-text's, kept in the run folder, added to the
    scores and carried by streamed users."""
    from darec.models.content_prior import text_vectors

    cf = text_cf_run(tiny_data, tmp_path, tiny_llm_dir, epochs=1)
    sets = [*on_text_cf(tiny_llm_dir, cf), "eval.content_weights=0,0.5,4"]
    cfg = tiny_config(tiny_data, tmp_path / "cache", *sets)
    result, _ = run_experiment(cfg, tmp_path / "darec")
    chosen = json.loads((tmp_path / "darec" / "content_weight.json").read_text())
    assert set(chosen["valid"]) == {"0", "0.5", "4"}
    _, model, _ = load_trained_model(tmp_path / "darec")
    prior = model.content_prior()
    assert prior is not None and prior.weight == chosen["weight"]
    assert ndcg_on_test(model, cfg) == pytest.approx(result.test["NDCG@10"], abs=1e-6)

    prior.weight = 2.0
    history = torch.tensor([[0, 3, 5, 7]])
    items = torch.arange(model.num_items + 1)
    with torch.no_grad():
        state = model.encode_users(history)
        rec = model.cfg.hidden_size
        feats = model.cf.item_embedding.feats
        assert state.shape[1] == rec + feats.shape[1]
        text = text_vectors(feats, history, model.cfg.content_decay, model.cfg.max_seq_len)
        want = model.score_items(state[:, :rec], items)[0, 1:] + 2.0 * (text @ feats.T)[0, 1:]
        assert torch.allclose(model.score_items(state, items)[0, 1:], want, atol=1e-5)
        streamed = model.stream_step(model.stream_start(torch.tensor([3, 5])), 7)
        assert torch.allclose(streamed.user, state[0], atol=1e-4)
    prior.weight = 0.0  # off: the plain user vectors
    with torch.no_grad():
        assert model.encode_users(history).shape[1] == rec


def test_items_added_to_a_darec_on_a_text_cf_model_get_that_models_text_rows(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An item added from its text gets the CF start's text features (read with that run's text
    settings), so the CF model's text branch and the content prior know it: an added item with a
    trained item's text gets that item's features; with ``model.new_item_ids=neighbours`` ID rows
    too. When the CF run is gone the features are zero, with a warning."""
    import shutil

    from darec.config import Config, apply_overrides
    from darec.models.darec import DARec
    from darec.models.text_sasrec import TextItemTable
    from darec.run import RunFolder

    cf = text_cf_run(tiny_data, tmp_path, tiny_llm_dir, epochs=1)
    cfg = tiny_config(tiny_data, tmp_path / "cache", *on_text_cf(tiny_llm_dir, cf))
    run_experiment(cfg, tmp_path / "darec")
    folder = RunFolder.open(tmp_path / "darec")
    catalog = folder.load_data().catalog
    i3 = folder.item_ids.index("i3")
    new = [{"title": "Item number 3"}, {"title": "Something else"}]

    def added(run_cfg: Config) -> tuple[DARec, TextItemTable]:  # the two new items appended
        model = folder.load_model()
        assert isinstance(model, DARec)
        model.extend_catalog(model.item_rows_from_text(run_cfg, catalog, new))
        table = model.cf.item_embedding
        assert isinstance(table, TextItemTable)
        return model, table

    model, table = added(cfg)
    n3 = model.num_items - 1
    assert torch.allclose(table.feats[n3], table.feats[i3], atol=1e-5)
    assert table.feats[n3 + 1].abs().sum() > 0
    assert table.ids is not None and torch.all(table.ids.weight[n3:] == 0)  # zero ID rows
    with torch.no_grad():
        state = model.encode_users(torch.tensor([[0, 1, 2, i3]]))
        assert model.score_items(state, torch.tensor([n3, n3 + 1])).isfinite().all()

    _, table = added(apply_overrides(cfg, ["model.new_item_ids=neighbours"]))
    assert table.ids is not None and table.ids.weight[n3:].abs().sum() > 0

    shutil.rmtree(cf)
    with caplog.at_level("WARNING"):
        _, table = added(cfg)
    assert torch.all(table.feats[n3:] == 0) and "zero text features" in caplog.text
