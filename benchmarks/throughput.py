"""DARec throughput: cached against straightforward paths, bf16 against fp32, side by side.

    python benchmarks/throughput.py                 # Beauty from ../shared/data, default backbone
    python benchmarks/throughput.py --quick --out /tmp/t.json   # smoke run: tiny data and LLM

Everything is measured in one process on one machine, one thing at a time, so the ratios are
fair even on a noisy machine. Writes ``benchmarks/results/throughput.json`` and (with
``--write-docs``) the throughput section of docs/results.md. What is measured:

1. matmul ceilings (GFLOP/s) in fp32 and bf16 (benchmarks/matmul_ceiling.py's shapes);
2. training steps (loss + backward + AdamW) of the item-once ("cached") and the full-stream
   ("straightforward") paths on the same batches: sequences of 50 items drawn by Beauty's item
   popularity, the default item token budget and the default backbone, for DARec_base (serial
   adapters in every layer) and adapters in the top quarter of the layers, in bf16 and fp32.
   FLOPs are the matmul/attention FLOPs actually run (torch's FlopCounterMode, one extra step);
3. recommend latency per user (p50/p95) and evaluation users/s with and without the catalog
   cache, and one streamed interaction against a full recompute;
4. peak memory (max RSS) after each phase;
5. Beauty: evaluation of all test users and one training epoch (top-quarter layout, cached
   path, bf16) -- the epoch from timed real batches times the number of batches.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from benchlib.darec_steps import (
    Bench,
    adamw,
    add_bench_args,
    fill_frozen_cache,
    layouts,
    train_step,
    uncached_user_vectors,
)
from benchlib.machine import QUICK_SHAPES, SHAPES, gflops, rss_mb
from benchlib.paths import DOC, RESULTS_DIR
from benchlib.quick import add_quick_args, with_quick_sets
from benchlib.records import arguments, replace_block, results_path, write_json
from torch.utils.flop_counter import FlopCounterMode

from darec.data.batching import TrainBatch, make_batch, training_windows
from darec.evaluation.evaluator import evaluate
from darec.models.darec import DARec
from darec.models.darec.catalog import CatalogKV

RESULTS = RESULTS_DIR / "throughput.json"


def train_steps(model: DARec, batches: list[TrainBatch]) -> dict[str, Any]:
    """Warm-up on batches[0] (counting its FLOPs), then time the others."""
    opt = adamw(model)
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:  # the warm-up step: its FLOPs are those of every step on such a batch
        train_step(model, opt, batches[0])
    times = [train_step(model, opt, b) for b in batches[1:]]
    seconds = statistics.mean(times)
    flops = counter.get_total_flops() * len(batches[1].inputs) / len(batches[0].inputs)
    b = batches[1]
    width = model.item_tokens.shape[1]
    lengths = model.item_lengths[b.inputs]
    # tokens of the straightforward layout: per real step CF + words + ALIGN + stream tokens
    tokens = int(((lengths + 2 + model.per_step) * (b.inputs > 0)).sum())
    distinct = int(torch.unique(torch.cat([b.inputs.flatten(), b.targets.flatten()])).numel())
    return {
        "step_seconds": round(seconds, 3),
        "sequences_per_s": round(len(b.inputs) / seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "gflop_per_step": round(flops / 1e9, 1),
        "achieved_gflops": round(flops / 1e9 / seconds, 1),
        "batch": len(b.inputs),
        "distinct_items": distinct,
        "item_table_width": width,
        "timed_steps": len(times),
    }


def training(bench: Bench, num_layers: int) -> list[dict[str, Any]]:
    a = bench.args
    batches = [bench.batch(seed, a.batch, bench.length) for seed in range(a.steps + 1)]
    rows = []
    for dtype in a.dtypes.split(","):
        for name, layout in layouts(num_layers).items():
            if name not in a.layouts.split(","):
                continue
            for path, item_once in (("cached", True), ("straightforward", False)):
                model = bench.model(bench.config(dtype, adapters=layout))
                model.item_once = item_once  # the frozen-layer cache stays on for both
                per_item = fill_frozen_cache(model, batches)
                row = {"dtype": dtype, "layout": name, "path": path, **train_steps(model, batches)}
                if per_item:
                    row["frozen_pass_seconds_catalog"] = round(per_item * (model.num_items + 1), 1)
                row["peak_rss_mb"] = rss_mb()
                print(json.dumps(row), flush=True)
                rows.append(row)
                del model
    return rows


def timed(fn: Any, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 2)


def inference(bench: Bench, num_layers: int) -> dict[str, Any]:
    """Top-quarter layout, bf16: cold users, evaluation and streaming, cached vs uncached."""
    a = bench.args
    cfg = bench.config("bf16", adapters=layouts(num_layers)["top_quarter"])
    model = bench.model(cfg)
    model.eval()
    out: dict[str, Any] = {"layout": "top_quarter", "dtype": "bf16"}
    with torch.inference_mode():
        start = time.perf_counter()
        catalog = model.catalog()
        out["catalog_build_seconds"] = round(time.perf_counter() - start, 1)
        out["catalog_cache_mb"] = round(catalog.nbytes / 2**20, 1)
        assert catalog.has_kv, "the catalog cache does not fit darec.catalog_cache_mb"
        users = [bench.batch(1000 + i, 1, bench.length).inputs for i in range(a.users)]
        top = catalog.vectors  # scoring = one matmul against the catalog, both ways

        def cached(h: torch.Tensor) -> None:
            (model.encode_users(h) @ top.T).topk(10)

        def uncached(h: torch.Tensor, frozen_cache: bool = False) -> None:
            (uncached_user_vectors(model, h, frozen_cache) @ top.T).topk(10)

        cached(users[0])
        uncached(users[0])
        uncached(users[0], True)
        t_cached = [timed(lambda h=h: cached(h), 1)[0] for h in users]
        t_uncached = [timed(lambda h=h: uncached(h), 1)[0] for h in users]
        t_frozen = [timed(lambda h=h: uncached(h, True), 1)[0] for h in users]
        out["recommend_ms_cached"] = {"p50": pct(t_cached, 50), "p95": pct(t_cached, 95)}
        out["recommend_ms_uncached"] = {"p50": pct(t_uncached, 50), "p95": pct(t_uncached, 95)}
        out["recommend_ms_frozen_cache_only"] = {"p50": pct(t_frozen, 50), "p95": pct(t_frozen, 95)}
        # streaming: a user with 49 items gets a 50th; update + top-10 against a full
        # recompute of the 50-item history without the catalog cache
        stream_t = []
        for h in users:
            state = model.stream_start(h[0, :-1])
            item = int(h[0, -1])
            start = time.perf_counter()
            new = model.stream_step(state, item)
            (new.user[None] @ top.T).topk(10)
            stream_t.append(time.perf_counter() - start)
        out["stream_ms"] = {"p50": pct(stream_t, 50), "p95": pct(stream_t, 95)}
        out["full_recompute_ms"] = out["recommend_ms_uncached"]
    # evaluation users/s on the first test users, both ways
    test = bench.split.test
    subset = type(test)(
        test.users[: a.eval_users], test.histories[: a.eval_users], test.targets[: a.eval_users]
    )
    rates = {}
    vectors_only = CatalogKV(catalog.vectors, catalog.first_layer)  # the per-batch path
    for name, cache in (("cached", catalog), ("uncached", vectors_only)):
        model.attach_catalog(cache)  # built once per model, not per user: excluded here
        start = time.perf_counter()
        evaluate(model, subset, bench.base.eval, bench.length)
        rates[name] = round(a.eval_users / (time.perf_counter() - start), 2)
    out["eval_users_per_s"] = rates
    out["peak_rss_mb"] = rss_mb()
    return out


def beauty_costs(bench: Bench, num_layers: int) -> dict[str, Any]:
    """One epoch (timed real batches x batches per epoch) and all test users' evaluation."""
    a = bench.args
    cfg = bench.config("bf16", adapters=layouts(num_layers)["top_quarter"])
    model = bench.model(cfg)
    windows, owners = training_windows(bench.split.train, bench.length, cfg.train.windows)
    size = cfg.train.batch_size
    steps = math.ceil(len(windows) / size)
    gen = np.random.default_rng(0)
    batches = []
    for _ in range(a.epoch_steps + 1):
        idx = gen.choice(len(windows), size=min(size, len(windows)), replace=False)
        batches.append(make_batch([windows[i] for i in idx], owners[idx], bench.length))
    per_item = fill_frozen_cache(model, batches)
    timing = train_steps(model, batches)
    return {
        "beauty_windows": len(windows),
        "beauty_batch_size": size,
        "beauty_steps_per_epoch": steps,
        "beauty_step_seconds": timing["step_seconds"],
        "beauty_epoch_seconds": round(timing["step_seconds"] * steps, 1),
        "beauty_frozen_pass_seconds": round(per_item * (model.num_items + 1), 1),
        "beauty_test_users": len(bench.split.test.targets),
    }


def docs_block(out: dict[str, Any]) -> str:
    """The docs/results.md table of a throughput.json record."""
    lines = [
        "| dtype | layout | path | batch | seq/s | tokens/s | GFLOP/step | GFLOP/s | step s "
        "| distinct |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["training"]:
        lines.append(
            f"| {r['dtype']} | {r['layout']} | {r['path']} | {r['batch']} | "
            f"{r['sequences_per_s']:.3f} | "
            f"{r['tokens_per_s']:.0f} | {r['gflop_per_step']:.0f} | {r['achieved_gflops']:.0f} | "
            f"{r['step_seconds']:.1f} | {r['distinct_items']} |"
        )
    inf = out["inference"]
    ceil = out["ceilings_gflops"]
    lines += [
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| matmul ceiling fp32 / bf16 (GFLOP/s) | {ceil['fp32']:.0f} / {ceil['bf16']:.0f} | |",
        f"| `train_speedup` (top quarter, cached / straightforward, bf16) | "
        f"{out['train_speedup']} | >= 5 |",
        "| same, by batch size (sequences of 50 items) | "
        + ", ".join(f"{b}: {v}" for b, v in out.get("train_speedup_by_batch", {}).items())
        + " | |",
        f"| `train_speedup_base` (DARec_base) | {out['train_speedup_base']} | >= 1.5 |",
        f"| `infer_speedup` (cold user, p50, cached / uncached) | {out['infer_speedup']} | >= 15 |",
        f"| same, against the frozen-prefix cache alone | {out['infer_speedup_vs_frozen_cache']} "
        "| |",
        f"| `stream_speedup` (one interaction / full recompute, p50) | "
        f"{out['stream_speedup']} | >= 100 |",
        f"| `precision_speedup` (bf16 / fp32, cached, DARec_base) | "
        f"{out['precision_speedup']} | >= 2 |",
        f"| `mfu` (DARec_base cached bf16 step / bf16 ceiling) | {out['mfu']} | >= 0.4 |",
        f"| recommend p50 / p95 ms, cached | {inf['recommend_ms_cached']['p50']} / "
        f"{inf['recommend_ms_cached']['p95']} | |",
        f"| recommend p50 / p95 ms, uncached | {inf['recommend_ms_uncached']['p50']} / "
        f"{inf['recommend_ms_uncached']['p95']} | |",
        f"| recommend p50 / p95 ms, frozen-prefix cache only | "
        f"{inf['recommend_ms_frozen_cache_only']['p50']} / "
        f"{inf['recommend_ms_frozen_cache_only']['p95']} | |",
        f"| streamed interaction p50 / p95 ms | {inf['stream_ms']['p50']} / "
        f"{inf['stream_ms']['p95']} | |",
        f"| evaluation users/s, cached / uncached | {inf['eval_users_per_s']['cached']} / "
        f"{inf['eval_users_per_s']['uncached']} | |",
        f"| catalog cache: build s, size MB | {inf['catalog_build_seconds']}, "
        f"{inf['catalog_cache_mb']} | |",
        f"| `beauty_eval_seconds` ({out['beauty_test_users']} test users) | "
        f"{out['beauty_eval_seconds']} | |",
        f"| `beauty_epoch_seconds` ({out['beauty_steps_per_epoch']} steps of "
        f"{out['beauty_batch_size']} windows) | {out['beauty_epoch_seconds']} | |",
        f"| peak RSS (MB) | {out['peak_rss_mb']:.0f} | |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_args(parser)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per configuration")
    parser.add_argument("--users", type=int, default=20, help="users for latency percentiles")
    parser.add_argument("--eval-users", type=int, default=256)
    parser.add_argument("--epoch-steps", type=int, default=2)
    parser.add_argument("--dtypes", default="bf16,fp32", help="training phase: these dtypes")
    parser.add_argument(
        "--layouts", default="base,top_quarter", help="training phase: these layouts"
    )
    parser.add_argument(
        "--phases",
        default="training,inference,beauty",
        help="rerun only these phases, updating the record in --out",
    )
    add_quick_args(parser, RESULTS, "tiny data and LLM, 4 layers, 1 step")
    parser.add_argument(
        "--write-docs", action="store_true", help="only rewrite docs/results.md from --out"
    )
    args = parser.parse_args()
    if args.write_docs:
        record = json.loads((args.out or RESULTS).read_text())
        replace_block(DOC, "throughput", docs_block(record), "")
        return
    out_path = results_path(args.out, RESULTS, args.quick)
    if args.quick:
        args.layers, args.batch, args.steps, args.users = 4, 2, 1, 3
        args.eval_users, args.epoch_steps, args.item_tokens = 16, 1, 8
    out = with_quick_sets(args.quick, lambda sets: measure(args, out_path, sets))
    write_json(out_path, out)
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, (dict, list))}, indent=1))


def measure(args: argparse.Namespace, out_path: Path, sets: list[str]) -> dict[str, Any]:
    """The phases of ``args.phases``; a partial rerun updates the record in ``out_path``.
    ``sets``: overrides added to every config (the quick mode's tiny data and LLM)."""
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out: dict[str, Any] = {"threads": args.threads, "torch": torch.__version__}
    out["args"] = arguments(args)
    shapes = QUICK_SHAPES if args.quick else SHAPES[:3]
    out["ceilings_gflops"] = {
        name: max(gflops(*shape, dtype, repeats=3) for shape in shapes)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    print(json.dumps(out["ceilings_gflops"]), flush=True)
    bench = Bench(args, sets)
    num_layers = bench.num_layers()
    out["backbone_layers"] = num_layers
    phases = args.phases.split(",")
    if phases != ["training", "inference", "beauty"]:  # update an earlier record
        earlier = json.loads(out_path.read_text())
        if "training" not in phases:  # MFU uses the ceiling measured beside the training rows
            out["ceilings_gflops"] = earlier["ceilings_gflops"]
        out = earlier | {"ceilings_gflops": out["ceilings_gflops"]}
        if "train_speedup_by_batch" not in out:  # records from before it was kept
            out["train_speedup_by_batch"] = {
                str(earlier["args"]["batch"]): earlier["train_speedup"]
            }
        out.setdefault("partial_reruns", []).append(phases)
    if "training" in phases:
        rows = training(bench, num_layers)
        for r in rows:  # MFU divides by the ceiling measured beside the row
            r["ceiling_gflops"] = max(out["ceilings_gflops"].values())
        # a partial rerun replaces the rows it measured and keeps the others
        fresh = {(r["dtype"], r["layout"], r["path"]) for r in rows}
        kept = [
            r for r in out.get("training", []) if (r["dtype"], r["layout"], r["path"]) not in fresh
        ]
        out["training"] = kept + rows
    if "inference" in phases:
        out["inference"] = inference(bench, num_layers)
        print(json.dumps(out["inference"]), flush=True)
    train_rows, inf = out["training"], out["inference"]
    if "beauty" in phases:
        out |= beauty_costs(bench, num_layers)
    # all test users at the measured cached rate, plus building the catalog cache once
    rate, build = inf["eval_users_per_s"]["cached"], inf["catalog_build_seconds"]
    out["beauty_eval_seconds"] = round(out["beauty_test_users"] / rate + build, 1)

    def row(dtype: str, layout: str, path: str) -> dict[str, Any]:
        return next(
            r for r in train_rows if (r["dtype"], r["layout"], r["path"]) == (dtype, layout, path)
        )

    def speed(dtype: str, layout: str, path: str) -> float:
        return float(row(dtype, layout, path)["sequences_per_s"])

    best = max(out["ceilings_gflops"].values())

    def mfu(r: dict[str, Any]) -> float:
        return round(r["achieved_gflops"] / r.get("ceiling_gflops", best), 3)

    train_speedup = round(
        speed("bf16", "top_quarter", "cached") / speed("bf16", "top_quarter", "straightforward"), 2
    )

    out |= {
        "train_speedup": train_speedup,
        "train_speedup_base": round(
            speed("bf16", "base", "cached") / speed("bf16", "base", "straightforward"), 2
        ),
        "infer_speedup": round(
            inf["recommend_ms_uncached"]["p50"] / inf["recommend_ms_cached"]["p50"], 2
        ),
        "infer_speedup_vs_frozen_cache": round(
            inf["recommend_ms_frozen_cache_only"]["p50"] / inf["recommend_ms_cached"]["p50"], 2
        ),
        "stream_speedup": round(inf["full_recompute_ms"]["p50"] / inf["stream_ms"]["p50"], 2),
        "stream_speedup_vs_cached_cold": round(
            inf["recommend_ms_cached"]["p50"] / inf["stream_ms"]["p50"], 2
        ),
        "precision_speedup": round(
            speed("bf16", "base", "cached") / speed("fp32", "base", "cached"), 2
        ),
        "train_speedup_by_batch": out.get("train_speedup_by_batch", {})
        | {str(row("bf16", "top_quarter", "cached")["batch"]): train_speedup},
        "mfu": mfu(row("bf16", "base", "cached")),
        "mfu_top_quarter": mfu(row("bf16", "top_quarter", "cached")),
        "peak_rss_mb": max(rss_mb(), out.get("peak_rss_mb", 0.0)),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return out


if __name__ == "__main__":
    main()
