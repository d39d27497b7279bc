"""Does bf16 cost DARec accuracy? The demo's DARec on MovieLens-100K in bf16 and in fp32.

    python benchmarks/precision.py                 # 2 epochs each (about 20 minutes)
    python benchmarks/precision.py --epochs 3
    python benchmarks/precision.py --quick --out /tmp/p.json   # smoke run: tiny data and LLM

Same seed, same data, same number of epochs (no time limit, so the slower fp32 run is not cut
short); both start their CF model from one SASRec run trained first, as the demo does. Only
validation is read (the test split is not). Writes ``benchmarks/results/precision.json`` with
each run's validation metrics, training seconds and the relative gap of validation NDCG@10.
(Speed is compared in benchmarks/throughput.py, on a quiet machine; the seconds here are only
informative.)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib.paths import RESULTS_DIR
from benchlib.quick import add_quick_args, with_quick_sets
from benchlib.records import results_path, write_json

from darec.config import Config, apply_overrides
from darec.experiment import DEMO_MODELS, run_experiment

RESULTS = RESULTS_DIR / "precision.json"
COMMON = ["data.format=movielens", "model.max_seq_len=50", "train.threads=2"]


def measure(args: argparse.Namespace, quick_sets: list[str]) -> dict[str, Any]:
    """The SASRec start, then DARec in bf16 and in fp32; ``quick_sets`` added to every run."""
    seed = f"train.seed={args.seed}"
    out: dict[str, Any] = {"epochs": args.epochs, "seed": args.seed, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        cf_run = Path(tmp) / "sasrec"
        sasrec = apply_overrides(
            Config(), [*COMMON, "train.epochs=200", *DEMO_MODELS["sasrec"], seed, *quick_sets]
        )
        result, _ = run_experiment(sasrec, cf_run, test=False)
        out["sasrec_valid"] = result.valid
        for dtype in ("bf16", "fp32"):
            sets = [
                *COMMON,
                *DEMO_MODELS["darec"],
                f"darec.cf_checkpoint={cf_run}",
                "darec.cf_frozen=true",
                f"text.dtype={dtype}",
                f"train.epochs={args.epochs}",
                "train.max_minutes=0",
                seed,
                *quick_sets,
            ]
            cfg = apply_overrides(Config(), sets)
            start = time.perf_counter()
            result, record = run_experiment(cfg, Path(tmp) / dtype, test=False)
            out["runs"][dtype] = {
                "valid": result.valid,
                "history": result.history,
                "train_seconds": record.train_seconds,
                "wall_seconds": round(time.perf_counter() - start, 1),
                "peak_rss_mb": record.peak_rss_mb,
            }
            print(dtype, json.dumps(result.valid), flush=True)
    bf16, fp32 = (out["runs"][d]["valid"]["NDCG@10"] for d in ("bf16", "fp32"))
    out["relative_gap"] = round(abs(bf16 - fp32) / fp32, 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    add_quick_args(parser, RESULTS, "tiny data and LLM")
    args = parser.parse_args()
    out_path = results_path(args.out, RESULTS, args.quick)
    out = with_quick_sets(args.quick, lambda sets: measure(args, sets))
    write_json(out_path, out)
    print(json.dumps({"relative_gap": out["relative_gap"]}))


if __name__ == "__main__":
    main()
