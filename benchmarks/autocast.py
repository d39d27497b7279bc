"""Explicit casts or autocast? DARec training steps in three precision schemes, side by side.

    python benchmarks/autocast.py                  # Beauty batches, full SmolLM2, DARec_base
    python benchmarks/autocast.py --layers 4 --item-tokens 8 --rounds 1   # SmolLM2, 4 layers
    python benchmarks/autocast.py --quick --out /tmp/a.json   # smoke run: tiny data and LLM

The design (docs/design.md) keeps trainable parameters, optimizer state and losses in fp32 and
leaves open how the bf16 backbone meets them. Three ways, on the same batches (throughput.py's:
sequences of 50 items drawn by Beauty's popularity, benchlib.darec_steps), one process, timed in
alternation so that machine noise hits all three alike:

- ``explicit`` (what DARec does): frozen backbone weights held in bf16, the trainable parts
  (adapters, tokens, heads, the CF model) in fp32 with explicit casts at their boundaries;
- ``explicit+autocast``: the same model run under ``torch.autocast(bfloat16)``, so the
  trainable parts' matmuls run in bf16 too (their weights are cast at every call);
- ``amp``: classic mixed precision, the backbone held in fp32 and cast to bf16 by autocast at
  every call.

Writes ``benchmarks/results/autocast.json`` (step seconds per scheme and round, the loss of each
scheme on the first batch from the same start) and, with ``--write-docs``, a table in
docs/results.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from typing import Any

import torch
from benchlib.darec_steps import Bench, adamw, add_bench_args, fill_frozen_cache, layouts
from benchlib.machine import rss_mb
from benchlib.paths import DOC, RESULTS_DIR
from benchlib.quick import add_quick_args, with_quick_sets
from benchlib.records import arguments, read_table, replace_block, results_path, write_json

from darec.data.batching import TrainBatch
from darec.models.darec import DARec

RESULTS = RESULTS_DIR / "autocast.json"
SCHEMES = {  # name -> (backbone dtype, autocast on)
    "explicit": ("bf16", False),
    "explicit+autocast": ("bf16", True),
    "amp": ("fp32", True),
}


def precision(on: bool) -> contextlib.AbstractContextManager[object]:
    return torch.autocast("cpu", dtype=torch.bfloat16) if on else contextlib.nullcontext()


class Runner:
    """One model and optimizer per scheme; ``step`` times one training step."""

    def __init__(
        self, bench: Bench, layout: str, dtype: str, autocast: bool, batches: list[TrainBatch]
    ) -> None:
        self.model: DARec = bench.model(bench.config(dtype, adapters=layout))
        fill_frozen_cache(self.model, batches)
        self.autocast = autocast
        self.opt = adamw(self.model)
        self.model.train()

    def first_loss(self, batch: TrainBatch) -> float:
        with torch.no_grad(), precision(self.autocast):
            return float(self.model.loss(batch))

    def step(self, batch: TrainBatch) -> float:
        start = time.perf_counter()
        with precision(self.autocast):
            loss = self.model.loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - start


def docs_block(out: dict[str, Any]) -> str:
    lines = [
        "| scheme | backbone weights | trainable parts compute in | step s (mean) | steps/s vs "
        "explicit | loss on batch 1 |",
        "|---|---|---|---|---|---|",
    ]
    base = out["schemes"]["explicit"]["mean_step_seconds"]
    for name, r in out["schemes"].items():
        lines.append(
            f"| {name} | {r['backbone']} | {'bf16' if r['autocast'] else 'fp32'} | "
            f"{r['mean_step_seconds']} | {base / r['mean_step_seconds']:.2f} | "
            f"{r['first_loss']:.4f} |"
        )
    return "\n".join(lines)


def measure(args: argparse.Namespace, sets: list[str]) -> dict[str, Any]:
    """The three schemes on the same batches, timed in alternation; ``sets``: overrides added
    to every config (the quick mode's tiny data and LLM)."""
    torch.set_num_threads(args.threads)
    bench = Bench(args, sets)
    batches = [bench.batch(seed, args.batch, bench.length) for seed in range(args.rounds + 1)]
    layout = layouts(bench.num_layers())[args.layout]
    runners = {name: Runner(bench, layout, *spec, batches) for name, spec in SCHEMES.items()}
    losses = {name: r.first_loss(batches[0]) for name, r in runners.items()}
    for r in runners.values():  # warm-up step, not timed
        r.step(batches[0])
    times: dict[str, list[float]] = {name: [] for name in runners}
    for b in batches[1:]:  # alternate, so noise hits every scheme alike
        for name, r in runners.items():
            times[name].append(round(r.step(b), 3))
            print(name, times[name][-1], flush=True)
    out: dict[str, Any] = {
        "torch": torch.__version__,
        "args": arguments(args),
        "layout": args.layout,
        "schemes": {
            name: {
                "backbone": SCHEMES[name][0],
                "autocast": SCHEMES[name][1],
                "step_seconds": times[name],
                "mean_step_seconds": round(statistics.mean(times[name]), 3),
                "first_loss": round(losses[name], 5),
            }
            for name in runners
        },
        "peak_rss_mb": rss_mb(),
    }
    base = out["schemes"]["explicit"]["mean_step_seconds"]
    out["speed_vs_explicit"] = {
        name: round(base / r["mean_step_seconds"], 3) for name, r in out["schemes"].items()
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_args(parser)
    parser.add_argument("--layout", default="base", choices=["base", "top_quarter"])
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per scheme")
    parser.add_argument("--write-docs", action="store_true", help="only rewrite the docs table")
    add_quick_args(parser, RESULTS, "tiny data and LLM, 4 layers, 1 round")
    args = parser.parse_args()
    if args.write_docs:
        replace_block(DOC, "autocast", docs_block(read_table(args.out or RESULTS)), "")
        return
    out_path = results_path(args.out, RESULTS, args.quick)
    if args.quick:
        args.layers, args.rounds, args.item_tokens = 4, 1, 8
    out = with_quick_sets(args.quick, lambda sets: measure(args, sets))
    write_json(out_path, out)
    print(json.dumps(out["speed_vs_explicit"]))


if __name__ == "__main__":
    main()
