"""Which of the published BERT4Rec code's four model choices matters: each one left out in turn.

The Beauty ``bert4rec`` settings carry four switches (``BERT4REC_CODE`` in
``benchlib.settings``) that together take validation NDCG@10 at epoch 50 from 0.0398 to 0.0456
(``bert4rec_code.json``). This script trains the recorded settings (``accuracy.run_sets``) with
all four, then with each one back at our model's default, for ``--epochs`` epochs without early
stopping, and records validation NDCG@10 and the training loss at every validation. The test
split is never read. One seed: a difference smaller than the spread between seeds says nothing.

    python benchmarks/bert4rec_switches.py                    # 5 runs of 50 epochs, ~15 min each
    python benchmarks/bert4rec_switches.py --variants all,-model.init=xavier-clamped
    python benchmarks/bert4rec_switches.py --quick --out /tmp/b.json   # smoke run: tiny data

Records go to ``benchmarks/results/bert4rec_switches.json`` (one per variant, kept as each
finishes: an interrupted script re-run skips the finished variants; ``--force`` retrains them),
a table to ``docs/results.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from accuracy import run_sets
from benchlib.machine import cpu_bf16_flags, cpu_model
from benchlib.paths import DOC, RESULTS_DIR
from benchlib.quick import add_quick_args, with_quick_sets
from benchlib.records import read_table, replace_block, results_path, write_json
from benchlib.settings import BERT4REC_CODE

from darec.config import Config, apply_overrides
from darec.experiment import run_experiment
from darec.run import provenance

RESULTS = RESULTS_DIR / "bert4rec_switches.json"
DATASET = "amazon-beauty"
VARIANTS = ["all", *(f"-{s}" for s in BERT4REC_CODE)]
"""``all``: the four switches; ``-SWITCH``: all but that one (back at the model's default)."""


def left_out(variant: str) -> str | None:
    """The switch ``variant`` leaves out; None for ``all``."""
    switch = variant[1:] if variant.startswith("-") else None
    if (switch is None and variant != "all") or (switch and switch not in BERT4REC_CODE):
        raise ValueError(f"unknown variant {variant!r}: expected one of {VARIANTS}")
    return switch


def variant_sets(variant: str, seed: int) -> list[str]:
    """The run settings of ``variant``: the recorded Beauty settings, less the switch it leaves
    out."""
    switch = left_out(variant)
    return [s for s in run_sets(DATASET, "bert4rec", seed) if s != switch]


def run_variant(variant: str, seed: int, epochs: int, quick_sets: list[str]) -> dict[str, Any]:
    """Train ``variant`` (validation only); its curves and minutes."""
    schedule = [f"train.epochs={epochs}", "train.patience=0"]  # no early stopping
    cfg = apply_overrides(Config(), [*variant_sets(variant, seed), *quick_sets, *schedule])
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        result, _ = run_experiment(cfg, run_dir, test=False)
        events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    losses = {e["epoch"]: e["loss"] for e in events if e.get("event") == "epoch"}
    valid = {h["epoch"]: h["NDCG@10"] for h in result.history}
    return {
        "variant": variant,
        "left_out": left_out(variant),
        "seed": seed,
        "epochs": result.epochs,
        "valid_ndcg10_by_epoch": {str(e): round(v, 4) for e, v in valid.items()},
        "train_loss_by_epoch": {str(e): round(losses[e], 3) for e in valid if e in losses},
        "best_valid_ndcg10": round(result.valid["NDCG@10"], 4),
        "best_epoch": result.best_epoch,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "threads": cfg.train.threads,
        "commit": provenance()["commit"],
    }


def markdown(table: dict[str, Any]) -> str:
    """Validation NDCG@10 of each variant at every validated epoch, and its best."""
    runs = table["runs"]
    epochs = sorted({int(e) for r in runs for e in r["valid_ndcg10_by_epoch"]})
    shown = [e for e in epochs if e % 10 == 0] or epochs
    lines = [
        "| variant | " + " | ".join(f"epoch {e}" for e in shown) + " | best (epoch) |",
        "|---|" + "---|" * (len(shown) + 1),
    ]
    for r in runs:
        curve = r["valid_ndcg10_by_epoch"]
        name = "all four" if r["left_out"] is None else f"without `{r['left_out']}`"
        cells = [f"{curve[str(e)]:.4f}" if str(e) in curve else "" for e in shown]
        best = f"{r['best_valid_ndcg10']:.4f} ({r['best_epoch']})"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {best} |")
    return "\n".join(lines)


def run_all(args: argparse.Namespace, results: Path, quick_sets: list[str]) -> dict[str, Any]:
    """Every variant of ``args`` not yet in ``results`` (all of them with ``--force``); the
    table, written after each run."""
    table = read_table(results)
    runs: dict[str, Any] = {r["variant"]: r for r in table.get("runs", [])}
    for variant in args.variants.split(","):
        if variant in runs and runs[variant]["seed"] == args.seed and not args.force:
            continue
        runs[variant] = run_variant(variant, args.seed, args.epochs, quick_sets)
        print(json.dumps({k: runs[variant][k] for k in ("variant", "best_valid_ndcg10")}))
        table = {
            "what": f"BERT4Rec on {DATASET}: the recorded settings with the published code's four "
            "switches, and with each left out in turn; validation NDCG@10, test never read",
            "cpu": cpu_model(),
            "cpu_bf16_flags": cpu_bf16_flags() or "none",
            "runs": sorted(runs.values(), key=lambda r: VARIANTS.index(r["variant"])),
        }
        write_json(results, table)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--force", action="store_true", help="retrain recorded variants")
    add_quick_args(parser, RESULTS, "tiny data, 2 epochs, every variant")
    args = parser.parse_args()
    results = results_path(args.out, RESULTS, args.quick)
    if args.quick:
        args.epochs = 2
    quick_eval = ["train.eval_every=1"] if args.quick else []
    table = with_quick_sets(
        args.quick, lambda sets: run_all(args, results, [*sets, *quick_eval]), llm=False
    )
    if not args.quick:
        replace_block(DOC, "bert4rec-switches", markdown(table), "# Results\n\n")
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
