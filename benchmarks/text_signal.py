"""Does the item text carry signal that item IDs lack? SASRec with frozen-LLM text features.

    python benchmarks/text_signal.py                  # MovieLens-100K, the demo's text settings
    python benchmarks/text_signal.py --dataset amazon-beauty --variants sasrec+text
    python benchmarks/text_signal.py --quick --results /tmp/t.json   # smoke run: seconds

How far item text alone gets, beside DARec: the ``sasrec-text`` model
(src/darec/models/text_sasrec.py) against SASRec on the same settings. Each item's text (on ML-100K
the demo's ``title; genres``, 24 tokens; on Beauty the title, 32 tokens) is encoded once by the
demo's frozen backbone (SmolLM2-135M cut to 8 layers): the mean of its final word states,
standardised over the catalog and L2-normalised.
SASRec (the baselines' code and settings, same seed) is then trained with item vectors

- ``sasrec``: ID embedding (the baseline, benchmarks/baselines.py's settings for the dataset);
- ``sasrec+text``: ID embedding + a learned projection of the text features (zero at the start);
- ``text-only``: the projection alone, no ID embedding (how much text predicts by itself);
- ``sasrec+text 16 layers`` / ``30 layers``: the features from deeper in the backbone.
- ``sasrec+text minilm`` (``whitened``): the features of the sentence encoder all-MiniLM-L6-v2
  instead (``text.pooling=sentence``; whitened instead of standardised). Runs on a loaded
  machine with ``train.threads=1`` are in ``benchmarks/results/text_encoders.json``.

Selection on validation NDCG@10, the test split read once per run. Writes
``benchmarks/results/text_signal.json`` (the baselines' record schema) and, with
``--write-docs``, a table in docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchlib.paths import DOC, RESULTS_DIR
from benchlib.quick import add_quick_args, quick_setup
from benchlib.records import (
    add_child_args,
    markdown,
    read_records,
    replace_block,
    results_path,
    run_and_store,
)
from benchlib.settings import COMMON, DATASETS, MINILM, SETTINGS, TEXT

from darec.config import Config, apply_overrides
from darec.experiment import run_experiment

RESULTS = RESULTS_DIR / "text_signal.json"
VARIANTS = {  # row name: its model settings
    "sasrec": ["model.name=sasrec"],
    "sasrec+text": ["model.name=sasrec-text"],
    "text-only": ["model.name=sasrec-text", "model.text_only=true"],
    # the same features from deeper in the backbone: 16 of SmolLM2's 30 layers, or all of them
    "sasrec+text 16 layers": ["model.name=sasrec-text", "text.encoder_layers=16"],
    "sasrec+text 30 layers": ["model.name=sasrec-text", "text.encoder_layers=0"],
    # a sentence encoder instead of the LLM (all-MiniLM-L6-v2, its 6 layers), plain or whitened
    "sasrec+text minilm": ["model.name=sasrec-text", *MINILM],
    "sasrec+text minilm whitened": ["model.name=sasrec-text", *MINILM, "text.whiten=true"],
}


def run_one(dataset: str, variant: str, seed: int, out: Path, extra: list[str]) -> None:
    """Child process: one training run, its record written to ``out``."""
    settings = [
        *SETTINGS[dataset]["sasrec"],
        *TEXT[dataset],
        *VARIANTS[variant],  # last: a variant's text.encoder_layers wins
    ]
    sets = DATASETS[dataset] + COMMON + settings + [f"train.seed={seed}", *extra]
    with tempfile.TemporaryDirectory() as run_dir:
        _, record = run_experiment(apply_overrides(Config(), sets), Path(run_dir) / "run")
    row = record.to_json()
    row.pop("run_dir")
    row["model"] = variant
    row["settings"] = settings + extra
    out.write_text(json.dumps(row))


def run_variants(
    args: argparse.Namespace, variants: list[str], results: Path, sets: list[str]
) -> list[dict]:
    """Each variant in its own child process, ``sets`` added; the records of ``results``."""
    existing = read_records(results)
    for variant in variants:
        cmd = [sys.executable, __file__, "--dataset", args.dataset, "--seed", str(args.seed)]
        cmd += [f"--set={s}" for s in sets]
        record = run_and_store([*cmd, "--one", variant], existing, results)
        print(json.dumps({"model": variant, "valid NDCG@10": record["valid"]["NDCG@10"]}))
    order = {name: i for i, name in enumerate(VARIANTS)}
    existing.sort(key=lambda r: (r["dataset"] != "ml-100k", order.get(r["model"], 9)))
    return existing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="", help="comma-separated (default: all)")
    parser.add_argument("--dataset", default="ml-100k", choices=list(TEXT))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--write-docs", action="store_true", help="only rewrite the table")
    add_quick_args(parser, RESULTS, "tiny data and LLM, sasrec+text, 1 epoch", "--results")
    add_child_args(parser, nargs=2)
    args = parser.parse_args()
    if args.one:
        run_one(args.dataset, args.one[0], args.seed, Path(args.one[1]), args.set)
        return
    results = results_path(args.out, RESULTS, args.quick)
    if args.quick:
        with quick_setup() as quick:
            variants = (args.variants or "sasrec+text").split(",")
            run_variants(args, variants, results, quick.sets())
        print(f"wrote {results}")
        return
    variants = [] if args.write_docs else (args.variants or ",".join(VARIANTS)).split(",")
    replace_block(DOC, "text-signal", markdown(run_variants(args, variants, results, [])), "")


if __name__ == "__main__":
    main()
