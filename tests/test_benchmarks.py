"""Every script in benchmarks/ runs in its ``--quick`` mode (tiny data, tiny LLaMA) and writes a
record with the keys its full run writes, without touching the recorded results or the docs.

Each script runs as a user runs it: ``python benchmarks/NAME.py`` from the repository root, in
its own process. Run with ``pytest -m slow``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RESULTS = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
RECORDED = [*RESULTS, ROOT / "docs" / "results.md", ROOT / "README.md"]


def fingerprint() -> dict[str, str]:
    """A hash of every recorded result, of docs/results.md and of README.md."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in RECORDED if p.exists()}


def run_quick(script: str, out: Path, *args: str, flag: str = "--out") -> Any:
    """``benchmarks/<script>.py --quick <flag> out *args``: the JSON it wrote to ``out``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, f"benchmarks/{script}.py", "--quick", flag, str(out), *args]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}"
    return json.loads(out.read_text())


RUN_KEYS = {"dataset", "model", "seed", "valid", "test", "epochs", "settings", "peak_rss_mb"}


def models(records: list[dict[str, Any]]) -> list[str]:
    assert all(RUN_KEYS <= r.keys() for r in records), records
    return sorted(r["model"] for r in records)


# script -> (extra arguments, output flag, check of the record it wrote)
CASES: dict[str, tuple[list[str], str, Callable[[Any], bool]]] = {
    "baselines": (
        ["--models", "pop,sasrec"],
        "--results",
        lambda r: models(r) == ["pop", "sasrec"] and all("test_history_kept" in x for x in r),
    ),
    "darec_bench": ([], "--results", lambda r: models(r) == ["darec", "sasrec"]),
    "text_signal": ([], "--results", lambda r: models(r) == ["sasrec+text"]),
    "accuracy": (
        [],
        "--out",
        lambda r: (
            {"beauty_sasrec_ndcg10", "beauty_best_model", "beauty_best_ndcg10", "beauty_ratio"}
            <= r.keys()
            and len(r["beauty_sasrec_ndcg10_seeds"]) == 2
            and r["beauty_best_model"] in {"sasrec-text", "darec"}
            and len(r["datasets"]["amazon-beauty"]["models"]["darec"]["seeds"]) == 2
            and "test_ndcg10_seen_items_kept" in r["datasets"]["amazon-beauty"]["models"]["sasrec"]
        ),
    ),
    "tune": (
        ["--model", "sasrec"],
        "--results",
        lambda r: len(r) == 4 and all({"point", "valid", "best_epoch"} <= x.keys() for x in r),
    ),
    "epoch_speed": (
        [],
        "--out",
        lambda r: (
            {"epoch_seconds", "speedup"} <= r.keys() and len(r["epoch_seconds"]["plain"]) == 2
        ),
    ),
    "loss_speed": (
        [],
        "--out",
        lambda r: (
            "cpu_bf16_flags" in r
            and {t["what"] for t in r["timings"]} == {"loss", "sasrec_step"}
            and set(r["peak_rss_mb"]["tiny"]) == {"full", "chunked"}
        ),
    ),
    "matmul_ceiling": (
        [],
        "--out",
        lambda r: "cpu_bf16_flags" in r and {x["dtype"] for x in r["results"]} == {"fp32", "bf16"},
    ),
    "throughput": (
        [],
        "--out",
        lambda r: (
            len(r["training"]) == 8
            and {"train_speedup", "infer_speedup", "stream_speedup", "mfu", "precision_speedup"}
            <= r.keys()
            and {"beauty_epoch_seconds", "beauty_eval_seconds", "peak_rss_mb"} <= r.keys()
        ),
    ),
    "autocast": (
        [],
        "--out",
        lambda r: (
            set(r["schemes"]) == {"explicit", "explicit+autocast", "amp"}
            and "speed_vs_explicit" in r
        ),
    ),
    "compile_bench": (
        [],
        "--out",
        lambda r: len(r["eager"]) == len(r["compiled"]) == 2 and "steady_speedup" in r,
    ),
    "memory": (
        [],
        "--out",
        lambda r: (
            len(r["ml-100k"]["rows"]) == 2 and {"peak_ratio", "time_ratio"} <= r["ml-100k"].keys()
        ),
    ),
    "eval_memory": (
        [],
        "--out",
        lambda r: [x["code"] for x in r["runs"]] == ["now"] and "NDCG@10" in r["runs"][0],
    ),
    "precision": (
        [],
        "--out",
        lambda r: set(r["runs"]) == {"bf16", "fp32"} and "relative_gap" in r,
    ),
    "darec_start": (
        ["--variants", "raw"],
        "--out",
        lambda r: [x["variant"] for x in r] == ["raw"] and len(r[0]["valid_ndcg10"]) >= 2,
    ),
    "darec_terms": (
        [],
        "--out",
        lambda r: set(r["valid NDCG@10"]) == {"trained", "without user_head", "without text_head"},
    ),
    "sasrec_vs_recbole": (
        [],
        "--out",
        lambda r: (
            {"darec", "darec_converged", "recbole"} <= r.keys()
            and r["darec"]["epochs_trained"] == 1
        ),
    ),
    "search_bench": (
        [],
        "--results",
        lambda r: {"gain", "fast_ratio", "base", "searched", "best_layouts", "trials"} <= r.keys(),
    ),
    "cold_start": (
        ["--models", "content,content-cf,sasrec"],
        "--out",
        lambda r: (
            {"cold_best_model", "cold_best_ndcg10", "cold_content_ndcg10", "cold_ratio"} <= r.keys()
            and r["quick"]
            and r["models"]["content-cf"]["can_rank_cold"]
            and not r["models"]["sasrec"]["can_rank_cold"]
        ),
    ),
    "cold_probe": (
        [],
        "--out",
        lambda r: (
            r["quick"]
            and {"metric", "metric logQ", "weights"} == set(r["learned"])
            and all(len(curve) == 2 for curve in r["learned"].values())
            and r["split"]["valid_cases"]["pseudo-cold"] > 0
            and len(r["content_cf"]) == 1
        ),
    ),
    "serving": (
        [],
        "--results",
        lambda r: r["errors"] == 0 and r["sasrec_p50_ms"] > 0 and "export_all_users_seconds" in r,
    ),
    "data_parallel": (
        [],
        "--out",
        lambda r: (
            [x["processes"] for x in r["runs"]] == [1, 2]
            and all(x["samples_per_second"] > 0 for x in r["runs"])
            and set(r["speedup"]) == {"1", "2"}
        ),
    ),
    "bert4rec_switches": (
        [],
        "--out",
        lambda r: (
            [x["left_out"] for x in r["runs"]][0] is None
            and len({x["left_out"] for x in r["runs"]}) == 5
            and all(x["valid_ndcg10_by_epoch"] and x["epochs"] == 2 for x in r["runs"])
        ),
    ),
    # RecBole lives in its own virtualenv; without it the quick run records why it skipped
    "recbole_compare": ([], "--out", lambda r: "skipped" in r or len(r["runs"]) == 1),
}


def test_every_script_has_a_case():
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    assert scripts == set(CASES)


@pytest.mark.parametrize("script", sorted(CASES))
def test_quick_mode_writes_its_record(script: str, tmp_path: Path):
    args, flag, check = CASES[script]
    before = fingerprint()
    record = run_quick(script, tmp_path / "record.json", *args, flag=flag)
    assert check(record), json.dumps(record)[:2000]
    assert fingerprint() == before, "a --quick run changed the recorded results or the docs"


def test_quick_mode_refuses_to_write_the_recorded_results():
    target = ROOT / "benchmarks" / "results" / "epoch_speed.json"
    with pytest.raises(AssertionError, match="never writes the recorded results"):
        run_quick("epoch_speed", target)


def test_cold_start_trains_darecs_cf_run_first_and_resumes_from_the_runs_folder(tmp_path: Path):
    out, runs = tmp_path / "cold.json", tmp_path / "runs"
    first = run_quick("cold_start", out, "--models", "darec", "--run-dir", str(runs))
    # DARec starts from the sasrec run (ML-100K's COLD_DAREC_CF), trained first into the folder
    assert list(first["models"]) == ["sasrec", "darec", "darec neighbours"]
    assert first["models"]["darec"]["can_rank_cold"]
    assert all((runs / m / "metrics.json").exists() for m in ("sasrec", "darec"))

    def steps() -> list[int]:
        lines = (runs / "darec" / "log.jsonl").read_text().splitlines()
        return [r["step"] for r in map(json.loads, lines) if r["event"] == "epoch"]

    trained = steps()
    again = run_quick("cold_start", out, "--models", "darec", "--run-dir", str(runs))
    # the finished run is tested again, not retrained: no new epoch, the same metrics
    assert trained and steps() == trained
    assert again["models"]["darec"]["epochs"] == first["models"]["darec"]["epochs"]
    assert again["models"]["darec"]["warm"] == first["models"]["darec"]["warm"]


def test_cold_start_merges_rows_trained_elsewhere(tmp_path: Path):
    out = tmp_path / "cold.json"
    first = run_quick("cold_start", out, "--models", "content")
    row = {**first["models"]["content"], "commit": "elsewhere"}
    elsewhere = tmp_path / "gpu.json"
    elsewhere.write_text(json.dumps({**first, "models": {"gpu model": row}}))
    merged = run_quick("cold_start", out, "--merge", str(elsewhere), "--machine", "a GPU box")
    assert list(merged["models"]) == ["content", "gpu model"]
    assert merged["models"]["gpu model"]["machine"] == "a GPU box"
    assert "machine" not in merged["models"]["content"]
    assert merged["cold_best_model"] == "gpu model"
    other_split = tmp_path / "other.json"
    other_split.write_text(json.dumps({**first, "seed": 7, "models": {"x": row}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "benchmarks/cold_start.py", "--quick", "--out", str(out)]
    done = subprocess.run(
        [*cmd, "--merge", str(other_split)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0 and "another split" in done.stderr and "seed" in done.stderr
