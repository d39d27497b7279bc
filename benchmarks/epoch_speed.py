"""Seconds per training epoch with and without length bucketing, side by side in one process.

    python benchmarks/epoch_speed.py [--data PATH] [--model sasrec]

Trains one epoch of each variant on the same data (default: ../shared/data/amazon-beauty),
alternating them twice so machine noise hits both, and writes
``benchmarks/results/epoch_speed.json``; the ratio is what to read, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from baselines import replace_block

from darec.config import Config, apply_overrides
from darec.data.split import leave_one_out
from darec.run import load_data
from darec.run.checkpoint import atomic_write_json, provenance
from darec.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def epoch_seconds(cfg: Config) -> float:
    dataset = load_data(cfg)
    split = leave_one_out(dataset)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, dataset, split, run_dir)
        start = time.perf_counter()
        trainer._train_epoch(0, time.monotonic())
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "amazon-beauty"))
    parser.add_argument("--model", default="sasrec")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    base = apply_overrides(
        Config(),
        [f"data.path={args.data}", f"model.name={args.model}", f"train.threads={args.threads}"],
    )
    import torch

    torch.set_num_threads(args.threads)
    times: dict[str, list[float]] = {"bucketed": [], "plain": []}
    for _ in range(2):
        for name, flag in (("bucketed", "true"), ("plain", "false")):
            cfg = apply_overrides(base, [f"train.bucket_by_length={flag}"])
            times[name].append(round(epoch_seconds(cfg), 2))
    best = {k: min(v) for k, v in times.items()}
    out = {
        "data": args.data,
        "model": args.model,
        "threads": args.threads,
        "epoch_seconds": times,
        "speedup": round(best["plain"] / best["bucketed"], 2),
        "commit": provenance()["commit"],
    }
    atomic_write_json(ROOT / "benchmarks" / "results" / "epoch_speed.json", out)
    print(out)
    table = (
        "| batches | seconds per epoch (2 tries) | speed-up |\n|---|---|---|\n"
        f"| plain (padded to 50) | {', '.join(map(str, times['plain']))} | 1.00 |\n"
        f"| length-bucketed | {', '.join(map(str, times['bucketed']))} | {out['speedup']:.2f} |"
    )
    replace_block(ROOT / "docs" / "results.md", "speed", table, "# Results\n\n")


if __name__ == "__main__":
    main()
