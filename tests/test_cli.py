import json
import re
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from darec.cli import app

runner = CliRunner()

TINY = [
    "--set",
    "data.user_min=3",
    "--set",
    "data.item_min=1",
    "--set",
    "model.max_seq_len=8",
    "--set",
    "model.hidden_size=16",
    "--set",
    "model.inner_size=32",
    "--set",
    "train.epochs=2",
    "--set",
    "train.batch_size=8",
]


def _env(tmp_path: Path) -> dict[str, str]:
    return {"DAREC_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}


def train_tiny_runs(root: Path, runs: dict[str, list[str]]) -> dict[str, str]:
    """``darec train`` (``TINY``) on a tiny dataset written under ``root``, once per run name
    with its extra arguments, into ``root/NAME``; returns the environment to use the runs in."""
    from tests.conftest import write_tiny_atomic

    data = write_tiny_atomic(root / "tiny")
    env = _env(root)
    for name, extra in runs.items():
        args = ["train", "--data", str(data), "-o", str(root / name), *TINY, *extra]
        out = runner.invoke(app, args, env=env)
        assert out.exit_code == 0, out.output
    return env


def test_train_evaluate_recommend_end_to_end(tiny_data, tmp_path):
    env = _env(tmp_path)
    run = tmp_path / "run"
    out = runner.invoke(
        app,
        ["train", "--data", str(tiny_data), "--model", "sasrec", "--output", str(run), *TINY],
        env=env,
    )
    assert out.exit_code == 0, out.output
    assert "NDCG@10" in out.output and (run / "metrics.json").exists()
    test_metrics = json.loads((run / "metrics.json").read_text())["test"]

    out = runner.invoke(app, ["evaluate", str(run), "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["NDCG@10"] == test_metrics["NDCG@10"]
    assert json.loads(out.output)["exclude_history"] is True
    out = runner.invoke(app, ["evaluate", str(run), "--json", "--include-history"], env=env)
    assert out.exit_code == 0, out.output
    with_history = json.loads(out.output)
    assert with_history["exclude_history"] is False
    assert with_history["NDCG@10"] <= test_metrics["NDCG@10"]
    # by the target's popularity third: the trainer's own split of the test users
    out = runner.invoke(app, ["evaluate", str(run), "--json", "--by-popularity"], env=env)
    assert out.exit_code == 0, out.output
    groups = json.loads(out.output)["by_popularity"]
    recorded = json.loads((run / "metrics.json").read_text())["test_by_popularity"]
    assert groups.keys() == recorded.keys()
    assert all(groups[g]["NDCG@10"] == recorded[g]["NDCG@10"] for g in groups)
    assert sum(g["users"] for g in groups.values()) == json.loads(out.output)["users"]
    out = runner.invoke(app, ["evaluate", str(run), "--by-popularity", "--split", "valid"], env=env)
    assert out.exit_code == 0 and "head (" in out.output, out.output

    out = runner.invoke(app, ["recommend", str(run), "--user", "u1", "-k", "3", "--json"], env=env)
    assert out.exit_code == 0, out.output
    recs = [json.loads(line) for line in out.output.strip().splitlines()]
    assert [r["rank"] for r in recs] == [1, 2, 3]

    out = runner.invoke(
        app,
        ["recommend", str(run), "--items", "i1,i2", "--exclude", "i3", "-k", "20", "--json"],
        env=env,
    )
    assert out.exit_code == 0, out.output
    items = [json.loads(line)["item"] for line in out.output.strip().splitlines()]
    assert not {"i1", "i2", "i3"} & set(items) and len(items) == 20

    out = runner.invoke(app, ["recommend", str(run), "--user", "nobody"], env=env)
    assert out.exit_code == 2 and "unknown user id 'nobody'" in out.output
    out = runner.invoke(app, ["recommend", str(run), "--items", "i1,zzz"], env=env)
    assert out.exit_code == 2 and "unknown item id 'zzz'" in out.output
    for args in (["evaluate", str(run)], ["recommend", str(run), "--user", "u1"]):
        out = runner.invoke(app, [*args, "--device", "gpu"], env=env)
        assert out.exit_code == 2 and "--device='gpu': expected cpu, cuda" in out.output
    out = runner.invoke(app, ["evaluate", str(run), "--json", "--device", "cpu"], env=env)
    assert json.loads(out.output)["NDCG@10"] == test_metrics["NDCG@10"]

    # every user at once, into a file; the same top-k as one user at a time
    out = runner.invoke(
        app, ["recommend", str(run), "--all-users", "-k", "3", "-o", "x.txt"], env=env
    )
    assert out.exit_code == 2 and "expected a file ending in .csv" in out.output
    out = runner.invoke(app, ["recommend", str(run), "--all-users", "-k", "3"], env=env)
    assert out.exit_code == 2 and "--output" in out.output
    table_file = tmp_path / "recs.csv"
    out = runner.invoke(
        app, ["recommend", str(run), "--all-users", "-k", "3", "-o", str(table_file)], env=env
    )
    assert out.exit_code == 0, out.output
    table = pd.read_csv(table_file, dtype={"user": str, "item": str})
    assert len(table) == 3 * table["user"].nunique() and table["user"].nunique() == 40
    u1 = table[table["user"] == "u1"]
    assert u1["item"].tolist() == [r["item"] for r in recs]


def test_data_info(tiny_data, tmp_path):
    out = runner.invoke(
        app,
        ["data", "info", str(tiny_data), "--set", "data.item_min=1", "--set", "data.user_min=3"],
        env=_env(tmp_path),
    )
    assert out.exit_code == 0, out.output
    import re

    assert re.search(r"users\s*│\s*40\s*│", out.output), out.output
    assert re.search(r"items\s*│\s*30\s*│", out.output) and "density" in out.output
    assert re.search(r"items_with_text\s*│\s*30\s*│", out.output)


def test_clear_errors(tiny_data, tmp_path):
    env = _env(tmp_path)
    out = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(tiny_data),
            "--model",
            "nosuch",
            "--output",
            str(tmp_path / "r"),
            *TINY,
        ],
        env=env,
    )
    assert out.exit_code == 2 and "valid models" in out.output and "sasrec" in out.output
    assert "Traceback" not in out.output
    out = runner.invoke(app, ["train", "--data", str(tiny_data), "--set", "train.lr=fast"], env=env)
    assert out.exit_code == 2 and "train.lr must be a number" in out.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "bad.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t1\nu1\ti2\tnot-a-time\n"
    )
    out = runner.invoke(app, ["data", "info", str(bad)], env=env)
    assert out.exit_code == 2 and "bad.inter:3" in out.output
    out = runner.invoke(
        app, ["data", "info", str(tiny_data), "--set", "data.user_min=100"], env=env
    )
    assert out.exit_code == 2 and "user_min" in out.output
    assert not (tmp_path / "r").exists()  # an unknown model is caught before anything is written


def test_train_shows_the_start_and_mid_epoch_validations(tiny_data, tmp_path):
    settings = ["train.validate_first=true", "train.eval_every_steps=2"]
    args = ["--data", str(tiny_data), "--output", str(tmp_path / "run"), *TINY]
    args += [part for setting in settings for part in ("--set", setting)]
    out = runner.invoke(app, ["train", "--model", "sasrec", *args], env=_env(tmp_path))
    assert out.exit_code == 0, out.output
    lines = [line for line in out.output.splitlines() if "valid HR@10" in line]
    assert "epoch   0 " in lines[0] and "step" not in lines[0]
    assert "epoch   1 step 2/" in lines[1]
    assert any("epoch   1 " in line and "step" not in line for line in lines)


def test_text_from_data_is_printed_as_it_is(tmp_path):
    """Ids with Rich markup, and "file:100:" (an emoji code to Rich), print verbatim."""
    env = _env(tmp_path)
    data = tmp_path / "odd.csv"
    rows = ["user_id,item_id,timestamp"]
    rows += [f"u{u},[/red]i{(u * 7 + t) % 9}[bold],{t}" for u in range(12) for t in range(6)]
    data.write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--model", "sasrec", "--output", str(run), *TINY]
    out = runner.invoke(app, args, env=env)
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["recommend", str(run), "--user", "u1", "-k", "3"], env=env)
    assert out.exit_code == 0, out.output
    assert "[/red]i" in out.output and "[bold]" in out.output
    out = runner.invoke(app, ["recommend", str(run), "--items", "[/red]zz[bold]"], env=env)
    assert out.exit_code == 2 and "unknown item id '[/red]zz[bold]'" in out.output

    bad = tmp_path / "bad[bold].csv"
    lines = ["user_id,item_id,timestamp"] + [f"u{i},i{i},{i}" for i in range(98)] + ["u,i"]
    bad.write_text("\n".join(lines) + "\n")
    out = runner.invoke(app, ["data", "info", str(bad)], env=env)
    assert out.exit_code == 2
    assert "bad[bold].csv:100:" in out.output and "💯" not in out.output


def test_version():
    import darec

    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and out.output.strip() == f"darec {darec.__version__}"


def test_a_user_removed_by_kcore_filtering_is_explained(tmp_path):
    data = tmp_path / "d.csv"
    rows = ["user_id,item_id,timestamp"]
    rows += [f"u{u},i{(u + t) % 6},{t}" for u in range(10) for t in range(5)]
    rows += ["shy,i1,0", "shy,i2,1"]  # two interactions: under data.user_min=5
    data.write_text("\n".join(rows) + "\n")
    env = _env(tmp_path)
    out = runner.invoke(app, ["data", "info", str(data), "--set", "data.item_min=1"], env=env)
    assert out.exit_code == 0, out.output
    assert re.search(r"input_users\s*│\s*11\s*│", out.output)
    assert re.search(r"users\s*│\s*10\s*│", out.output)
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "-m", "pop", "-o", str(run), "--set", "data.item_min=1"]
    assert runner.invoke(app, args, env=env).exit_code == 0
    out = runner.invoke(app, ["recommend", str(run), "--user", "shy"], env=env)
    assert out.exit_code == 2
    text = " ".join(out.output.split())
    assert "user 'shy' is in the input" in text and "removed by k-core filtering" in text
    assert "data.user_min=5" in text


def test_demo_says_when_a_run_kept_its_start(tmp_path):
    """With a learning rate too small to move it, no epoch beats the validated start."""
    sets = ["train.epochs=1", "train.validate_first=true", "train.lr=1e-12"]
    sets += ["model.hidden_size=8", "model.inner_size=16", "model.max_seq_len=10"]
    args = ["demo", "--models", "sasrec", "-o", str(tmp_path / "demo")]
    out = runner.invoke(app, [*args, *(x for s in sets for x in ("--set", s))], env=_env(tmp_path))
    assert out.exit_code == 0, out.output
    assert "kept its start" in out.output and "no training epoch beat its validated start" in (
        " ".join(out.output.split())
    )


def test_data_warnings_are_printed_as_warning_lines(tmp_path):
    """What the reader assumed (here: the time column it chose) is shown at every load."""
    data = tmp_path / "d.csv"
    rows = ["user_id,item_id,Event_Time"]
    rows += [f"u{u},i{(u + t) % 6},{10 - t}" for u in range(4) for t in range(3)]
    data.write_text("\n".join(rows) + "\n")
    args = ["data", "info", str(data), "--set", "data.item_min=1", "--set", "data.user_min=1"]
    for _ in range(2):  # read, then from the cache: said both times
        out = runner.invoke(app, args, env=_env(tmp_path))
        assert out.exit_code == 0, out.output
        text = " ".join(out.output.split())
        assert (
            "warning: d.csv: data.time_column 'timestamp' is not in the header; reading the "
            "times from column 'Event_Time' instead"
        ) in text
