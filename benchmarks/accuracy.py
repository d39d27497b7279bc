"""Headline accuracy: every model over several seeds, beside the published anchors.

    python benchmarks/accuracy.py --dataset amazon-beauty --models sasrec,sasrec-text
    python benchmarks/accuracy.py --dataset ml-100k --models sasrec,sasrec-text --seeds 42,43,44
    python benchmarks/accuracy.py --summary             # only rewrite accuracy.json from the runs
    python benchmarks/accuracy.py --adopt RUN --models sasrec   # record a finished run folder
    python benchmarks/accuracy.py --quick --out /tmp/acc.json   # smoke run: tiny data, seconds

Each (dataset, model, seed) trains in its own child process with the recorded settings of
``benchlib.settings`` (the baselines' and the text features'), **without a time limit** (a run
ends on early stopping or its epochs, never on the clock), selects on validation NDCG@10 and
reads the test split once. Seeds can train side by side (one script per seed: each re-reads the
records before it writes). ``--adopt RUN`` records a run folder trained elsewhere (``darec
train``) as the run of its seed, after checking that its saved settings are the ones this script
would use (threads, device and time limit aside). Records go to
``benchmarks/results/accuracy_runs.json`` (one per run, resumable: a run already recorded is
not trained again) and the summary to ``benchmarks/results/accuracy.json``:

- per dataset and model: the mean and standard deviation over seeds of valid and test
  NDCG@10/HR@10, the per-seed values, the other protocol (seen items kept) and the test NDCG@10
  by target popularity (head/torso/tail thirds of the items);
- ``sasrec-text-prior``: sasrec-text with the content prior, its weight chosen per run on
  validation after training (``eval.content_weights``; the chosen weights are in the entry);
- ``darec``: DARec started from the run of ``benchlib.settings.DAREC_CF`` with the same seed
  (Beauty: ``sasrec-text-prior``; ML-100K: ``sasrec``), frozen, its start validated first;
  trained here after that run, or recorded with ``--adopt`` (which checks that its start has
  the same seed);
- ``content`` and ``content-cf``: nothing trained (text similarity, and that plus counted
  transitions), settings chosen on validation by benchmarks/cold_start.py and
  benchmarks/cold_probe.py; baselines, not candidates for the best text-aware model below;
- ``beauty_sasrec_ndcg10`` (SASRec's test mean), ``beauty_best_model`` (the text-aware model
  with the best mean *validation* NDCG@10: chosen without reading test, among those with as
  many seeds as SASRec), ``beauty_best_ndcg10``,
  ``beauty_ratio`` (best / SASRec, test), each beside its per-seed values; the same for
  ``ml100k_*``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchlib.paths import DOC, README, RESULTS_DIR
from benchlib.quick import add_quick_args, quick_setup
from benchlib.records import (
    add_child_args,
    read_records,
    replace_block,
    results_path,
    run_and_store,
    store_record,
    write_json,
)
from benchlib.settings import (
    CONTENT_WEIGHTS,
    DAREC_CF,
    DATASETS,
    FROM_CF,
    NO_LIMIT,
    SASREC_TEXT,
    SETTINGS,
)

from darec.config import Config, apply_overrides
from darec.experiment import run_experiment
from darec.run.folder import RunFolder

RUNS = RESULTS_DIR / "accuracy_runs.json"
SUMMARY = RESULTS_DIR / "accuracy.json"
TEXT_AWARE = ("sasrec-text", "sasrec-text-prior", "darec")
PUBLISHED = {
    "amazon-beauty": {
        "sasrec_ce_test_ndcg10": 0.0591,
        "sasrec_ce_valid_ndcg10": 0.0729,
        "source": "Xu et al. 2024, MTandHJ/CE-SCE-LLMRec SASRec/, GRU4Rec/ and "
        "BERT4Rec/benchmarks/beauty-ce-5 (seen items excluded, full ranking)",
        # the same repository's GRU4Rec log on this split (GRU4Rec/benchmarks/beauty-ce-5,
        # seed 0: best validation at epoch 100 of 200)
        "gru4rec_ce_test_ndcg10": 0.0388,
        "gru4rec_ce_valid_ndcg10": 0.0536,
        # and its BERT4Rec log (BERT4Rec/benchmarks/beauty-ce-5, seed 0: best validation at
        # epoch 185 of 200)
        "bert4rec_ce_test_ndcg10": 0.0422,
        "bert4rec_ce_valid_ndcg10": 0.0565,
    }
}
PUBLISHED_ROWS = {
    "sasrec_ce": "published SASRec (CE)",
    "gru4rec_ce": "published GRU4Rec (CE)",
    "bert4rec_ce": "published BERT4Rec (CE)",
}
SHORT = {"amazon-beauty": "beauty", "ml-100k": "ml100k"}


def model_settings(dataset: str, model: str) -> list[str]:
    """The recorded settings of ``model`` on ``dataset`` (sasrec-text: SASRec's plus text;
    sasrec-text-prior: sasrec-text's plus the content prior's weights chosen on validation)."""
    if model == "sasrec-text":
        return [*SETTINGS[dataset]["sasrec"], "model.name=sasrec-text", *SASREC_TEXT[dataset]]
    if model == "sasrec-text-prior":
        return [*model_settings(dataset, "sasrec-text"), CONTENT_WEIGHTS]
    return list(SETTINGS[dataset][model])


def run_sets(dataset: str, model: str, seed: int, cf_run: Path | None = None) -> list[str]:
    """Every ``--set`` of ``model``'s run on ``dataset`` with ``seed`` (DARec: started from the
    run folder ``cf_run``, frozen). No time limit, even where the model's settings have one
    (the demo's DARec on ML-100K)."""
    sets = [*DATASETS[dataset], *NO_LIMIT, *model_settings(dataset, model), f"train.seed={seed}"]
    if model == "darec":
        sets += [s.format(cf_run=cf_run) for s in FROM_CF]
    return [*sets, "train.max_minutes=0"]


def run_one(dataset: str, model: str, seed: int, out: Path, extra: list[str]) -> None:
    """Child process: one training run, its record written to ``out``. DARec first trains the
    run it starts from (``DAREC_CF``, same seed) in the same temporary folder."""
    settings = model_settings(dataset, model)
    with tempfile.TemporaryDirectory() as tmp:
        cf_run = Path(tmp) / "cf"
        if model == "darec":
            cf_sets = [*run_sets(dataset, DAREC_CF[dataset], seed), *extra]
            run_experiment(apply_overrides(Config(), cf_sets), cf_run)
        sets = [*run_sets(dataset, model, seed, cf_run), *extra]
        _, record = run_experiment(apply_overrides(Config(), sets), Path(tmp) / "run")
    row = record.to_json()
    row.pop("run_dir")
    row["dataset"], row["model"], row["settings"] = dataset, model, settings + extra
    out.write_text(json.dumps(row))


RUNTIME_ONLY = {"threads", "device", "max_minutes", "checkpoint_every_steps"}
"""Train settings that change how long a run takes, not what it learns."""


def _finished(run_dir: Path) -> dict[str, Any]:
    """The metrics.json of a finished run folder; ValueError when it has none."""
    path = run_dir / "metrics.json"
    if not path.exists():
        raise ValueError(f"{run_dir} has no metrics.json: the run has not finished")
    return dict(json.loads(path.read_text()))


def adopt(run_dir: Path, dataset: str, model: str) -> dict[str, Any]:
    """The record of a finished run folder, as ``run_one`` would have written it.

    ValueError when its saved settings differ from ``model``'s on ``dataset`` (naming each
    difference) or when it has not finished (no metrics.json)."""
    metrics = _finished(run_dir)
    saved = RunFolder.open(run_dir).config
    settings = model_settings(dataset, model)
    cf_run = Path(saved.darec.cf_checkpoint) if model == "darec" else None
    expected = apply_overrides(Config(), run_sets(dataset, model, metrics["seed"], cf_run))
    wanted, got = dataclasses.asdict(expected), dataclasses.asdict(saved)
    for cfg in (wanted, got):
        for name in RUNTIME_ONLY:
            cfg["train"].pop(name)
        # the same files, however their path and format were written
        cfg["data"]["path"] = str(Path(cfg["data"]["path"]).resolve())
        cfg["data"].pop("format")
        cfg["darec"].pop("cf_checkpoint")  # checked below
    diffs = [
        f"{section}.{name}: {got[section].get(name)!r} (expected {value!r})"
        for section in ("data", "model", "train", "eval", "text", "darec")
        for name, value in wanted[section].items()
        if got[section].get(name) != value
    ]
    if cf_run is not None:  # DARec's start: a finished run of DAREC_CF's model, same seed
        cf_metrics = _finished(cf_run)
        if cf_metrics["seed"] != metrics["seed"]:
            diffs.append(f"darec.cf_checkpoint: {cf_run} has seed {cf_metrics['seed']}")
    if diffs:
        wrong = "; ".join(diffs)
        raise ValueError(f"{run_dir} was not trained with the settings of {model}: {wrong}")
    keep = ("seed", "valid", "test", "epochs", "best_epoch", "train_seconds", "stopped")
    row: dict[str, Any] = {k: metrics[k] for k in keep}
    for optional in ("test_other_protocol", "test_by_popularity", "content_weight"):
        if optional in metrics:
            row[optional] = metrics[optional]
    row["commit"] = metrics.get("provenance", {}).get("commit", "")
    row["dataset"], row["model"], row["settings"] = dataset, model, settings
    row["adopted_from"] = str(run_dir)
    if model == "darec":
        row["cf_run"] = saved.darec.cf_checkpoint
    return row


def _stats(values: list[float]) -> dict[str, Any]:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": spread, "seeds": values}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of ``accuracy.json`` from the run records (see the module doc)."""
    out: dict[str, Any] = {"datasets": {}}
    for dataset in sorted({r["dataset"] for r in records}):
        rows = [r for r in records if r["dataset"] == dataset]
        models: dict[str, Any] = {}
        for model in sorted({r["model"] for r in rows}):
            runs = sorted((r for r in rows if r["model"] == model), key=lambda r: r["seed"])
            entry = {
                "seeds": [r["seed"] for r in runs],
                "valid_ndcg10": _stats([r["valid"]["NDCG@10"] for r in runs]),
                "test_ndcg10": _stats([r["test"]["NDCG@10"] for r in runs]),
                "test_hr10": _stats([r["test"]["HR@10"] for r in runs]),
                "epochs": [r["epochs"] for r in runs],
                "stopped": [r["stopped"] for r in runs],
                "train_minutes": [round(r["train_seconds"] / 60, 1) for r in runs],
            }
            if all(r.get("test_other_protocol") for r in runs):
                kept = [r["test_other_protocol"]["NDCG@10"] for r in runs]
                entry["test_ndcg10_seen_items_kept"] = _stats(kept)
            if all(r.get("content_weight") for r in runs):  # the prior's weight, per seed
                entry["content_weight"] = [r["content_weight"]["weight"] for r in runs]
            groups = [r.get("test_by_popularity") or {} for r in runs]
            for name in ("head", "torso", "tail"):
                if all(name in g for g in groups):
                    entry[f"test_ndcg10_{name}"] = _stats([g[name]["NDCG@10"] for g in groups])
            models[model] = entry
        out["datasets"][dataset] = {"models": models, "published": PUBLISHED.get(dataset, {})}
        short = SHORT.get(dataset, dataset)
        if "sasrec" not in models:
            continue
        base = models["sasrec"]["test_ndcg10"]
        out[f"{short}_sasrec_ndcg10"] = base["mean"]
        out[f"{short}_sasrec_ndcg10_seeds"] = base["seeds"]
        # a headline comparison needs as many seeds as SASRec's row; fewer stay in the table
        seeds = len(models["sasrec"]["seeds"])
        aware = {m: e for m, e in models.items() if m in TEXT_AWARE and len(e["seeds"]) >= seeds}
        if not aware:
            continue
        # chosen on validation: the test split plays no part in which model is "best"
        best = max(aware, key=lambda m: aware[m]["valid_ndcg10"]["mean"])
        out[f"{short}_best_model"] = best
        out[f"{short}_best_ndcg10"] = aware[best]["test_ndcg10"]["mean"]
        out[f"{short}_best_ndcg10_seeds"] = aware[best]["test_ndcg10"]["seeds"]
        out[f"{short}_ratio"] = aware[best]["test_ndcg10"]["mean"] / base["mean"]
    return out


def _cell(entry: dict[str, Any], key: str) -> str:
    stats = entry.get(key)
    if not stats:
        return "-"
    if len(stats["seeds"]) == 1:
        return f"{stats['mean']:.4f}"
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def table(summary: dict[str, Any]) -> str:
    """The headline table of ``summary``: mean ± standard deviation over seeds, both protocols,
    test NDCG@10 by target popularity, and the published anchors beside our rows."""
    lines = [
        "| dataset | model | seeds | valid NDCG@10 | test NDCG@10 | test HR@10 "
        "| test NDCG@10, seen items kept | head / torso / tail NDCG@10 | epochs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, block in summary["datasets"].items():
        for model, e in block["models"].items():
            thirds = " / ".join(
                f"{e[f'test_ndcg10_{n}']['mean']:.4f}" if f"test_ndcg10_{n}" in e else "-"
                for n in ("head", "torso", "tail")
            )
            lines.append(
                f"| {dataset} | {model} | {len(e['seeds'])} | {_cell(e, 'valid_ndcg10')} "
                f"| {_cell(e, 'test_ndcg10')} | {_cell(e, 'test_hr10')} "
                f"| {_cell(e, 'test_ndcg10_seen_items_kept')} | {thirds} "
                f"| {', '.join(str(n) for n in e['epochs'])} |"
            )
        published = block.get("published") or {}
        for key, name in PUBLISHED_ROWS.items():
            if f"{key}_test_ndcg10" in published:
                lines.append(
                    f"| {dataset} | {name} | - "
                    f"| {published[f'{key}_valid_ndcg10']:.4f} "
                    f"| {published[f'{key}_test_ndcg10']:.4f} | - | - | - | - |"
                )
    anchors = {b["published"]["source"] for b in summary["datasets"].values() if b["published"]}
    notes = [f"Published: {a}." for a in sorted(anchors)]
    return "\n".join([*lines, "", *notes]) if notes else "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="amazon-beauty", choices=list(DATASETS))
    parser.add_argument("--models", default="sasrec,sasrec-text", help="comma-separated")
    parser.add_argument("--seeds", default="42,43,44", help="comma-separated")
    parser.add_argument("--summary", action="store_true", help="only rewrite the summary")
    parser.add_argument("--adopt", type=Path, help="record this finished run folder (one model)")
    add_quick_args(parser, SUMMARY, "tiny data and LLM, sasrec, sasrec-text and darec, 2 seeds")
    add_child_args(parser, nargs=4)
    args = parser.parse_args()
    if args.one:
        dataset, model, seed, out = args.one
        run_one(dataset, model, int(seed), Path(out), args.set)
        return
    summary_path = results_path(args.out, SUMMARY, args.quick)
    runs_path = summary_path.with_name(RUNS.name) if args.quick else RUNS
    if args.quick:
        with quick_setup() as quick:
            models = ("sasrec-text", "darec")
            records = train(args, runs_path, quick.sets(), seeds=[1, 2], models=models)
    elif args.adopt:
        records = read_records(runs_path)
        store_record(adopt(args.adopt, args.dataset, args.models), records, runs_path)
    else:
        records = read_records(runs_path) if args.summary else train(args, runs_path, [])
    summary = summarize(records)
    write_json(summary_path, summary)
    if not args.quick:
        for path, block in ((DOC, "accuracy"), (README, "readme-accuracy")):
            replace_block(path, block, table(summary), "")
    print(f"wrote {summary_path}")


def train(
    args: argparse.Namespace,
    runs_path: Path,
    sets: list[str],
    seeds: list[int] | None = None,
    models: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Train every (model, seed) of ``args`` not yet in ``runs_path``; all its records."""
    records = read_records(runs_path)
    done = {(r["dataset"], r["model"], r["seed"]) for r in records}
    names = ["sasrec", *models] if models else args.models.split(",")
    for model in names:
        for seed in seeds or [int(s) for s in args.seeds.split(",")]:
            if (args.dataset, model, seed) in done:
                continue
            cmd = [sys.executable, __file__, *(f"--set={s}" for s in sets)]
            record = run_and_store(
                [*cmd, "--one", args.dataset, model, str(seed)], records, runs_path
            )
            print(json.dumps({"model": model, "seed": seed, "valid": record["valid"]["NDCG@10"]}))
    return records


if __name__ == "__main__":
    main()
