"""DARec and its ablations on MovieLens-100K, beside the SASRec they start from; write results.

Every run is the demo's setting (``darec demo``): SmolLM2-135M cut to its first 8 layers,
adapters in the top two, item text = title and genres, a 12-minute training budget on 2 cores,
selection on validation NDCG@10, one test read. The SASRec row is trained first with the
baselines' settings; the DARec variants start their CF model from it (frozen), except
``no-cki``, which has no CF model at all.

    python benchmarks/darec_bench.py                          # all variants (about an hour)
    python benchmarks/darec_bench.py --variants darec,no-cki

Records (same schema as baselines.json) go to ``benchmarks/results/darec.json``; a table to
``docs/results.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from baselines import markdown, readme_table, replace_block

from darec.experiment import DEMO_MODELS
from darec.training.checkpoint import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "darec.json"
DOC = ROOT / "docs" / "results.md"

COMMON = [
    "data.format=movielens",
    "train.epochs=200",
    "model.max_seq_len=50",
    "train.threads=2",
]
FROM_SASREC = ["darec.cf_checkpoint={cf_run}", "darec.cf_frozen=true"]
"""The CF model starts from the SASRec row's run, frozen ({cf_run}: that run's folder)."""
VARIANTS: dict[str, list[str]] = {
    "sasrec": DEMO_MODELS["sasrec"],
    "darec": [*DEMO_MODELS["darec"], *FROM_SASREC],
    # plain causal attention over the whole token stream (the straightforward path: every
    # sequence's 50 x 27 tokens run through all 8 layers, so smaller batches keep it in memory)
    "no-cm": [
        *DEMO_MODELS["darec"],
        *FROM_SASREC,
        "darec.context_masking=false",
        "train.batch_size=32",
        "eval.batch_size=128",
    ],
    # no collaborative knowledge: no CF tokens, no CF user state, no pre-trained CF model
    "no-cki": [*DEMO_MODELS["darec"], "darec.cki=false"],
    "no-tasks": [*DEMO_MODELS["darec"], *FROM_SASREC, "darec.align=false", "darec.hard=false"],
    # DESIGN.md's default CKI: the CF model (a SASRec, same settings) trained jointly from
    # scratch with DARec, not started from the trained SASRec; it needs as many epochs as a
    # SASRec, so it gets SASRec's patience and a longer budget (13 s a step, 10 steps an epoch)
    "joint": [
        *DEMO_MODELS["darec"],
        "train.validate_first=false",
        "train.patience=10",
        "train.max_minutes=85",
    ],
}


def run_one(variant: str, seed: int, cf_run: Path, out: Path) -> None:
    """Child process: one training run, its record written to ``out``."""
    from darec.config import Config, apply_overrides
    from darec.experiment import run_experiment

    settings = [s.format(cf_run=cf_run) for s in VARIANTS[variant]]
    cfg = apply_overrides(Config(), COMMON + settings + [f"train.seed={seed}"])
    if variant == "sasrec":
        _, record = run_experiment(cfg, cf_run)
    else:
        with tempfile.TemporaryDirectory() as run_dir:
            _, record = run_experiment(cfg, Path(run_dir) / "run")
    row = record.to_json()
    row.pop("run_dir")
    row["model"] = variant if variant.startswith(("sasrec", "darec")) else f"darec {variant}"
    row["settings"] = settings
    out.write_text(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cf-run", default="", help="SASRec run folder to reuse or create")
    parser.add_argument(
        "--write-docs", action="store_true", help="only rewrite the tables from the JSON"
    )
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        variant, cf_run, out = args.one
        run_one(variant, args.seed, Path(cf_run), Path(out))
        return
    cf_run = Path(args.cf_run or tempfile.mkdtemp(prefix="darec-cf-")) / "sasrec"
    variants = [] if args.write_docs else args.variants.split(",")
    needs_cf = any("{cf_run}" in s for v in variants for s in VARIANTS[v])
    if needs_cf and not (cf_run / "metrics.json").exists() and "sasrec" not in variants:
        variants.insert(0, "sasrec")
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    for variant in variants:
        with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
            cmd = [sys.executable, __file__, "--seed", str(args.seed)]
            subprocess.run([*cmd, "--one", variant, str(cf_run), tmp.name], check=True)
            record = json.loads(Path(tmp.name).read_text())
        print(json.dumps({"model": record["model"], "test NDCG@10": record["test"]["NDCG@10"]}))
        existing = [
            r for r in existing if (r["model"], r["seed"]) != (record["model"], record["seed"])
        ] + [record]
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(RESULTS, existing)
    order = {name: i for i, name in enumerate(["sasrec", "darec"])}
    existing.sort(key=lambda r: (order.get(r["model"], 9), r["model"]))
    replace_block(DOC, "darec", markdown(existing), "# Results\n\n")
    replace_block(ROOT / "README.md", "readme-darec", readme_table(existing), "")


if __name__ == "__main__":
    main()
