"""A damaged or edited run folder gets a clear error (exit 2, the file and what was expected),
never a traceback: regression tests for what a careless user did to real run folders."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from typer.testing import CliRunner

from darec.cli import app
from darec.run import RunFolder, checkpoint_path, load_checkpoint
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
        ("data.json", '{"files": 3}', "data.json: expected dataset_key, files"),
        ("data.json", "[1", "data.json is not valid JSON"),
        ("config.json", b"\x80{}", "config.json is not valid JSON: byte 0 is not UTF-8"),
    ],
)
def test_edited_run_files_are_named(trained, tmp_path, name, content, expected):
    run = _copy(trained, tmp_path)
    (run / name).write_bytes(content if isinstance(content, bytes) else content.encode())
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
    # nothing repeated but what changes: the run's own config is the base; the threads may
    # change with the budget (a run moved to a machine with other cores)
    args = ["train", "-o", str(run), "--resume", "--set", "train.epochs=3"]
    out = runner.invoke(app, [*args, "--set", "train.threads=1"], env=env)
    assert out.exit_code == 0, out.output
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3
    assert json.loads((run / "config.json").read_text())["train"]["threads"] == 1
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


# ------------------------------------------------------------ data that changed since training


def _copy_data(trained: tuple[Path, dict[str, str]], tmp_path: Path) -> Path:
    source = Path(json.loads((trained[0] / "config.json").read_text())["data"]["path"])
    return Path(shutil.copytree(source, tmp_path / "data"))


def _add_rows(data: Path) -> None:
    """A new user of known items, after the others: the same item list, so only the
    fingerprint tells."""
    with (data / "tiny.inter").open("a") as handle:
        handle.write("u99\ti1\t5000\nu99\ti2\t5001\nu99\ti3\t5002\n")


def test_the_run_records_the_data_it_trained_on(trained):
    saved = json.loads((trained[0] / "data.json").read_text())
    names = [Path(f["path"]).name for f in saved["files"]]
    assert names == ["tiny.inter", "tiny.item"]
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in saved["files"])
    ids = json.loads((trained[0] / "ids.json").read_text())
    assert saved["counts"]["users"] == 40 == len(ids["user_ids"]) - 1
    assert saved["counts"]["items"] == len(ids["item_ids"]) - 1
    assert saved["dataset_key"] == ids["dataset_key"]


def test_evaluate_refuses_data_that_changed_unless_allowed(trained, tmp_path):
    run, env = trained
    data = _copy_data(trained, tmp_path)
    args = ["evaluate", str(run), "--device", "cpu", "--data", str(data)]
    moved = runner.invoke(app, args, env=env)
    assert moved.exit_code == 0, moved.output  # moved, same bytes: the same data
    _add_rows(data)
    out = runner.invoke(app, args, env=env)
    assert out.exit_code == 2 and "Traceback" not in out.output
    message = " ".join(out.output.split())
    assert f"the data changed since run {run} was trained" in message
    assert f"interaction file {data / 'tiny.inter'} (was " in message
    n = json.loads((run / "data.json").read_text())["counts"]["interactions"]
    assert "bytes at training" in message
    assert f"after filtering: users 40 then, 41 now, interactions {n} then, {n + 3} now" in message
    assert "--allow-changed-data" in message
    out = runner.invoke(app, [*args, "--allow-changed-data"], env=env)
    assert out.exit_code == 0, out.output
    assert "warning: the data changed since run" in " ".join(out.output.split())
    out = runner.invoke(app, ["recommend", str(run), "--user", "u1", "--data", str(data)], env=env)
    assert out.exit_code == 2 and "the data changed since run" in out.output


def test_a_run_without_a_data_fingerprint_still_loads(trained, tmp_path):
    run = _copy(trained, tmp_path)
    (run / "data.json").unlink()  # written before data.json existed
    data = _copy_data(trained, tmp_path)
    _add_rows(data)
    args = ["evaluate", str(run), "--device", "cpu", "--data", str(data)]
    out = runner.invoke(app, args, env=trained[1])
    assert out.exit_code == 0, out.output


def test_resume_refuses_data_that_changed(trained, tmp_path):
    run = _copy(trained, tmp_path)
    data = _copy_data(trained, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["data"]["path"] = str(data)  # as if the run had trained on this copy
    (run / "config.json").write_text(json.dumps(config))
    _add_rows(data)
    args = ["train", "-o", str(run), "--resume", "--set", "train.epochs=4"]
    out = runner.invoke(app, args, env=trained[1])
    assert out.exit_code == 2, out.output
    message = " ".join(out.output.split())
    assert "the data changed since run" in message and "tiny.inter" in message
    assert "A resumed run must go on with the data it started on" in message


def test_evaluate_and_recommend_take_another_item_file(trained, tmp_path):
    run, env = trained
    items = tmp_path / "renamed.item"
    lines = ["item_id:token\ttitle:token_seq", *(f"i{i}\tRenamed {i}" for i in range(30))]
    items.write_text("\n".join(lines) + "\n")
    args = ["recommend", str(run), "--user", "u1", "-k", "3", "--item-file", str(items)]
    out = runner.invoke(app, args, env=env)
    assert out.exit_code == 0, out.output
    assert "(Renamed" in out.output and "Item number" not in out.output
    args = ["evaluate", str(run), "--device", "cpu", "--item-file", str(items)]
    assert runner.invoke(app, args, env=env).exit_code == 0


# ------------------------------------------------- randomly damaged run files (property-based)

_SMALL_JSON = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=70),
    st.floats(min_value=-2, max_value=2),
    st.text(max_size=6),
    st.just([]),
    st.just({}),
    st.lists(st.integers(min_value=-1, max_value=3), max_size=3),
)


def _leaves(data: object, path: tuple = ()) -> list[tuple]:
    if isinstance(data, dict):
        return [leaf for k, v in data.items() for leaf in _leaves(v, (*path, k))] or [path]
    if isinstance(data, list) and data:
        return [leaf for i, v in enumerate(data[:5]) for leaf in _leaves(v, (*path, i))]
    return [path]


def _damage(content: bytes, how: str, draw: st.DataObject) -> bytes:
    if how == "cut":
        return content[: draw.draw(st.integers(min_value=0, max_value=len(content) - 1))]
    if how == "garbage":
        return draw.draw(st.binary(max_size=64))
    data = json.loads(content)
    path = draw.draw(st.sampled_from(_leaves(data)))
    value = draw.draw(_SMALL_JSON)
    if not path:
        return json.dumps(value).encode()
    target = data
    for key in path[:-1]:
        target = target[key]
    if draw.draw(st.booleans()) and isinstance(target, dict):
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(data).encode()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["config.json", "ids.json", "data.json", "state.json"]),
    how=st.sampled_from(["cut", "garbage", "edit", "edit", "edit"]),
    draw=st.data(),
)
def test_a_randomly_damaged_run_file_gives_the_projects_error(trained, name, how, draw):
    from darec.errors import DarecError
    from darec.run.fingerprint import read_data_fingerprint

    with tempfile.TemporaryDirectory() as folder:
        run = Path(shutil.copytree(trained[0], Path(folder) / "run"))
        file = run / name if name != "state.json" else checkpoint_path(run, "last") / name
        file.write_bytes(_damage(file.read_bytes(), how, draw))
        try:
            opened = RunFolder.open(run)
            assert opened.config is not None and opened.ids is not None
            read_data_fingerprint(run)
            load_checkpoint(checkpoint_path(run, "last"))
            opened.load_model()
        except DarecError:
            pass
