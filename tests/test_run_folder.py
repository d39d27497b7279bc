"""A damaged or edited run folder gets a clear error (exit 2, the file and what was expected),
never a traceback: regression tests for what a careless user did to real run folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from darec.cli import app
from darec.run import RunFolder, checkpoint_path
from tests.test_cli import TINY, _env, train_tiny_runs

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("runs")
    env = train_tiny_runs(root, {"run": ["--model", "sasrec"]})
    return root / "run", env


def _copy(trained: tuple[Path, dict[str, str]], tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained[0], run)
    return run


def _evaluate(run: Path, env: dict[str, str]) -> str:
    out = runner.invoke(app, ["evaluate", str(run), "--device", "cpu"], env=env)
    assert out.exit_code == 2, out.output
    assert "Traceback" not in out.output
    return " ".join(out.output.split())


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_damaged_weights_are_named(trained, tmp_path, damage):
    run = _copy(trained, tmp_path)
    weights = checkpoint_path(run, "best") / "model.safetensors"
    content = weights.read_bytes()
    weights.write_bytes(
        {"truncated": content[: len(content) // 2], "empty": b"", "garbage": b"x" * 100}[damage]
    )
    out = _evaluate(run, trained[1])
    assert "model.safetensors is not a readable safetensors file" in out
    assert "the checkpoint is damaged" in out


def test_weights_of_the_wrong_shape_do_not_fit(trained, tmp_path):
    run = _copy(trained, tmp_path)
    weights = checkpoint_path(run, "best") / "model.safetensors"
    state = RunFolder.open(run).load_model().state_dict()
    state["item_embedding.weight"] = torch.zeros(3, 5)
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    out = _evaluate(run, trained[1])
    assert "checkpoint does not fit model 'sasrec'" in out and "item_embedding.weight" in out


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("config.json", "{not json", "config.json is not valid JSON"),
        ("ids.json", '{"user_ids": ["", "u1"]}', "ids.json: expected 'item_ids', a list of id"),
        ("ids.json", '{"user_ids": 3, "item_ids": []}', "ids.json: expected 'user_ids'"),
    ],
)
def test_edited_run_files_are_named(trained, tmp_path, name, content, expected):
    run = _copy(trained, tmp_path)
    (run / name).write_text(content)
    assert expected in _evaluate(run, trained[1])


def test_a_missing_optimizer_file_stops_a_resume_clearly(trained, tmp_path):
    run = _copy(trained, tmp_path)
    (checkpoint_path(run, "last") / "optimizer.safetensors").unlink()
    config = json.loads((run / "config.json").read_text())
    data = config["data"]["path"]
    args = ["train", "--data", data, "--model", "sasrec", "-o", str(run), *TINY, "--resume"]
    out = runner.invoke(app, args, env=trained[1])
    assert out.exit_code == 2, out.output
    assert "optimizer.safetensors is missing: the checkpoint is incomplete" in out.output


def test_a_second_trainer_on_one_folder_is_refused(tmp_path):
    from darec.errors import CheckpointError
    from darec.run.lock import run_lock

    with run_lock(tmp_path / "run"):
        with pytest.raises(CheckpointError, match=r"run is being trained by pid \d+ on "):
            with run_lock(tmp_path / "run"):
                pass
    with run_lock(tmp_path / "run"):  # released when the holder ends
        pass


def test_temporary_folders_of_a_killed_write_are_removed(tmp_path):
    from darec.run.lock import run_lock

    left = tmp_path / "run" / "checkpoints" / ".step-00000004-0002.k3j2"
    left.mkdir(parents=True)
    (left / "model.safetensors").write_bytes(b"half")
    kept = tmp_path / "run" / "checkpoints" / "step-00000002-0001"
    kept.mkdir()
    with run_lock(tmp_path / "run"):
        assert not left.exists() and kept.exists()


def test_resume_reads_the_runs_config_and_names_what_differs(trained, tmp_path):
    run = _copy(trained, tmp_path)
    env = trained[1]
    # nothing repeated but what changes: the run's own config is the base
    out = runner.invoke(
        app, ["train", "-o", str(run), "--resume", "--set", "train.epochs=3"], env=env
    )
    assert out.exit_code == 0, out.output
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3
    out = runner.invoke(
        app, ["train", "-o", str(run), "--resume", "--set", "model.dropout=0.3"], env=env
    )
    assert out.exit_code == 2
    assert "model.dropout: 0.5 in the run, 0.3 now" in " ".join(out.output.split())


def test_a_run_trained_from_a_relative_path_works_from_any_folder(tmp_path, monkeypatch):
    from tests.conftest import write_tiny_atomic

    write_tiny_atomic(tmp_path / "work" / "tiny")
    env = _env(tmp_path)
    monkeypatch.chdir(tmp_path / "work")
    out = runner.invoke(
        app, ["train", "--data", "tiny", "-m", "sasrec", "-o", "run", *TINY], env=env
    )
    assert out.exit_code == 0, out.output
    saved = json.loads((tmp_path / "work" / "run" / "config.json").read_text())["data"]["path"]
    assert saved == str(tmp_path / "work" / "tiny")
    monkeypatch.chdir(tmp_path)
    out = runner.invoke(app, ["evaluate", "work/run", "--device", "cpu"], env=env)
    assert out.exit_code == 0, out.output


def test_the_training_log_reads_as_one_run_after_a_crash(tiny_cfg, tmp_path):
    from darec.config import apply_overrides
    from darec.training.log import read_log
    from tests.test_training import CrashAt, _trainer

    cfg = apply_overrides(tiny_cfg, ["train.epochs=3", "train.checkpoint_every_steps=2"])
    straight = _trainer(cfg, tmp_path / "a")
    straight.fit()
    with pytest.raises(RuntimeError, match="simulated crash"):
        _trainer(cfg, tmp_path / "b", CrashAt(1, 3)).fit()
    _trainer(cfg, tmp_path / "b").fit(resume=True)
    a, b = read_log(tmp_path / "a" / "log.jsonl"), read_log(tmp_path / "b" / "log.jsonl")
    assert [r["event"] for r in a] == ["epoch", "valid"] * 3
    valid = [{k: v for k, v in r.items() if k != "seconds"} for r in a if r["event"] == "valid"]
    assert valid == [
        {k: v for k, v in r.items() if k != "seconds"} for r in b if r["event"] == "valid"
    ]
    # lines after the last checkpoint were dropped; the resumed epoch logs the steps it ran
    epochs_b = [(r["epoch"], r["steps"], r["of_steps"]) for r in b if r["event"] == "epoch"]
    assert epochs_b == [(1, 5, 5), (2, 2, 5), (3, 5, 5)]


def test_report_prints_the_log_and_plots_it(trained, tmp_path):
    run = _copy(trained, tmp_path)
    out = runner.invoke(app, ["report", str(run)], env=trained[1])
    assert out.exit_code == 0, out.output
    assert "training log" in out.output and (run / "curves.png").stat().st_size > 1000
    (run / "log.jsonl").unlink()
    out = runner.invoke(app, ["report", str(run)], env=trained[1])
    assert out.exit_code == 2 and "log.jsonl is missing or empty" in out.output


def test_recommend_shows_titles_and_the_users_recent_history(trained):
    run, env = trained
    out = runner.invoke(app, ["recommend", str(run), "--user", "u1", "-k", "3"], env=env)
    assert out.exit_code == 0, out.output
    assert "user u1, most recent last:" in out.output and "(Item number" in out.output
    assert "title" in out.output and out.output.count("Item number") >= 4
    out = runner.invoke(app, ["recommend", str(run), "--user", "u1", "-k", "3", "--json"], env=env)
    first = json.loads(out.output.splitlines()[0])
    assert first["item"].startswith("i") and first["title"] is None  # --json keeps ids
