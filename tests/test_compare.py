"""``darec compare``: finished and unfinished run folders side by side, the settings that
differ, JSON for machines, and a clear error for a folder that is not a run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from darec.cli import app
from darec.run.compare import compare_runs, summarize_run
from darec.run.lock import run_lock
from tests.test_cli import train_tiny_runs

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Two finished SASRec runs that differ in seed and learning rate, and a Pop run."""
    root = tmp_path_factory.mktemp("compare")
    env = train_tiny_runs(
        root,
        {
            "a": ["-m", "sasrec", "--set", "train.seed=1"],
            "b": ["-m", "sasrec", "--set", "train.seed=2", "--set", "train.lr=0.005"],
            "pop": ["-m", "pop"],
        },
    )
    return root, env


def test_finished_runs_side_by_side_with_the_settings_that_differ(runs):
    root, env = runs
    out = runner.invoke(app, ["compare", str(root / "a"), str(root / "b")], env=env)
    assert out.exit_code == 0, out.output
    a, b = (json.loads((root / n / "metrics.json").read_text()) for n in "ab")
    rows = {line.split("│")[1].strip(): line.split("│")[2:4] for line in _rows(out.output)}
    for label, values in (
        ("valid NDCG@10", [a["valid"]["NDCG@10"], b["valid"]["NDCG@10"]]),
        ("test HR@10", [a["test"]["HR@10"], b["test"]["HR@10"]]),
        ("seen kept NDCG@10", [m["test_other_protocol"]["NDCG@10"] for m in (a, b)]),
    ):
        assert [c.strip() for c in rows[label]] == [f"{v:.4f}" for v in values], label
    assert [c.strip() for c in rows["best / epochs"]] == [
        f"{m['best_epoch']}/{m['epochs']}" for m in (a, b)
    ]
    assert [c.strip() for c in rows["stopped"]] == ["epochs", "epochs"]
    assert "train.lr: 0.001 | 0.005" in out.output
    assert "train.seed" not in out.output  # it has its own row
    assert "model.name" not in out.output


def _rows(output: str) -> list[str]:
    """The body rows of the table (cells between "│")."""
    return [line for line in output.splitlines() if line.startswith("│")]


def test_json_reads_back_both_protocols(runs):
    root, env = runs
    args = ["compare", str(root / "a"), str(root / "pop"), "--json"]
    out = runner.invoke(app, args, env=env)
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    a, pop = result["runs"]
    metrics = json.loads((root / "a" / "metrics.json").read_text())
    assert a["test"] == metrics["test"] and a["test_seen_kept"] == metrics["test_other_protocol"]
    assert a["valid"] == metrics["valid"] and a["finished"] and a["seed"] == 1
    assert (a["model"], pop["model"], pop["stopped"]) == ("sasrec", "pop", "untrainable")
    assert a["dataset"] == pop["dataset"] == "tiny"
    # model.name and the seeds (1 and 42) have rows of their own
    assert "model.name" not in result["differences"]
    assert "train.seed" not in result["differences"]


def test_an_unfinished_run_shows_its_best_validation_so_far(runs, tmp_path):
    root, env = runs
    run = tmp_path / "cut"
    shutil.copytree(root / "a", run)
    (run / "metrics.json").unlink()  # as a run killed before its end leaves it
    summary = summarize_run(run)
    finished = summarize_run(root / "a")
    assert not summary.finished and summary.stopped == "interrupted"
    assert summary.valid == finished.valid and summary.test == {} and summary.epochs == 2
    with run_lock(run):  # a trainer at work on it
        assert summarize_run(run).stopped.startswith("training (pid ")
    # a finished run resumed with a larger budget and cut again: its metrics.json is stale
    shutil.copy(root / "a" / "metrics.json", run)
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps(metrics | {"epochs": 1}))
    assert not summarize_run(run).finished
    out = runner.invoke(app, ["compare", str(run), str(root / "a")], env=env)
    assert out.exit_code == 0, out.output
    test_row = next(x for x in _rows(out.output) if "test NDCG@10" in x)
    assert test_row.split("│")[2].strip() == "-"  # no test numbers yet
    assert "interrupted" in out.output
    # a folder that training has just created (config and ids, no checkpoint yet)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for name in ("config.json", "ids.json"):
        shutil.copy(root / "a" / name, fresh)
    summary = summarize_run(fresh)
    assert (summary.stopped, summary.epochs, summary.valid) == ("not started", None, {})


def test_identical_settings_and_a_folder_that_is_not_a_run(runs, tmp_path):
    root, env = runs
    shutil.copytree(root / "a", tmp_path / "copy")
    assert compare_runs([root / "a", tmp_path / "copy"]).differences == {}
    out = runner.invoke(app, ["compare", str(root / "a"), str(tmp_path / "copy")], env=env)
    assert out.exit_code == 0 and "the runs have the same settings" in out.output
    (tmp_path / "empty").mkdir()
    out = runner.invoke(app, ["compare", str(root / "a"), str(tmp_path / "empty")], env=env)
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert f"{tmp_path / 'empty'} is not a run folder (no config.json)" in " ".join(
        out.output.split()
    )


def test_values_from_files_are_printed_as_they_are(runs, tmp_path):
    root, env = runs
    odd = tmp_path / "[bold]run"
    shutil.copytree(root / "a", odd)
    out = runner.invoke(app, ["compare", str(odd)], env=env)
    assert out.exit_code == 0, out.output
    assert "[bold]run" in out.output
