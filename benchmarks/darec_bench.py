"""DARec and its ablations beside the collaborative model they start from; write results.

MovieLens-100K (default): every run is the demo's setting (``darec demo``): SmolLM2-135M cut to
its first 8 layers, adapters in the top two, item text = title and genres, a 12-minute training
budget on 2 cores, selection on validation NDCG@10, one test read. The SASRec row is trained
first with the baselines' settings; the DARec variants start their CF model from it (frozen),
except ``no-cki`` (no CF model at all) and ``joint`` (trained together from scratch).

Amazon Beauty (``--dataset amazon-beauty``): the CF row is ``sasrec-text`` (SASRec with frozen
title features, benchmarks/text_signal.py's product row, the baselines' SASRec settings), and
DARec, the same layout with titles as item text, starts from it, frozen, for up to 95 minutes.
The settings of every variant are in benchlib/settings.py.

    python benchmarks/darec_bench.py                          # all variants (about an hour)
    python benchmarks/darec_bench.py --variants darec,no-cki --runs /tmp/d
    python benchmarks/darec_bench.py --dataset amazon-beauty --runs /tmp/beauty   # ~2.5 h
    python benchmarks/darec_bench.py --variants full --set train.device=cuda \
        --results /tmp/gpu.json    # on a GPU: DARec_base over the whole backbone
    python benchmarks/darec_bench.py --quick --results /tmp/q.json   # smoke run: a minute

``--set`` overrides are added to every run of the command (device, threads, budget); with
``--results`` the records go to that file instead, and the docs are left alone.

Each run lives in ``RUNS/<variant>`` (a new temporary folder unless ``--runs``), kept after
the script ends: an interrupted run resumes when the same command is given again, and a
finished CF run is reused. Records (same schema as baselines.json) go to
``benchmarks/results/darec.json``; a table to ``docs/results.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchlib.paths import RESULTS_DIR
from benchlib.quick import add_quick_args, quick_setup
from benchlib.records import read_records, results_path, run_and_store, write_run_tables
from benchlib.settings import BENCHES

RESULTS = RESULTS_DIR / "darec.json"


def run_one(dataset: str, variant: str, seed: int, runs: Path, out: Path, extra: list[str]) -> None:
    """Child process: one training run in ``runs/<variant>``, its record written to ``out``."""
    from darec.config import Config, apply_overrides
    from darec.experiment import run_experiment

    bench = BENCHES[dataset]
    settings = [s.format(cf_run=runs / bench.cf) for s in bench.variants[variant]]
    cfg = apply_overrides(Config(), bench.common + settings + [f"train.seed={seed}", *extra])
    run_dir = runs / variant
    resume = (run_dir / "checkpoints" / "pointers.json").exists()
    _, record = run_experiment(cfg, run_dir, resume=resume)
    row = record.to_json()
    row.pop("run_dir")
    row["model"] = variant if variant.startswith(("sasrec", "darec")) else f"darec {variant}"
    row["settings"] = settings + extra
    out.write_text(json.dumps(row))


def run_variants(
    args: argparse.Namespace, variants: list[str], runs: Path, results: Path, sets: list[str]
) -> list[dict]:
    """Each variant in its own child process (the CF row first where a variant starts from it
    and it has not run yet), ``sets`` added to each; the records of ``results``."""
    bench = BENCHES[args.dataset]
    needs_cf = any("{cf_run}" in s for v in variants for s in bench.variants[v])
    if needs_cf and not (runs / bench.cf / "metrics.json").exists() and bench.cf not in variants:
        variants.insert(0, bench.cf)
    if variants:
        print(f"run folders: {runs}")
    existing = read_records(results)
    for variant in variants:
        cmd = [sys.executable, __file__, "--dataset", args.dataset, "--seed", str(args.seed)]
        cmd += [f"--set={s}" for s in [*args.set, *sets]]
        record = run_and_store([*cmd, "--one", variant, str(runs)], existing, results)
        print(json.dumps({"model": record["model"], "test NDCG@10": record["test"]["NDCG@10"]}))
    return existing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k", choices=list(BENCHES))
    parser.add_argument("--variants", default="", help="comma-separated (default: all)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", default="", help="folder of the run folders (kept; resumable)")
    parser.add_argument(
        "--write-docs", action="store_true", help="only rewrite the tables from the JSON"
    )
    parser.add_argument(
        "--set", action="append", default=[], help="override for every run (repeatable)"
    )
    add_quick_args(parser, RESULTS, "tiny data and LLM, darec and its CF row, 1 epoch", "--results")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        variant, runs, out = args.one
        run_one(args.dataset, variant, args.seed, Path(runs), Path(out), args.set)
        return
    results = results_path(args.out, RESULTS, args.quick)
    bench = BENCHES[args.dataset]
    default = "darec" if args.quick else ",".join(bench.variants)
    variants = [] if args.write_docs else (args.variants or default).split(",")
    unknown = [v for v in variants if v not in bench.variants]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r} for {args.dataset}: {list(bench.variants)}")
    if args.quick:
        with quick_setup() as quick:
            run_variants(args, variants, quick.folder / "runs", results, quick.sets())
        print(f"wrote {results}")
        return
    runs = Path(args.runs or tempfile.mkdtemp(prefix="darec-bench-"))
    for variant in variants:
        if (runs / variant / "metrics.json").exists():
            parser.error(f"{runs / variant} holds a finished run; remove it to run it again")
    existing = run_variants(args, variants, runs, results, [])
    if args.out:  # records elsewhere: docs untouched
        return
    order = {name: i for i, name in enumerate(["sasrec", "sasrec-text", "darec"])}
    existing.sort(key=lambda r: (r["dataset"] != "ml-100k", order.get(r["model"], 9), r["model"]))
    write_run_tables(existing, "darec", "readme-darec")


if __name__ == "__main__":
    main()
