"""Choose baseline settings on *validation* NDCG@10 only; the test split is never read here.

    python benchmarks/tune.py --dataset ml-100k --model sasrec

Runs a small grid (below) with the settings of benchmarks/baselines.py as the base, and appends
one record per grid point to benchmarks/results/tuning.json. Copy the winner into SETTINGS in
benchmarks/benchlib/settings.py (and DEMO_MODELS in src/darec/experiment.py for ML-100K).

    python benchmarks/tune.py --model sasrec --quick --results /tmp/t.json   # smoke run
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from pathlib import Path

from benchlib.paths import RESULTS_DIR
from benchlib.quick import add_quick_args, with_quick_sets
from benchlib.records import read_records, results_path, write_json
from benchlib.settings import COMMON, DATASETS, SETTINGS

from darec.config import Config, apply_overrides
from darec.experiment import run_experiment

RESULTS = RESULTS_DIR / "tuning.json"

GRIDS: dict[str, dict[str, list[str]]] = {
    "sasrec": {"model.dropout": ["0.2", "0.5"], "train.lr": ["0.001", "0.002"]},
    "gru4rec": {"model.dropout": ["0.2", "0.5"]},
    "bert4rec": {"model.mask_prob": ["0.2", "0.4"]},
}


def tune(args: argparse.Namespace, results: Path, quick_sets: list[str]) -> None:
    """Train every grid point (validation only) and append its record to ``results``."""
    grid = GRIDS[args.model]
    records = read_records(results)
    for values in itertools.product(*grid.values()):
        point = [f"{k}={v}" for k, v in zip(grid, values, strict=True)]
        if "model.dropout=" in " ".join(point):  # tie attention dropout to hidden dropout
            point.append(f"model.attn_dropout={values[list(grid).index('model.dropout')]}")
        cfg = apply_overrides(
            Config(),
            DATASETS[args.dataset] + COMMON + SETTINGS[args.dataset][args.model] + point + args.set,
        )
        cfg = apply_overrides(cfg, quick_sets)
        with tempfile.TemporaryDirectory() as run_dir:
            result, record = run_experiment(cfg, Path(run_dir) / "run", test=False)
        row = {
            "dataset": args.dataset,
            "model": args.model,
            "point": point + args.set,
            "valid": result.valid,
            "best_epoch": result.best_epoch,
            "epochs": result.epochs,
            "train_seconds": record.train_seconds,
            "commit": record.commit,
        }
        print(
            json.dumps(
                {k: row[k] for k in ("model", "point", "best_epoch")}
                | {"valid NDCG@10": row["valid"]["NDCG@10"]}
            ),
            flush=True,
        )
        records.append(row)
        write_json(results, records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k", choices=sorted(DATASETS))
    parser.add_argument("--model", required=True, choices=sorted(GRIDS))
    parser.add_argument("--set", action="append", default=[], help="extra override")
    add_quick_args(parser, RESULTS, "the grid on tiny data, 1 epoch a point", "--results")
    args = parser.parse_args()
    results = results_path(args.out, RESULTS, args.quick)
    with_quick_sets(args.quick, lambda sets: tune(args, results, sets), llm=False)
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
