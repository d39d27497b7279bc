"""Seconds per training epoch with and without length bucketing, side by side in one process.

    python benchmarks/epoch_speed.py [--data PATH] [--model sasrec]
    python benchmarks/epoch_speed.py --quick --out /tmp/e.json      # smoke run: seconds

Trains one epoch of each variant on the same data (default: ../shared/data/amazon-beauty),
alternating them twice so machine noise hits both, and writes
``benchmarks/results/epoch_speed.json``; the ratio is what to read, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from benchlib.darec_steps import train_epoch
from benchlib.paths import BEAUTY, DOC, RESULTS_DIR
from benchlib.quick import add_quick_args, with_quick_sets
from benchlib.records import replace_block, results_path, write_json

from darec.config import Config, apply_overrides
from darec.data.split import leave_one_out
from darec.run import load_data
from darec.run.checkpoint import provenance
from darec.training.trainer import Trainer

RESULTS = RESULTS_DIR / "epoch_speed.json"


def epoch_seconds(cfg: Config) -> float:
    dataset = load_data(cfg)
    split = leave_one_out(dataset)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, dataset, split, run_dir)
        start = time.perf_counter()
        train_epoch(trainer, 0)
        return time.perf_counter() - start


def measure(args: argparse.Namespace, sets: list[str]) -> dict:
    """Both variants twice, alternating; ``sets`` are added to every config."""
    base = apply_overrides(
        Config(),
        [f"data.path={args.data}", f"model.name={args.model}", f"train.threads={args.threads}"],
    )
    base = apply_overrides(base, sets)
    torch.set_num_threads(base.train.threads)
    times: dict[str, list[float]] = {"bucketed": [], "plain": []}
    for _ in range(2):
        for name, flag in (("bucketed", "true"), ("plain", "false")):
            cfg = apply_overrides(base, [f"train.bucket_by_length={flag}"])
            times[name].append(round(epoch_seconds(cfg), 2))
    best = {k: min(v) for k, v in times.items()}
    return {
        "data": base.data.path,
        "model": args.model,
        "threads": base.train.threads,
        "epoch_seconds": times,
        "speedup": round(best["plain"] / best["bucketed"], 2),
        "commit": provenance()["commit"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(BEAUTY))
    parser.add_argument("--model", default="sasrec")
    parser.add_argument("--threads", type=int, default=2)
    add_quick_args(parser, RESULTS, "tiny data and model")
    args = parser.parse_args()
    out_path = results_path(args.out, RESULTS, args.quick)
    out = with_quick_sets(args.quick, lambda sets: measure(args, sets), llm=False)
    write_json(out_path, out)
    print(out)
    if args.quick:
        return
    times = out["epoch_seconds"]
    table = (
        "| batches | seconds per epoch (2 tries) | speed-up |\n|---|---|---|\n"
        f"| plain (padded to 50) | {', '.join(map(str, times['plain']))} | 1.00 |\n"
        f"| length-bucketed | {', '.join(map(str, times['bucketed']))} | {out['speedup']:.2f} |"
    )
    replace_block(DOC, "speed", table, "# Results\n\n")


if __name__ == "__main__":
    main()
