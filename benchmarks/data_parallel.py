"""Training samples per second on 1 and on 2 data-parallel processes, side by side.

    python benchmarks/data_parallel.py [--data PATH] [--model sasrec] [--cores 2]
    python benchmarks/data_parallel.py --device cuda --procs 1,2       # one GPU per process
    python benchmarks/data_parallel.py --quick --out /tmp/dp.json      # smoke run: seconds

Each setting is the documented command, ``torchrun --standalone --nproc_per_node N -m darec.cli
train ...``, for two epochs (validation after the second only); the second epoch's training
seconds (from the run's log.jsonl) give the samples (training windows) per second. On the CPU the
processes share ``--cores`` cores (``cores / N`` threads each), so the comparison is one process
using the cores against N processes splitting them. ``train.batch_size`` is the global batch,
the same for every N. Writes ``benchmarks/results/data_parallel.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchlib.machine import cpu_bf16_flags, cpu_model
from benchlib.paths import BEAUTY, RESULTS_DIR
from benchlib.quick import add_quick_args, with_quick_sets
from benchlib.records import results_path, write_json

from darec.config import Config, apply_overrides
from darec.data.batching import training_windows
from darec.data.split import leave_one_out
from darec.run import load_data
from darec.run.checkpoint import provenance
from darec.training.log import read_log

RESULTS = RESULTS_DIR / "data_parallel.json"


def count_windows(cfg: Config) -> int:
    """Training windows of one epoch (the samples an epoch trains on)."""
    split = leave_one_out(load_data(cfg))
    windows, _ = training_windows(split.train, cfg.model.max_seq_len, cfg.train.windows)
    return len(windows)


def train_seconds(procs: int, threads: int, sets: list[str], run_dir: Path) -> float:
    """Seconds of the second epoch of a two-epoch run on ``procs`` processes."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={procs}",
        "-m",
        "darec.cli",
        "train",
        "-o",
        str(run_dir),
    ]
    for item in [*sets, "train.epochs=2", "train.eval_every=2", f"train.threads={threads}"]:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}")
    epochs = [r for r in read_log(run_dir / "log.jsonl") if r.get("event") == "epoch"]
    return float(epochs[1]["seconds"] - epochs[0]["seconds"])


def measure(args: argparse.Namespace, sets: list[str]) -> dict[str, Any]:
    given = [
        f"data.path={args.data}",
        f"model.name={args.model}",
        f"train.device={args.device}",
        *sets,
    ]
    cfg = apply_overrides(Config(), given)
    windows = count_windows(cfg)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="darec-dp-") as tmp:
        for procs in args.procs:
            threads = max(1, args.cores // procs)
            seconds = train_seconds(procs, threads, given, Path(tmp) / f"procs-{procs}")
            runs.append(
                {
                    "processes": procs,
                    "threads_per_process": threads,
                    "epoch_seconds": round(seconds, 3),
                    "samples_per_second": round(windows / seconds, 1),
                }
            )
    rate = {r["processes"]: r["samples_per_second"] for r in runs}
    first = runs[0]["processes"]
    return {
        "data": cfg.data.path,
        "model": args.model,
        "device": args.device,
        "cores": args.cores,
        "cpu": {"model": cpu_model(), "bf16_amx_flags": cpu_bf16_flags(), "cpus": os.cpu_count()},
        "global_batch_size": cfg.train.batch_size,
        "samples_per_epoch": windows,
        "runs": runs,
        "speedup": {str(n): round(rate[n] / rate[first], 2) for n in rate},
        "commit": provenance()["commit"],
        "quick": args.quick,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(BEAUTY))
    parser.add_argument("--model", default="sasrec")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL)")
    parser.add_argument("--cores", type=int, default=2, help="CPU cores shared by the processes")
    parser.add_argument(
        "--procs",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2],
        help="process counts, comma-separated (the first is the baseline of the speed-up)",
    )
    add_quick_args(parser, RESULTS, "tiny data and model")
    args = parser.parse_args()
    out_path = results_path(args.out, RESULTS, args.quick)
    out = with_quick_sets(args.quick, lambda sets: measure(args, sets), llm=False)
    write_json(out_path, out)
    print(out)


if __name__ == "__main__":
    main()
