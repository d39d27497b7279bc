"""Peak memory and time of evaluating DARec_base over the whole backbone on the CPU.

    python benchmarks/eval_memory.py                          # this checkout's code
    python benchmarks/eval_memory.py --before /tmp/old/src    # and another source tree first
    python benchmarks/eval_memory.py --quick --out /tmp/e.json   # smoke run: tiny data and LLM

An untrained DARec (SmolLM2-135M, all 30 layers, serial bottlenecks in every slot: nothing is
frozen below the adapters) scores the first ``--users`` validation users of ML-100K against the
whole catalog, the way validation does (catalog cache, then one evaluation batch of users). Each
code version runs in its own child process, one after the other, so ``peak_rss_mb`` (max RSS) is
that version's alone. Writes ``benchmarks/results/eval_memory.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchlib.paths import RESULTS_DIR, ROOT
from benchlib.quick import add_quick_args, with_quick_sets
from benchlib.records import add_child_args, child_json, child_main, results_path, write_json

RESULTS = RESULTS_DIR / "eval_memory.json"
SETTINGS = [
    "data.format=movielens",
    "model.name=darec",
    "model.max_seq_len=50",
    "text.encoder_layers=0",
    "darec.adapters=serial:16",
    "text.fields=title,genres",
    "text.max_tokens=24",
    "train.threads=2",
]


def one(users: int, sets: list[str]) -> dict[str, Any]:
    """Child process: build the model, evaluate ``users`` validation users, report."""
    import torch
    from benchlib.machine import rss_mb

    from darec.config import Config, apply_overrides
    from darec.data.split import leave_one_out
    from darec.evaluation.evaluator import evaluate
    from darec.models.base import ModelContext
    from darec.models.darec import DARec
    from darec.run import load_data

    cfg = apply_overrides(Config(), [*SETTINGS, *sets, f"eval.batch_size={users}"])
    torch.set_num_threads(cfg.train.threads)
    dataset = load_data(cfg)
    valid = leave_one_out(dataset).valid
    part = dataclasses.replace(
        valid,
        users=valid.users[:users],
        histories=valid.histories[:users],
        targets=valid.targets[:users],
    )
    torch.manual_seed(0)
    model = DARec(cfg, ModelContext(dataset.num_items, dataset.catalog, dataset.key, None))
    model.eval()
    before = rss_mb()
    start = time.perf_counter()
    with torch.no_grad():
        model.catalog()
    catalog_s = time.perf_counter() - start
    after_catalog = rss_mb()
    start = time.perf_counter()
    result = evaluate(model, part, cfg.eval, cfg.model.max_seq_len, torch.device("cpu"))
    return {
        "users": users,
        "rss_before_mb": before,
        "rss_after_catalog_mb": after_catalog,
        "peak_rss_mb": rss_mb(),
        "catalog_seconds": round(catalog_s, 1),
        "users_seconds": round(time.perf_counter() - start, 1),
        "NDCG@10": result.metrics["NDCG@10"],
    }


def measure(args: argparse.Namespace, results: Path, sets: list[str]) -> None:
    """Each code version in its own child process, ``sets`` added to its config."""
    trees = ([("before", args.before)] if args.before else []) + [("now", str(ROOT / "src"))]
    rows = []
    for name, src in trees:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(ROOT / "benchmarks")])}
        cmd = [sys.executable, __file__, "--one", "--users", str(args.users)]
        cmd += [f"--set={s}" for s in sets]
        row = {"code": name, "src": src, **child_json(cmd, env)}
        print(json.dumps(row))
        rows.append(row)
    write_json(results, {"settings": SETTINGS, "runs": rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=512, help="one evaluation batch (default)")
    parser.add_argument("--before", default="", help="another src/ folder, run first")
    add_quick_args(parser, RESULTS, "tiny data and LLM, 8 users")
    add_child_args(parser, action="store_true")
    args = parser.parse_args()
    if child_main(args, lambda: one(args.users, args.set)):
        return
    results = results_path(args.out, RESULTS, args.quick)
    if args.quick:
        args.users = 8
    with_quick_sets(args.quick, lambda sets: measure(args, results, sets))
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
