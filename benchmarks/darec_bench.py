"""DARec and its ablations beside the collaborative model they start from; write results.

MovieLens-100K (default): every run is the demo's setting (``darec demo``): SmolLM2-135M cut to
its first 8 layers, adapters in the top two, item text = title and genres, a 12-minute training
budget on 2 cores, selection on validation NDCG@10, one test read. The SASRec row is trained
first with the baselines' settings; the DARec variants start their CF model from it (frozen),
except ``no-cki`` (no CF model at all) and ``joint`` (trained together from scratch).

Amazon Beauty (``--dataset amazon-beauty``): the CF row is ``sasrec-text`` (SASRec with frozen
title features, benchmarks/text_signal.py's product row, the baselines' SASRec settings), and
DARec, the same layout with titles as item text, starts from it, frozen, for up to 95 minutes.

    python benchmarks/darec_bench.py                          # all variants (about an hour)
    python benchmarks/darec_bench.py --variants darec,no-cki --runs /tmp/d
    python benchmarks/darec_bench.py --dataset amazon-beauty --runs /tmp/beauty   # ~2.5 h
    python benchmarks/darec_bench.py --variants full --set train.device=cuda \
        --results /tmp/gpu.json    # on a GPU: DARec_base over the whole backbone

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
from dataclasses import dataclass
from pathlib import Path

from baselines import COMMON as BASELINE_COMMON
from baselines import DATASETS, SETTINGS, markdown, readme_table, replace_block, run_and_store
from text_signal import TEXT

from darec.experiment import DEMO_MODELS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "darec.json"
DOC = ROOT / "docs" / "results.md"

COMMON = [
    "data.format=movielens",
    "train.epochs=200",
    "model.max_seq_len=50",
    "train.threads=2",
]
FROM_CF = ["darec.cf_checkpoint={cf_run}", "darec.cf_frozen=true"]
"""The CF model starts from the CF row's run, frozen ({cf_run}: that run's folder)."""
FULL = ["text.encoder_layers=0", "darec.adapters=serial:16"]
"""DARec_base (docs/design.md, "Adapters") at full size: all 30 layers, serial bottlenecks in
every slot."""
VARIANTS: dict[str, list[str]] = {
    "sasrec": DEMO_MODELS["sasrec"],
    "darec": [*DEMO_MODELS["darec"], *FROM_CF],
    # plain causal attention over the whole token stream (the straightforward path: every
    # sequence's 50 x 27 tokens run through all 8 layers, so smaller batches keep it in memory)
    "no-cm": [
        *DEMO_MODELS["darec"],
        *FROM_CF,
        "darec.context_masking=false",
        "train.batch_size=32",
        "eval.batch_size=128",
    ],
    # no collaborative knowledge: no CF tokens, no CF user state, no pre-trained CF model
    "no-cki": [*DEMO_MODELS["darec"], "darec.cki=false"],
    "no-tasks": [*DEMO_MODELS["darec"], *FROM_CF, "darec.align_weight=0", "darec.hard_weight=0"],
    # DARec_base (docs/design.md, "Adapters") at full size: all 30 layers, serial bottlenecks
    # in every slot (so nothing is cached below the adapters). For a GPU: on 2 CPU cores a step
    # takes minutes
    "full": [*DEMO_MODELS["darec"], *FROM_CF, *FULL],
    # the default CKI (docs/design.md, "Collaborative knowledge injection"): the CF model (a
    # SASRec, same settings) trained jointly from scratch with DARec, not started from the
    # trained SASRec; it needs as many epochs as a SASRec, so it gets SASRec's patience and a
    # longer budget (13 s a step, 10 steps an epoch)
    "joint": [
        *DEMO_MODELS["darec"],
        "train.validate_first=false",
        "train.patience=10",
        "train.max_minutes=85",
    ],
}


BEAUTY_TEXT = TEXT["amazon-beauty"]  # the sasrec-text row's item text (text_signal.py)
BEAUTY: dict[str, list[str]] = {
    "sasrec-text": [*SETTINGS["amazon-beauty"]["sasrec"], "model.name=sasrec-text", *BEAUTY_TEXT],
    "darec": [
        *SETTINGS["amazon-beauty"]["sasrec"],  # the CF model's size and dropout
        "model.name=darec",
        *BEAUTY_TEXT,
        "darec.adapters=none/none*6,serial:16*2",
        "train.batch_size=256",
        "train.patience=3",
        "train.validate_first=true",
        "train.checkpoint_every_steps=10",
        "train.max_minutes=95",
        *FROM_CF,
    ],
}
# DARec_base over the whole backbone, from the same start (for a GPU, like ML-100K's "full")
BEAUTY["full"] = [*BEAUTY["darec"], *FULL]


@dataclass(frozen=True)
class Bench:
    """One dataset's runs: settings shared by all, the CF row, every variant's settings."""

    common: list[str]
    cf: str
    variants: dict[str, list[str]]


BENCHES = {
    "ml-100k": Bench(COMMON, "sasrec", VARIANTS),
    "amazon-beauty": Bench(DATASETS["amazon-beauty"] + BASELINE_COMMON, "sasrec-text", BEAUTY),
}


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
    parser.add_argument("--results", default="", help="write the records here (docs untouched)")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        variant, runs, out = args.one
        run_one(args.dataset, variant, args.seed, Path(runs), Path(out), args.set)
        return
    results = Path(args.results) if args.results else RESULTS
    bench = BENCHES[args.dataset]
    runs = Path(args.runs or tempfile.mkdtemp(prefix="darec-bench-"))
    variants = [] if args.write_docs else (args.variants or ",".join(bench.variants)).split(",")
    unknown = [v for v in variants if v not in bench.variants]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r} for {args.dataset}: {list(bench.variants)}")
    for variant in variants:
        if (runs / variant / "metrics.json").exists():
            parser.error(f"{runs / variant} holds a finished run; remove it to run it again")
    needs_cf = any("{cf_run}" in s for v in variants for s in bench.variants[v])
    if needs_cf and not (runs / bench.cf / "metrics.json").exists() and bench.cf not in variants:
        variants.insert(0, bench.cf)
    if variants:
        print(f"run folders: {runs}")
    existing = json.loads(results.read_text()) if results.exists() else []
    for variant in variants:
        cmd = [sys.executable, __file__, "--dataset", args.dataset, "--seed", str(args.seed)]
        cmd += [f"--set={s}" for s in args.set]
        record = run_and_store([*cmd, "--one", variant, str(runs)], existing, results)
        print(json.dumps({"model": record["model"], "test NDCG@10": record["test"]["NDCG@10"]}))
    if args.results:
        return
    order = {name: i for i, name in enumerate(["sasrec", "sasrec-text", "darec"])}
    existing.sort(key=lambda r: (r["dataset"] != "ml-100k", order.get(r["model"], 9), r["model"]))
    replace_block(DOC, "darec", markdown(existing), "# Results\n\n")
    replace_block(ROOT / "README.md", "readme-darec", readme_table(existing), "")


if __name__ == "__main__":
    main()
