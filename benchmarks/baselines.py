"""Train and evaluate the ID baselines on MovieLens-100K and Amazon Beauty; write results.

Each (dataset, model, seed) runs in its own process so that ``peak_rss_mb`` is that run's own
peak. Records go to ``benchmarks/results/baselines.json`` and a table to ``docs/results.md``.

    python benchmarks/baselines.py                       # everything (about an hour on 2 cores)
    python benchmarks/baselines.py --datasets ml-100k --models sasrec --seeds 1,2,3
    python benchmarks/baselines.py --quick --results /tmp/b.json   # smoke run: seconds

Model settings per dataset are in benchlib/settings.py; they were chosen on *validation*
NDCG@10 only (``benchmarks/tune.py``), never on test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from benchlib.paths import BEAUTY, RESULTS_DIR
from benchlib.quick import add_quick_args, with_quick_sets
from benchlib.records import read_records, results_path, run_and_store, write_run_tables
from benchlib.settings import COMMON, DATASETS, SETTINGS

RESULTS = RESULTS_DIR / "baselines.json"


def run_one(dataset: str, model: str, seed: int, extra: list[str], out: Path) -> None:
    """Child process: one training run, its record written to ``out``."""
    from darec.config import Config, apply_overrides
    from darec.data.split import leave_one_out
    from darec.evaluation.evaluator import evaluate
    from darec.experiment import run_experiment
    from darec.run import load_data, load_trained_model

    cfg = apply_overrides(
        Config(),
        DATASETS[dataset] + COMMON + SETTINGS[dataset][model] + [f"train.seed={seed}"] + extra,
    )
    with tempfile.TemporaryDirectory() as run_dir:
        _, record = run_experiment(cfg, Path(run_dir) / "run")
        # the same selected checkpoint under RecBole's protocol (seen items stay candidates),
        # for comparison with numbers published that way; selection is unaffected
        _, trained, _ = load_trained_model(Path(run_dir) / "run")
        kept = evaluate(
            trained,
            leave_one_out(load_data(cfg)).test,
            dataclasses.replace(cfg.eval, exclude_history=False),
            cfg.model.max_seq_len,
        )
    row = record.to_json()
    row["test_history_kept"] = kept.metrics
    row.pop("run_dir")
    row["dataset"] = dataset
    row["settings"] = SETTINGS[dataset][model] + extra
    out.write_text(json.dumps(row))


def run_all(args: argparse.Namespace, datasets: list[str], results: Path, sets: list[str]) -> list:
    """Every (dataset, model, seed) of ``args`` in its own child process, ``sets`` added to
    each; the records of ``results`` with the new ones in place of older ones."""
    existing = read_records(results)
    for dataset in datasets:
        if dataset == "amazon-beauty" and not BEAUTY.exists():
            print(f"skipping amazon-beauty: {BEAUTY} not found", file=sys.stderr)
            continue
        for model in args.models.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                cmd = [sys.executable, __file__]
                for extra in [*args.set, *sets]:
                    cmd += ["--set", extra]
                cmd += ["--one", dataset, model, str(seed)]
                record = run_and_store(cmd, existing, results)
                print(
                    json.dumps(
                        {
                            k: record[k]
                            for k in ("dataset", "model", "seed", "epochs", "train_seconds")
                        }
                        | {"test NDCG@10": record["test"]["NDCG@10"]}
                    ),
                    flush=True,
                )
    order = {name: i for i, name in enumerate(["pop", "gru4rec", "sasrec", "bert4rec"])}
    existing.sort(key=lambda r: (r["dataset"], order.get(r["model"], 9), r["seed"]))
    return existing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-100k,amazon-beauty")
    parser.add_argument("--models", default="pop,sasrec,gru4rec,bert4rec")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--set", action="append", default=[], help="extra override")
    parser.add_argument(
        "--write-docs", action="store_true", help="only rewrite the tables from the JSON"
    )
    add_quick_args(parser, RESULTS, "ML-100K's settings on tiny data, 1 epoch", "--results")
    parser.add_argument(
        "--one", nargs=4, metavar=("DATASET", "MODEL", "SEED", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        dataset, model, seed, out = args.one
        run_one(dataset, model, int(seed), args.set, Path(out))
        return
    results = results_path(args.out, RESULTS, args.quick)
    datasets = ["ml-100k"] if args.quick else [] if args.write_docs else args.datasets.split(",")
    existing = with_quick_sets(args.quick, lambda s: run_all(args, datasets, results, s), False)
    if not args.quick:
        write_run_tables(existing, "baselines", "readme-results")


if __name__ == "__main__":
    main()
