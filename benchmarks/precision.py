"""Does bf16 cost DARec accuracy? The demo's DARec on MovieLens-100K in bf16 and in fp32.

    python benchmarks/precision.py                 # 2 epochs each (about 20 minutes)
    python benchmarks/precision.py --epochs 3

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

from darec.config import Config, apply_overrides
from darec.experiment import DEMO_MODELS, run_experiment
from darec.run.checkpoint import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "precision.json"
COMMON = ["data.format=movielens", "model.max_seq_len=50", "train.threads=2"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    seed = f"train.seed={args.seed}"
    out: dict = {"epochs": args.epochs, "seed": args.seed, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        cf_run = Path(tmp) / "sasrec"
        sasrec = apply_overrides(
            Config(), [*COMMON, "train.epochs=200", *DEMO_MODELS["sasrec"], seed]
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
    atomic_write_json(RESULTS, out)
    print(json.dumps({"relative_gap": out["relative_gap"]}))


if __name__ == "__main__":
    main()
