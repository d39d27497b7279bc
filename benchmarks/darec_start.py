"""DARec's first training steps from a trained SASRec: validation NDCG@10 every few steps.

DARec starts from its CF model (``cf_residual``, LLM heads at zero): its validation score before
any step is the SASRec's. This script trains the demo's DARec (``DEMO_MODELS["darec"]``) for a
few epochs per setting, validating the start and every ``--every`` steps (the trainer's
``train.validate_first`` and ``train.eval_every_steps``), so one sees whether and how fast
training moves it away from its start. The test split is never read.

    python benchmarks/darec_start.py --cf-run /tmp/d/sasrec            # about 25 minutes
    python benchmarks/darec_start.py --cf-run /tmp/d/sasrec --variants raw
    python benchmarks/darec_start.py --quick --variants raw --out /tmp/s.json   # smoke run

``--cf-run``: a SASRec run folder trained with the demo's settings (``darec demo --models
sasrec -o /tmp/d``); trained there first when it does not exist. Records go to
``benchmarks/results/darec_start.json``, a table to ``docs/results.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchlib.paths import DOC, RESULTS_DIR
from benchlib.quick import add_quick_args, quick_setup
from benchlib.records import read_records, replace_block, results_path, write_json

from darec.experiment import demo_config, run_experiment

RESULTS = RESULTS_DIR / "darec_start.json"

# settings on top of the demo's DARec (frozen CF model started from --cf-run)
VARIANTS: dict[str, list[str]] = {
    "raw": ["darec.head_scale=0"],  # heads on the raw final states (before head_scale existed)
    "head_scale=1": ["darec.head_scale=1"],
    "head_scale=0.1": ["darec.head_scale=0.1"],  # the default
    # the CF model trained on along with DARec (from the same SASRec start)
    "joint": ["darec.head_scale=0.1", "darec.cf_frozen=false"],
}


def run_variant(name: str, cf_run: Path, epochs: int, every: int, quick_sets: list[str]) -> dict:
    settings = [
        f"darec.cf_checkpoint={cf_run}",
        "darec.cf_frozen=true",
        "train.validate_first=true",
        f"train.eval_every_steps={every}",
        f"train.epochs={epochs}",
        "train.patience=0",
        "train.max_minutes=0",
        *VARIANTS[name],
    ]
    cfg = demo_config("darec", extra=settings + quick_sets)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as run_dir:
        result, _ = run_experiment(cfg, Path(run_dir) / "run", test=False)
    return {
        "variant": name,
        "settings": settings,
        "steps": [h["step"] for h in result.history],
        "valid_ndcg10": [round(h["NDCG@10"], 4) for h in result.history],
        "best_step": max(result.history, key=lambda h: h["NDCG@10"])["step"],
        "seconds": round(time.monotonic() - started, 1),
    }


def markdown(records: list[dict]) -> str:
    steps = sorted({s for r in records for s in r["steps"]})
    lines = [
        "| setting | " + " | ".join(f"step {s}" for s in steps) + " |",
        "|---|" + "---|" * len(steps),
    ]
    for r in records:
        by_step = dict(zip(r["steps"], r["valid_ndcg10"], strict=True))
        cells = [f"{by_step[s]:.4f}" if s in by_step else "" for s in steps]
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_all(args: argparse.Namespace, cf_run: Path, results: Path, quick_sets: list[str]) -> list:
    """The CF run (when missing), then every variant; the records of ``results``."""
    if not (cf_run / "metrics.json").exists():
        run_experiment(demo_config("sasrec", extra=quick_sets), cf_run)
    existing = read_records(results)
    for name in args.variants.split(","):
        record = run_variant(name, cf_run, args.epochs, args.every, quick_sets)
        print(json.dumps({k: record[k] for k in ("variant", "valid_ndcg10")}), flush=True)
        existing = [r for r in existing if r["variant"] != name] + [record]
        write_json(results, existing)
    order = list(VARIANTS)
    existing.sort(key=lambda r: order.index(r["variant"]) if r["variant"] in order else 99)
    return existing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cf-run", help="SASRec run folder (created if missing)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--every", type=int, default=5, help="validate every this many steps")
    add_quick_args(parser, RESULTS, "tiny data and LLM, its own CF run")
    args = parser.parse_args()
    results = results_path(args.out, RESULTS, args.quick)
    if args.quick:
        args.epochs, args.every = 1, 2
        with quick_setup() as quick:
            run_all(args, Path(args.cf_run or quick.folder / "sasrec"), results, quick.sets())
        print(f"wrote {results}")
        return
    if not args.cf_run:
        parser.error("--cf-run is required (a SASRec run folder, created if missing)")
    existing = run_all(args, Path(args.cf_run), results, [])
    replace_block(DOC, "darec-start", markdown(existing), "# Results\n\n")


if __name__ == "__main__":
    main()
