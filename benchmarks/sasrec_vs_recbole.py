"""Our SASRec next to RecBole 1.2.1's on MovieLens-100K, under RecBole's protocol.

RecBole's numbers come from ``benchmarks/recbole_compare.py`` (run in its own virtualenv; the
records are in ``benchmarks/results/recbole_sasrec_ml100k.json``). This script trains darec's
SASRec with the same settings and the same number of epochs and writes both side by side to
``benchmarks/results/sasrec_vs_recbole_ml100k.json``:

- same data (RecBole's ml-100k files, 5-core: 943 users, 1,349 items, 99,287 interactions),
  same leave-one-out split, full ranking, validation NDCG@10 selection;
- RecBole's full ranking does NOT exclude seen items for sequential models, so ours runs with
  ``eval.exclude_history=false`` here;
- RecBole's SASRec defaults: 2 layers, 2 heads, hidden 64, inner 256, dropout 0.5/0.5, lr 1e-3,
  max length 50, CE loss, seed 42, one CPU thread; as many epochs as RecBole's recorded run.

    python benchmarks/sasrec_vs_recbole.py
    python benchmarks/sasrec_vs_recbole.py --quick --out /tmp/r.json   # smoke run: tiny data
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchlib.paths import DOC, RESULTS_DIR
from benchlib.quick import add_quick_args, with_quick_sets
from benchlib.records import replace_block, results_path, write_json

from darec.config import Config, apply_overrides
from darec.experiment import run_experiment

RESULTS = RESULTS_DIR / "sasrec_vs_recbole_ml100k.json"
RECBOLE = RESULTS_DIR / "recbole_sasrec_ml100k.json"  # benchmarks/recbole_compare.py's record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick_args(parser, RESULTS, "tiny data, 1 and 2 epochs")
    args = parser.parse_args()
    out_path = results_path(args.out, RESULTS, args.quick)
    epochs, converge = (1, 2) if args.quick else (None, 200)
    out = with_quick_sets(args.quick, lambda sets: compare(epochs, converge, sets), llm=False)
    write_json(out_path, out)
    print(json.dumps(out, indent=2))
    if not args.quick:
        replace_block(DOC, "recbole", table(out), "# Results\n\n")


def compare(epochs: int | None, converge_epochs: int, sets: list[str]) -> dict:
    """Ours for ``epochs`` (None: as many as RecBole's recorded run) and with early stopping
    (up to ``converge_epochs``) beside RecBole's record; ``sets`` added to our runs."""
    recbole = json.loads(RECBOLE.read_text())
    ref = next(r for r in recbole["runs"] if r["name"] == "drop0.5")
    epochs = epochs or ref["epochs_trained"]
    ours = train(epochs, 0, sets)
    converged = train(converge_epochs, 10, sets)
    out = {
        "protocol": "ml-100k 5-core, leave-one-out, full ranking, history NOT excluded "
        "(RecBole's behaviour), selection on valid NDCG@10, both on 1 CPU thread",
        "epochs": epochs,
        "darec": ours,
        "darec_converged": converged,
        "recbole": {
            "valid_ndcg@10_curve": ref["valid_ndcg@10_curve"],
            "best_epoch": ref["best_epoch"],
            "test": ref["test_result"],
            "seconds": ref["seconds"],
            "note": ref.get("note", ""),
        },
    }
    return out


def train(epochs: int, patience: int, sets: list[str]) -> dict:
    """darec's SASRec with RecBole's defaults, history kept in the ranking."""
    cfg = apply_overrides(
        Config(),
        [
            "data.format=movielens",
            "model.name=sasrec",
            "model.dropout=0.5",
            "model.attn_dropout=0.5",
            *sets,  # before the epochs and patience, which they would override
            f"train.epochs={epochs}",
            f"train.patience={patience}",
            "train.threads=1",
            "train.seed=42",
            "eval.exclude_history=false",
        ],
    )
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as run_dir:
        result, record = run_experiment(cfg, Path(run_dir) / "run")
    seconds = time.monotonic() - start
    return {
        "epochs_trained": result.epochs,
        "best_epoch": result.best_epoch,
        "valid_ndcg@10_curve": [round(h["NDCG@10"], 4) for h in result.history],
        "test": {k: round(v, 4) for k, v in result.test.items()},
        "seconds": round(seconds, 1),
        "train_seconds": record.train_seconds,
        "commit": record.commit,
    }


def table(out: dict) -> str:
    d, r, c = out["darec"], out["recbole"], out["darec_converged"]
    rows = [
        "| run | valid NDCG@10 by epoch | test HR@10 | test NDCG@10 | test MRR@10 | wall seconds |",
        "|---|---|---|---|---|---|",
        f"| darec SASRec, {out['epochs']} epochs | "
        f"{', '.join(f'{v:.4f}' for v in d['valid_ndcg@10_curve'])} | "
        f"{d['test']['HR@10']:.4f} | {d['test']['NDCG@10']:.4f} | {d['test']['MRR@10']:.4f} | "
        f"{d['seconds']:.0f} |",
        f"| darec SASRec, early stopping ({c['epochs_trained']} epochs, best {c['best_epoch']}) "
        f"| ... {', '.join(f'{v:.4f}' for v in c['valid_ndcg@10_curve'][-3:])} | "
        f"{c['test']['HR@10']:.4f} | {c['test']['NDCG@10']:.4f} | {c['test']['MRR@10']:.4f} | "
        f"{c['seconds']:.0f} |",
        f"| RecBole SASRec, {out['epochs']} epochs | "
        f"{', '.join(f'{v:.4f}' for v in r['valid_ndcg@10_curve'])} | "
        f"{r['test']['hit@10']:.4f} | {r['test']['ndcg@10']:.4f} | {r['test']['mrr@10']:.4f} | "
        f"{r['seconds']:.0f} |",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
