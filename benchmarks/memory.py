"""Peak memory and step time of one DARec training step, with and without activation checkpointing.

    python benchmarks/memory.py                         # Amazon Beauty, batch 256
    python benchmarks/memory.py --dataset ml-100k       # the demo's DARec, batch 128
    python benchmarks/memory.py --quick --out /tmp/m.json   # smoke run: tiny data and LLM

The batch is the training loader's heaviest: the ``--batch`` longest training windows (the
loader groups windows of similar length, so such a batch occurs every epoch); it holds the
most distinct items, and every distinct item runs through the trainable layers. Each mode runs
in its own child process, so ``peak_rss_mb`` (max RSS) is that mode's alone; the frozen-layer
cache is filled for the batch's items only (its full-catalog table is allocated all the same).
The settings are darec_bench.py's DARec row of the dataset (benchlib/settings.py; the demo
layout: 8 layers, adapters in the top two) without its CF start, which memory does not depend
on. Writes the dataset's entry of ``benchmarks/results/memory.json`` and the memory section of
docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from benchlib.darec_steps import adamw, fill_frozen_cache, train_step
from benchlib.machine import rss_mb
from benchlib.paths import DOC, RESULTS_DIR
from benchlib.quick import add_quick_args, with_quick_sets
from benchlib.records import (
    add_child_args,
    child_json,
    child_main,
    read_table,
    replace_block,
    results_path,
    write_json,
)
from benchlib.settings import BENCHES

from darec.config import Config, apply_overrides
from darec.data.batching import make_batch, training_windows
from darec.data.split import leave_one_out
from darec.models.base import ModelContext
from darec.models.darec import DARec
from darec.run import load_data

RESULTS = RESULTS_DIR / "memory.json"
MODES = {"plain": "never", "checkpointed": "always"}


def one(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Child process: ``args.steps`` timed steps after a warm-up step, on the heaviest batch."""
    cfg = apply_overrides(
        Config(),
        [
            *BENCHES[args.dataset].darec_without_cf_start(),
            *([f"train.batch_size={args.batch}"] if args.batch else []),
            f"darec.checkpoint_activations={MODES[mode]}",
            *args.set,
        ],
    )
    torch.set_num_threads(cfg.train.threads)
    dataset = load_data(cfg)
    split = leave_one_out(dataset)
    windows, owners = training_windows(split.train, cfg.model.max_seq_len, cfg.train.windows)
    size = cfg.train.batch_size
    longest = sorted(range(len(windows)), key=lambda i: -len(windows[i]))[:size]
    batch = make_batch([windows[i] for i in longest], owners[longest], cfg.model.max_seq_len)
    torch.manual_seed(0)
    model = DARec(cfg, ModelContext(dataset.num_items, dataset.catalog, dataset.key, None))
    fill_frozen_cache(model, [batch])
    model.train()
    opt = adamw(model)
    before = rss_mb()
    train_step(model, opt, batch)  # a warm-up
    times = [train_step(model, opt, batch) for _ in range(args.steps)]
    items = torch.unique(torch.cat([batch.inputs.flatten(), batch.targets.flatten()]))
    return {
        "mode": mode,
        "batch": size,
        "length": batch.inputs.shape[1],
        "real_steps": int((batch.inputs > 0).sum()),
        "distinct_items": len(items),
        "rss_before_steps_mb": before,
        "peak_rss_mb": rss_mb(),
        "step_seconds": round(statistics.mean(times), 2),
        "timed_steps": len(times),
    }


def docs_block(results: dict[str, Any]) -> str:
    lines = [
        "### Memory: activation checkpointing",
        "",
        "One training step of DARec (`benchmarks/memory.py --dataset D`; darec_bench's layout: "
        "8 layers, adapters in the top two) on the loader's heaviest batch: the longest "
        "windows, so the most distinct items. Each mode runs in its own process (peak = max "
        "RSS of that process, model and data included); a step is the mean of the timed steps "
        "after a warm-up.",
        "",
        "| data | batch (distinct items) | `darec.checkpoint_activations` | peak RSS (GB) "
        "| step (s) |",
        "|---|---|---|---|---|",
    ]
    for dataset, out in results.items():
        for r in out["rows"]:
            lines.append(
                f"| {dataset} | {r['batch']} ({r['distinct_items']}) | {MODES[r['mode']]} "
                f"| {r['peak_rss_mb'] / 1024:.1f} | {r['step_seconds']} |"
            )
    lines.append("")
    for dataset, out in results.items():
        lines.append(
            f"- {dataset}: checkpointing divides the peak by {out['peak_ratio']:.2f} and "
            f"multiplies the step time by {out['time_ratio']:.2f}."
        )
    return "\n".join(lines)


def measure(args: argparse.Namespace, results: Path, sets: list[str]) -> None:
    """Both modes, each in its own child process (``sets`` added to its config); the dataset's
    entry of ``results`` replaced."""
    rows = []
    for mode in MODES:
        cmd = [sys.executable, __file__, "--one", mode, "--dataset", args.dataset]
        cmd += ["--batch", str(args.batch), "--steps", str(args.steps)]
        cmd += [f"--set={s}" for s in sets]
        rows.append(child_json(cmd))
        print(json.dumps(rows[-1]), flush=True)
    plain, ckpt = rows
    table = read_table(results)
    table[args.dataset] = {
        "settings": BENCHES[args.dataset].darec_without_cf_start(),
        "rows": rows,
        "peak_ratio": round(plain["peak_rss_mb"] / ckpt["peak_rss_mb"], 2),
        "time_ratio": round(ckpt["step_seconds"] / plain["step_seconds"], 2),
    }
    write_json(results, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="amazon-beauty", choices=list(BENCHES))
    parser.add_argument("--batch", type=int, default=0, help="0: the row's train.batch_size")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--write-docs", action="store_true", help="only rewrite the section")
    add_quick_args(parser, RESULTS, "tiny data and LLM, 1 step")
    add_child_args(parser)
    args = parser.parse_args()
    if child_main(args, lambda: one(args.one, args)):
        return
    results = results_path(args.out, RESULTS, args.quick)
    if args.quick:
        args.dataset, args.steps = "ml-100k", 1
    if args.quick or not args.write_docs:
        with_quick_sets(args.quick, lambda sets: measure(args, results, sets))
    if args.quick:
        print(f"wrote {results}")
        return
    replace_block(DOC, "memory", docs_block(read_table(results)), "# Results\n")


if __name__ == "__main__":
    main()
