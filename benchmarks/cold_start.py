"""Cold-start items: how well models that read item text rank items no training run has seen.

    python benchmarks/cold_start.py --quick     # MovieLens-100K, tiny budget (< 1 min), temp file
    python benchmarks/cold_start.py             # Amazon Beauty: results/cold_start.json + docs

Protocol (one seeded draw, ``--seed``; the code is :mod:`darec.data.cold` and
:mod:`darec.evaluation.cold`, shared with ``darec demo --cold``):

1. the dataset as the baselines read it (5-core) and its leave-one-out split;
2. a random ``--cold-fraction`` (10%) of the items is held out: the *cold* items. They are
   removed from every training sequence and from the validation histories, and validation
   cases whose target is cold are dropped, so neither training nor model selection sees them;
   the models are built on the other (warm) items only;
3. after training, the models that read item text add the cold items to their catalog from
   their text alone, through the same hooks as ``darec catalog add`` (``item_rows_from_text``,
   ``extend_catalog``): new internal ids after the warm ones, text features on the training
   catalog's scale, zero ID rows;
4. every test case is ranked once, full ranking over the model's whole catalog, history
   excluded, with the test history as it is (cold items included: a text model reads them);
   the cases whose target is cold give the *cold* metrics, the others the *warm* ones.

Pop and SASRec cannot add an item they were not trained on: their cold metrics are 0 by
construction (``can_rank_cold`` false), and their warm metrics come from the same warm-target
cases with the cold items left out of the histories (they do not know them) and out of the
candidates. Text models rank the warm targets among the cold items too, as they would serve
them, which can only lower their warm numbers.

Models: ``content`` (cosine between item text features and the recency-weighted mean of the recent
history; its text features, among ``CONTENT_TEXTS``: SmolLM2's, all-MiniLM-L6-v2's raw or whitened,
and its ``model.content_decay`` among ``CONTENT_DECAYS``, chosen together on warm validation
NDCG@10), ``pop``, ``sasrec``, ``sasrec-text`` (the headline settings of benchmarks/accuracy.py:
SASRec's recipe, and on Beauty the whitened MiniLM title vectors), the last tested three times on
the same trained model: cold items with zero ID rows (``sasrec-text``), with ID rows predicted from
their text by a ridge regression fitted on the warm items (``sasrec-text ids-from-text``,
``model.new_item_ids = "from_text"``), and with the weighted mean of their text neighbours' ID rows
(``sasrec-text neighbours``, ``model.new_item_ids = "neighbours"``); ``content-cf`` (the content
score plus counted item-to-item transitions, cold items borrowing the transitions into their text
neighbours; its settings ``benchlib.settings.CONTENT_CF``, chosen on the pseudo-cold validation
items of benchmarks/cold_probe.py). Optional (``--models ...,"sasrec-text id-dropout"``, not in the
default list: on ML-100K it did not help cold targets): the same model trained with
``model.id_dropout = 0.5`` (half the items lose their ID rows at each step, so the text branch
learns to carry an item alone), tested both ways too; ``"sasrec-text id-dropout 0.9"`` the same at
0.9; ``"sasrec-text text-only"`` with no ID rows at all (``model.text_only``: warm and cold items
alike are their text alone) and ``"sasrec-text text-only h256"`` the same at hidden size 256;
``"sasrec-text prior"`` and ``"sasrec-text id-dropout prior"``: those models with the content prior
added to their scores (the content model's cosine times a weight the trainer chooses on warm
validation among ``PRIOR_WEIGHTS``), which scores cold items by their text as it scores warm ones.
``darec`` (the headline DARec settings of benchmarks/accuracy.py, started frozen from the run of
``COLD_DAREC_CF``: on Beauty the ``sasrec-text prior`` row, which this script trains first into the
same runs folder when that folder does not hold it yet) adds cold items through its item encoder,
which reads their titles, and the catalog cache, and its frozen CF model gives them the rows
``sasrec-text`` would (text features, so that its text branch and the content prior know them; zero
ID rows for ``darec``, their text neighbours' for ``darec neighbours``). The trained models run
without a time limit, to early stopping or the recipe's 200 epochs (like benchmarks/accuracy.py).
Each model's row is merged into the results file as soon as it is done, beside the rows the file
holds for the same split, so that models can train side by side in separate scripts (``--models
sasrec`` and ``--models content,pop,sasrec-text``) without losing each other's rows. ``--run-dir
DIR`` keeps each trained model's run folder (``DIR/MODEL``, spaces as dashes): run the same command
again after an interruption and each model resumes from its last checkpoint (a finished one is only
tested again); without it the runs live in a temporary folder. The summary keys ``cold_best_model``
/ ``cold_best_ndcg10`` (best cold NDCG@10 among the models other than ``content``),
``cold_content_ndcg10`` and ``cold_ratio`` (best / content) sit at the top level of the JSON.

Rows trained on another machine (a lent GPU: ``--set train.device=cuda --out FILE`` there) are
merged with ``--merge FILE... --machine "what it was"``, which checks that the files hold the
same split and records the machine in each row (the docs table shows it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchlib.records import replace_block
from benchlib.settings import (
    COMMON,
    CONTENT_CF,
    DATASETS,
    FROM_CF,
    MINILM,
    NO_LIMIT,
    SASREC_TEXT,
    SETTINGS,
    TEXT,
)

from darec.config import Config, apply_overrides
from darec.data.cold import ColdSplit, hold_out_items
from darec.evaluation.cold import cold_warm_metrics
from darec.evaluation.evaluator import evaluate
from darec.models.base import ModelContext
from darec.models.content import ContentModel
from darec.models.registry import MODELS as REGISTRY
from darec.models.registry import build_model
from darec.run import RunFolder, load_data, provenance
from darec.run.checkpoint import atomic_write_json
from darec.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "cold_start.json"
DOC = ROOT / "docs" / "results.md"
CONTENT_DECAYS = (0.05, 0.2, 0.35, 0.5, 0.8, 1.0)  # 0.05: almost the newest item alone
SHOWN = ("HR@10", "NDCG@10")

# the content prior's weights tried on (warm) validation after training (eval.content_weights)
PRIOR_WEIGHTS = "eval.content_weights=0,0.25,0.5,1,2,4,8,16"
TEXT_MODELS: dict[str, list[str]] = {  # sasrec-text rows: settings on top of the headline ones
    "sasrec-text": [],
    # plus the content model's score, weighted as chosen on warm validation
    "sasrec-text prior": [PRIOR_WEIGHTS],
    "sasrec-text id-dropout prior": ["model.id_dropout=0.5", PRIOR_WEIGHTS],
    # trained to score items by their text alone too, as added items must be
    "sasrec-text id-dropout": ["model.id_dropout=0.5"],
    "sasrec-text id-dropout 0.9": ["model.id_dropout=0.9"],
    # no ID rows at all: warm and cold items are represented the same way, by their text
    "sasrec-text text-only": ["model.text_only=true"],
    "sasrec-text text-only h256": [
        "model.text_only=true",
        "model.hidden_size=256",
        "model.inner_size=256",
    ],
}
MODELS: dict[str, dict[str, list[str]]] = {  # dataset -> model -> settings
    dataset: {
        "content": ["model.name=content"],  # its item text: CONTENT_TEXTS, chosen on validation
        "content-cf": [*TEXT[dataset], *CONTENT_CF],
        "pop": ["model.name=pop"],
        "sasrec": SETTINGS[dataset]["sasrec"],
        **{
            name: [*SETTINGS[dataset]["sasrec"], "model.name=sasrec-text", *SASREC_TEXT[dataset]]
            + more
            for name, more in TEXT_MODELS.items()
        },
        # the CF run it starts from: COLD_DAREC_CF's, in the same runs folder ({cf_run})
        "darec": [*SETTINGS[dataset]["darec"], "train.max_minutes=0", *FROM_CF],
    }
    for dataset in ("ml-100k", "amazon-beauty")
}
COLD_DAREC_CF = {"ml-100k": "sasrec", "amazon-beauty": "sasrec-text prior"}
"""The row whose trained run DARec starts from, frozen (benchmarks/accuracy.py's DAREC_CF)."""
CONTENT_TEXTS: dict[str, dict[str, list[str]]] = {  # dataset -> candidate item text features
    dataset: {
        "smollm2": TEXT[dataset],  # DARec's backbone, 8 layers, mean of the final word states
        "minilm": [*TEXT[dataset], *MINILM],  # the sentence encoder (cosine is its metric)
        "minilm whitened": [*TEXT[dataset], *MINILM, "text.whiten=true"],
    }
    for dataset in ("ml-100k", "amazon-beauty")
}
# cold items' ID rows: the weighted mean of their text neighbours' (content-cf's neighbours)
NEIGHBOUR_IDS = [
    "model.new_item_ids=neighbours",
    *[s for s in CONTENT_CF if s.startswith("model.neighbour")],
]
TEST_VARIANTS: dict[str, dict[str, list[str]]] = {  # one trained model, tested per variant
    "sasrec-text": {
        "sasrec-text": [],  # cold items' ID rows zero: the text branch alone
        "sasrec-text ids-from-text": ["model.new_item_ids=from_text"],
        "sasrec-text neighbours": NEIGHBOUR_IDS,
    },
    "sasrec-text prior": {
        "sasrec-text prior": [],
        "sasrec-text prior neighbours": NEIGHBOUR_IDS,
    },
    "sasrec-text id-dropout": {
        "sasrec-text id-dropout": [],
        "sasrec-text id-dropout ids-from-text": ["model.new_item_ids=from_text"],
    },
    "darec": {  # its CF start's text rows for cold items: zero ID rows, or borrowed ones
        "darec": [],
        "darec neighbours": NEIGHBOUR_IDS,
    },
    "sasrec-text id-dropout 0.9": {
        "sasrec-text id-dropout 0.9": [],
        "sasrec-text id-dropout 0.9 ids-from-text": ["model.new_item_ids=from_text"],
    },
}
ORDER = [  # the table's rows
    "content",
    "content-cf",
    "pop",
    "sasrec",
    "sasrec-text",
    "sasrec-text ids-from-text",
    "sasrec-text neighbours",
    "sasrec-text prior",
    "sasrec-text prior neighbours",
    "sasrec-text id-dropout",
    "sasrec-text id-dropout ids-from-text",
    "sasrec-text id-dropout prior",
    "sasrec-text id-dropout 0.9",
    "sasrec-text id-dropout 0.9 ids-from-text",
    "sasrec-text text-only",
    "sasrec-text text-only h256",
    "darec",
    "darec neighbours",
]
QUICK = [  # --quick: a smoke run of the whole protocol, not a measurement
    "train.epochs=1",
    "train.windows=last",
    "model.max_seq_len=20",
    "model.hidden_size=32",
    "text.encoder_layers=1",
    "darec.adapters=serial:16",  # one entry for the one layer
    "text.max_tokens=8",
    "train.threads=2",
]


def run_content(cfg: Config, data: ColdSplit, texts: dict[str, list[str]]) -> dict:
    """The content baseline: nothing to train; its item text features (``texts``) and
    ``content_decay`` chosen on warm validation NDCG@10."""
    start = time.monotonic()
    ctx = ModelContext(data.warm.num_items, data.warm.catalog, data.warm.key)
    valid: dict[tuple[str, float], dict[str, float]] = {}
    models: dict[tuple[str, float], ContentModel] = {}
    for text, settings in texts.items():
        built = build_model(apply_overrides(cfg, settings), ctx)
        assert isinstance(built, ContentModel)
        for decay in CONTENT_DECAYS:
            model_cfg = dataclasses.replace(built.cfg, content_decay=decay)
            model = ContentModel(model_cfg, ctx.num_items, built.feats)
            models[text, decay] = model
            valid[text, decay] = evaluate(
                model, data.train.valid, cfg.eval, cfg.model.max_seq_len
            ).metrics
    text, decay = max(valid, key=lambda choice: valid[choice]["NDCG@10"])
    model = models[text, decay]
    chosen = dataclasses.replace(apply_overrides(cfg, texts[text]), model=model.cfg)
    return {
        "valid": valid[text, decay],
        "text": text,
        "text_settings": texts[text],
        "content_decay": decay,
        "valid_by_choice": {f"{t} decay {d}": v["NDCG@10"] for (t, d), v in valid.items()},
        **cold_warm_metrics(model, chosen, data),
        "seconds": round(time.monotonic() - start, 1),
    }


def run_folder(runs: Path, name: str) -> Path:
    """Where model ``name`` trains inside the runs folder."""
    return runs / name.replace(" ", "-")


def run_trained(
    cfg: Config, data: ColdSplit, variants: dict[str, list[str]], run_dir: Path
) -> dict[str, dict]:
    """Train on the warm data into ``run_dir`` (selection on warm validation; resumed when the
    folder holds a checkpoint), then test the best checkpoint once per variant (settings that
    change only how cold items are added)."""
    resume = (run_dir / "checkpoints" / "pointers.json").exists()
    fit = Trainer(cfg, data.warm, data.train, run_dir).fit(resume=resume, test=False)
    rows = {}
    for name, settings in variants.items():
        model = RunFolder.open(run_dir).load_model("best", with_added_items=False)
        rows[name] = {
            "valid": fit.valid,
            "best_epoch": fit.best_epoch,
            "epochs": fit.epochs,
            "stopped": fit.stopped,
            **({"content_weight": fit.content_weight} if fit.content_weight else {}),
            **cold_warm_metrics(model, apply_overrides(cfg, settings), data),
            "seconds": round(fit.train_seconds, 1),
        }
    return rows


def with_cf_runs(names: list[str], dataset: str, runs: Path) -> list[str]:
    """``names`` with DARec's CF row trained before it where the runs folder does not hold that
    run finished (``metrics.json``) and the list does not train it first."""
    cf = COLD_DAREC_CF[dataset]
    if "darec" not in names:
        return names
    at = names.index("darec")
    if cf in names[:at] or (run_folder(runs, cf) / "metrics.json").exists():
        return names
    return [*names[:at], cf, *[n for n in names[at:] if n != cf]]


def summary(models: dict[str, dict]) -> dict:
    """The top-level keys a checker reads (module docstring)."""
    rivals = {m: r["cold"]["NDCG@10"] for m, r in models.items() if m != "content"}
    best = max(rivals, key=lambda m: rivals[m]) if rivals else ""
    content = models.get("content", {}).get("cold", {}).get("NDCG@10", 0.0)
    ratio = rivals[best] / content if best and content else None
    return {
        "cold_best_model": best,
        "cold_best_ndcg10": rivals.get(best, 0.0),
        "cold_content_ndcg10": content,
        "cold_ratio": ratio,
    }


def markdown(record: dict) -> str:
    head = " | ".join(f"{part} {m}" for part in ("cold", "warm") for m in SHOWN)
    lines = [
        f"| model | {head} | can rank cold | epochs (best), stop | trained on |",
        "|---|" + "---|" * (2 * len(SHOWN) + 3),
    ]
    for name, r in record["models"].items():
        cells = " | ".join(f"{r[part][m]:.4f}" for part in ("cold", "warm") for m in SHOWN)
        epochs = f"{r['epochs']} ({r['best_epoch']}), {r['stopped']}" if "epochs" in r else "-"
        where = r.get("machine", "CPU, 2 cores")
        lines.append(
            f"| {name} | {cells} | {'yes' if r['can_rank_cold'] else 'no'} | {epochs} | {where} |"
        )
    ratio = record["cold_ratio"]
    lines.append("")
    lines.append(
        f"{record['dataset']}, {record['cold_items']} cold items of {record['items']} "
        f"(seed {record['seed']}); test cases: {record['test_cases']['cold']} cold targets, "
        f"{record['test_cases']['warm']} warm. Best cold NDCG@10: {record['cold_best_model']} "
        f"{record['cold_best_ndcg10']:.4f}, "
        + (f"{ratio:.2f}x the content baseline." if ratio else "content baseline at 0.")
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ML-100K smoke run to a temp file")
    parser.add_argument("--dataset", default=None, choices=list(MODELS))
    parser.add_argument("--models", default="content,content-cf,pop,sasrec,sasrec-text")
    parser.add_argument("--cold-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=None, help="results file (default per mode)")
    parser.add_argument("--set", action="append", default=[], help="extra setting, every model")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="keep the trained runs here (RUN_DIR/MODEL) and resume them when run again "
        "(default: a temporary folder)",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=[],
        help="records of this split written by --out elsewhere (another machine): merge their "
        "rows into the results file, train nothing",
    )
    parser.add_argument(
        "--machine", default="", help="with --merge: where those rows were trained, recorded"
    )
    args = parser.parse_args()
    dataset = args.dataset or ("ml-100k" if args.quick else "amazon-beauty")
    out = args.out or (Path(tempfile.mkdtemp()) / "cold_start.json" if args.quick else RESULTS)
    extra = (QUICK if args.quick else []) + args.set

    base = apply_overrides(Config(), DATASETS[dataset] + COMMON + [f"train.seed={args.seed}"])
    ds = load_data(base)
    data = hold_out_items(ds, args.cold_fraction, args.seed)
    split = {
        "dataset": ds.name,
        "quick": args.quick,
        "seed": args.seed,
        "cold_fraction": args.cold_fraction,
        "items": ds.num_items,
        "cold_items": len(data.cold_ids),
        "test_cases": {
            "cold": int(data.cold_target.sum()),
            "warm": int((~data.cold_target).sum()),
        },
    }
    if args.merge:
        publish(out, store(out, split, merged_rows(args.merge, split, args.machine)))
        return
    texts = {text: [*sets, *extra] for text, sets in CONTENT_TEXTS[dataset].items()}
    results: dict[str, dict] = {}
    with contextlib.ExitStack() as stack:
        runs = args.run_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        cf_run = run_folder(runs, COLD_DAREC_CF[dataset])
        for name in with_cf_runs(args.models.split(","), dataset, runs):
            limit = [] if name == "content" else NO_LIMIT  # trained to early stopping, no clock
            settings = [s.format(cf_run=cf_run) for s in MODELS[dataset][name]]
            cfg = apply_overrides(base, limit + settings + extra)
            if cfg.train.threads:
                torch.set_num_threads(cfg.train.threads)
            torch.manual_seed(cfg.train.seed)
            variants = TEST_VARIANTS.get(name, {name: []})
            rows = (
                {name: run_content(cfg, data, texts)}
                if name == "content"
                else run_trained(cfg, data, variants, run_folder(runs, name))
            )
            for label, row in rows.items():
                row["can_rank_cold"] = REGISTRY[cfg.model.name].adds_items_from_text
                row["settings"] = MODELS[dataset][name] + extra + variants.get(label, [])
                row["commit"] = provenance()["commit"]
                results[label] = row
                shown = {p: round(row[p]["NDCG@10"], 4) for p in ("cold", "warm")}
                print(json.dumps({"model": label, "NDCG@10": shown, "seconds": row["seconds"]}))
            record = store(out, split, results)
    publish(out, record)


def publish(out: Path, record: dict) -> None:
    print(f"wrote {out}", file=sys.stderr)
    if out == RESULTS:  # the measurement of record: its table goes into the docs
        replace_block(DOC, "cold-start", markdown(record), "")


def merged_rows(files: list[Path], split: dict, machine: str) -> dict[str, dict]:
    """The model rows of records written elsewhere for the same ``split``, each marked with the
    machine it trained on; a record of another split is refused."""
    rows: dict[str, dict] = {}
    for path in files:
        record = json.loads(path.read_text())
        differ = [key for key, value in split.items() if record.get(key) != value]
        if differ:
            raise SystemExit(f"{path}: another split than this one (differs in {differ})")
        for name, row in record["models"].items():
            rows[name] = {**row, "machine": row.get("machine") or machine or "unknown"}
    return rows


def store(out: Path, split: dict, results: dict[str, dict]) -> dict:
    """Write the record of ``split`` with the rows of ``results`` to ``out``, keeping the rows of
    other models that the file holds for the same split (several scripts can train different
    models side by side, one ``--models`` each); the record written."""
    models = {}
    if out.exists():
        old = json.loads(out.read_text())
        if all(old.get(key) == value for key, value in split.items()):
            models = old.get("models", {})
    models.update(results)
    order = [m for m in ORDER if m in models] + [m for m in models if m not in ORDER]
    models = {m: models[m] for m in order}
    record = {
        **summary(models),
        **split,
        "protocol": "benchmarks/cold_start.py docstring",
        "models": models,
    }
    atomic_write_json(out, record)
    return record


if __name__ == "__main__":
    main()
