"""The full-catalog cross-entropy: chunked (``darec.models.fused_ce``) against full logits.

    python benchmarks/loss_speed.py
    python benchmarks/loss_speed.py --quick --out /tmp/l.json     # smoke run: seconds

Two measurements, each side by side in one run so that machine noise hits both ways alike:

- **time**: a training step (forward + backward) of the loss alone and of a whole SASRec step
  (the Beauty recipe's model and Adam), the two ways alternated ``--repeats`` times in one
  process with ``--threads`` threads; the median seconds and the ratio;
- **memory**: each way's peak RSS in a child process of its own (the full way holds P x N logits,
  their softmax and its gradient; the chunked way a few cache-sized chunks).

Shapes: Beauty's (12,101 items, a batch of 512 one-window users with Beauty's lengths: about
4,600 positions with a target, hidden 64) and ML-100K's (1,682 items). Writes
``benchmarks/results/loss_speed.json`` with the CPU's bf16/AMX flags.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from benchlib.machine import cpu_bf16_flags, rss_mb
from benchlib.paths import DOC, RESULTS_DIR
from benchlib.quick import add_quick_args
from benchlib.records import (
    add_child_args,
    child_json,
    child_main,
    replace_block,
    results_path,
    write_json,
)
from benchlib.settings import SASREC_RECIPE

from darec.config import Config, apply_overrides
from darec.models.fused_ce import linear_cross_entropy
from darec.models.sasrec import SASRec
from darec.run.checkpoint import provenance

RESULTS = RESULTS_DIR / "loss_speed.json"
SHAPES = {"amazon-beauty": (12_101, 4_600, 64), "ml-100k": (1_682, 4_600, 64)}
"""(items, positions with a target, hidden size) of a batch."""
QUICK_SHAPES = {"tiny": (300, 200, 16)}
WAYS = ("full", "chunked")

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def full_logits(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(h @ w.T, y)


LOSSES: dict[str, Loss] = {"full": full_logits, "chunked": linear_cross_entropy}


def _batch(items: int, positions: int, hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded inputs (B, 50) and targets with about ``positions`` targets in all."""
    gen = torch.Generator().manual_seed(0)
    rows, length = 512, 50
    lengths = (positions // rows) * torch.ones(rows, dtype=torch.long)
    lengths[: positions % rows] += 1
    ids = torch.randint(1, items + 1, (rows, length + 1), generator=gen)
    keep = torch.arange(length + 1)[None, :] >= (length - lengths)[:, None]
    ids = ids * keep
    inputs, targets = ids[:, :-1], ids[:, 1:].clone()
    targets[inputs == 0] = 0
    return inputs, targets


def loss_step(way: str, items: int, positions: int, hidden: int) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(positions, hidden, generator=gen, requires_grad=True)
    w = (0.1 * torch.randn(items, hidden, generator=gen)).requires_grad_()
    y = torch.randint(0, items, (positions,), generator=gen)

    def step() -> None:
        h.grad = w.grad = None
        LOSSES[way](h, w, y).backward()

    return step


def sasrec_step(way: str, items: int, positions: int, hidden: int) -> Callable[[], None]:
    torch.manual_seed(0)
    cfg = apply_overrides(Config(), [*SASREC_RECIPE, f"model.hidden_size={hidden}"])
    model = SASRec(cfg.model, items)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    inputs, targets = _batch(items, positions, hidden)
    valid = targets != 0

    def step() -> None:
        states = model(inputs)[valid]
        loss = LOSSES[way](states, model.item_embedding.weight[1:], targets[valid] - 1)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


STEPS = {"loss": loss_step, "sasrec_step": sasrec_step}


def timings(shapes: dict[str, tuple[int, int, int]], repeats: int) -> list[dict[str, Any]]:
    """Median seconds of each (shape, what, way), the ways alternated step by step."""
    out = []
    for name, shape in shapes.items():
        for what, make in STEPS.items():
            steps = {way: make(way, *shape) for way in WAYS}
            for step in steps.values():
                step()  # warm-up
            seconds: dict[str, list[float]] = {way: [] for way in WAYS}
            for _ in range(repeats):
                for way, step in steps.items():
                    start = time.perf_counter()
                    step()
                    seconds[way].append(time.perf_counter() - start)
            median = {way: statistics.median(s) for way, s in seconds.items()}
            out.append(
                {
                    "shape": name,
                    "items": shape[0],
                    "positions": shape[1],
                    "hidden": shape[2],
                    "what": what,
                    "median_seconds": median,
                    "speedup": median["full"] / median["chunked"],
                }
            )
    return out


def peak_memory(shape: tuple[int, int, int], way: str) -> dict[str, float]:
    """Child process: peak RSS before and after three loss steps of ``way``."""
    step = loss_step(way, *shape)
    before = rss_mb()
    for _ in range(3):
        step()
    return {"before_mb": before, "peak_mb": rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: one core)")
    add_quick_args(parser, RESULTS, "one tiny shape, 2 repeats")
    add_child_args(parser, nargs=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.one:
        name, way = args.one
        child_main(args, lambda: peak_memory(shapes[name], way))
        return
    out = results_path(args.out, RESULTS, args.quick)
    memory = {
        name: {
            way: child_json(
                [sys.executable, __file__, "--one", name, way, *(["--quick"] if args.quick else [])]
            )
            for way in WAYS
        }
        for name in shapes
    }
    record = {
        "cpu_bf16_flags": cpu_bf16_flags(),
        "load_average_at_start": os.getloadavg(),
        "threads": args.threads,
        "repeats": 2 if args.quick else args.repeats,
        "timings": timings(shapes, 2 if args.quick else args.repeats),
        "peak_rss_mb": memory,
        "provenance": provenance(),
    }
    write_json(out, record)
    if not args.quick:
        replace_block(DOC, "loss-speed", markdown(record), "# Results\n\n")
    print(f"wrote {out}")


def markdown(record: dict[str, Any]) -> str:
    lines = [
        f"CPU flags: `{record['cpu_bf16_flags'] or 'none'}`, {record['threads']} thread(s), "
        f"median of {record['repeats']} alternated steps, load average at the start "
        f"{record['load_average_at_start'][0]:.1f}.",
        "",
        "| shape | step | full logits s | chunked s | speedup | peak RSS MB full / chunked |",
        "|---|---|---|---|---|---|",
    ]
    for t in record["timings"]:
        mem = record["peak_rss_mb"][t["shape"]]
        rss = f"{mem['full']['peak_mb']:.0f} / {mem['chunked']['peak_mb']:.0f}"
        lines.append(
            f"| {t['shape']} ({t['items']} items, {t['positions']} positions) | {t['what']} "
            f"| {t['median_seconds']['full']:.3f} | {t['median_seconds']['chunked']:.3f} "
            f"| {t['speedup']:.2f}x | {rss if t['what'] == 'loss' else '-'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
