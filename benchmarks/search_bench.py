"""Adapter search on MovieLens-100K: does a searched per-layer layout beat DARec_base?

The demo's DARec (SmolLM2-135M cut to 8 layers, titles and genres as item text, its CF model a
SASRec trained first and kept frozen) is searched for ``--trials`` trials on a short budget
(``--trial-epochs`` / ``--trial-minutes``), selecting on validation NDCG@10 only. Then the best
layout and DARec_base (``serial:16`` in every slot) are retrained with the same full budget
(``--max-minutes``) and seeds, and each is tested once. Finally the fastest layout of the
search's Pareto front (validation NDCG@10 against measured step time) whose validation NDCG@10
is within 2% of DARec_base's is timed beside DARec_base on the same batch.

    python benchmarks/search_bench.py                            # hours on 2 cores
    python benchmarks/search_bench.py --trials 2 --max-minutes 0.5 --results /tmp/s.json
    python benchmarks/search_bench.py --quick --results /tmp/s.json   # tiny data and LLM

Writes ``benchmarks/results/search.json``: ``base`` and ``searched`` test metrics (mean over
seeds), ``gain`` (searched / base test NDCG@10), ``fast_ratio`` (training throughput of that
fast layout / DARec_base's), ``trials``, ``pruned``, ``search_seconds`` and the best layouts.
The study (resumable: run the same command again) and its report are in ``--out``.

Cost on 2 CPU cores: DARec_base adapts all 8 layers, so nothing can be cached below them; one
training step at batch 32 takes about 20 s and needs several GB (about 16 GB at the demo's batch
of 256; ``--set train.batch_size=64`` on smaller machines). Layouts without adapters in the
lower layers are several times cheaper. Count a few minutes per trial beyond its budget (model
build, step timing, validation).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from benchlib.paths import DOC, RESULTS_DIR, ROOT
from benchlib.quick import add_quick_args, quick_setup
from benchlib.records import replace_block, results_path, write_json
from optuna.trial import TrialState

from darec.config import Config, apply_overrides
from darec.data.split import leave_one_out
from darec.experiment import demo_config, run_experiment
from darec.run import load_data
from darec.run.checkpoint import provenance
from darec.search import measure_step_time, retrain, run_search, write_report
from darec.search.space import BASE_SPEC
from darec.training.trainer import Trainer

RESULTS = RESULTS_DIR / "search.json"
PLOTS = ("layout_heatmap.png", "optimization_history.png", "param_importances.png")
WITHIN = 0.98  # "within 2% of DARec_base's validation NDCG@10"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20, help="search trials (>= 20 for the record)")
    p.add_argument("--trial-epochs", type=int, default=2, help="training epochs per trial")
    p.add_argument(
        "--trial-minutes",
        type=float,
        default=0.0,
        help="minutes per trial (default: a quarter of --max-minutes)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=12.0,
        help="full training budget of each retraining (the demo's 12 minutes)",
    )
    p.add_argument("--seeds", default="42", help="comma-separated seeds of the retrainings")
    p.add_argument("--workers", type=int, default=1, help="search worker processes")
    p.add_argument("--threads", type=int, default=2, help="torch threads per run")
    p.add_argument("--group-size", type=int, default=1, help="layers per searched group")
    p.add_argument("--study", default="search-bench-ml100k")
    p.add_argument("--storage", default="", help="default: sqlite in --out")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "search-bench")
    add_quick_args(
        p,
        RESULTS,
        "2 trials of 1 epoch, tiny data and LLM, study in a temporary folder",
        "--results",
        "record",
    )
    p.add_argument(
        "--set", dest="sets", action="append", default=[], help="extra config override (repeatable)"
    )
    p.add_argument(
        "--write-docs",
        action="store_true",
        help="only rewrite docs/results.md's search section (and its plots) from --results",
    )
    return p.parse_args()


def base_config(args: argparse.Namespace, quick_sets: list[str]) -> Config:
    """The demo's DARec with its frozen SASRec (trained here first, reused when present);
    ``quick_sets`` are added to both."""
    budget = [f"train.max_minutes={args.max_minutes}", f"train.threads={args.threads}"]
    cf_run = args.out / "sasrec"
    if not (cf_run / "checkpoints" / "pointers.json").exists():
        run_experiment(demo_config("sasrec", extra=budget + quick_sets), cf_run, test=False)
    trial_minutes = args.trial_minutes or args.max_minutes / 4
    return demo_config(
        "darec",
        extra=[
            *budget,
            f"darec.cf_checkpoint={cf_run}",
            "darec.cf_frozen=true",
            f"search.trials={args.trials}",
            f"search.trial_epochs={args.trial_epochs}",
            f"search.trial_minutes={trial_minutes}",
            f"search.group_size={args.group_size}",
            *args.sets,
            *quick_sets,
        ],
    )


def mean_metrics(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.fmean(r[k] for r in runs) for k in runs[0]}


def pareto_fast_layout(study: optuna.Study) -> tuple[optuna.trial.FrozenTrial, float] | None:
    """The fastest Pareto trial (validation score up, step time down) within 2% of the
    DARec_base trial's validation score, and that score; None without a DARec_base trial."""
    done = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.values]
    base = [t for t in done if t.user_attrs.get("known_layout") == "DARec_base"]
    if not base:
        return None
    floor = WITHIN * base[0].values[0]

    def step(t: optuna.trial.FrozenTrial) -> float:
        return float(t.user_attrs.get("step_seconds", float("inf")))

    front = [
        t
        for t in done
        if not any(
            o.values[0] >= t.values[0]
            and step(o) <= step(t)
            and (o.values[0] > t.values[0] or step(o) < step(t))
            for o in done
        )
    ]
    fast = [t for t in front if t.values[0] >= floor]
    return (min(fast, key=step), base[0].values[0]) if fast else None


def throughput_side_by_side(
    cfg: Config, layouts: dict[str, str], rounds: int = 3
) -> dict[str, float]:
    """Training windows per second of each layout, timed in alternating rounds on the same
    batch, median over rounds."""
    dataset = load_data(cfg)
    split = leave_one_out(dataset)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {
            name: Trainer(
                apply_overrides(cfg, [f"darec.adapters={text}"]), dataset, split, Path(tmp) / name
            )
            for name, text in layouts.items()
        }
        times: dict[str, list[float]] = {name: [] for name in layouts}
        for _ in range(rounds):
            for name, trainer in trainers.items():
                times[name].append(measure_step_time(trainer, steps=3))
    return {name: cfg.train.batch_size / statistics.median(ts) for name, ts in times.items()}


def _metrics_row(name: str, m: dict[str, float]) -> str:
    return f"| {name} | {m['HR@10']:.4f} | {m['NDCG@10']:.4f} | {m['MRR@10']:.4f} |"


def docs_block(record: dict[str, Any], plots: list[str]) -> str:
    """docs/results.md's adapter-search section from a search.json record."""
    budget = record["trial_budget"]
    lines = [
        f"`{record.get('command', 'python benchmarks/search_bench.py')}` "
        f"({record['trials']} trials, {record['pruned']} pruned, {record['failed']} failed, "
        f"{record['search_seconds'] / 60:.0f} minutes of search; each trial at most "
        f"{budget['epochs']} epochs or {budget['minutes']} minutes, then the best layout and "
        f"DARec_base retrained for {record['full_budget_minutes']} minutes each, seeds "
        f"{record['seeds']}, tested once):",
        "",
        "| layout | test HR@10 | test NDCG@10 | test MRR@10 |",
        "|---|---|---|---|",
        _metrics_row(f"DARec_base (`{record['base_layout']}`)", record["base"]),
        _metrics_row(f"searched (`{record['searched_layout']}`)", record["searched"]),
        "",
        f"- `gain` (searched / base test NDCG@10): **{record['gain']:.3f}** (target >= 1.05)",
    ]
    fast = record.get("fast")
    if fast:
        speed = fast["windows_per_second"]
        lines.append(
            f"- `fast_ratio`: **{record['fast_ratio']:.2f}** (target >= 3): trial {fast['trial']} "
            f"(`{fast['layout']}`, validation NDCG@10 {fast['valid_ndcg10']:.4f} against "
            f"DARec_base's {fast['base_valid_ndcg10']:.4f}) trains {speed['fast']:.2f} windows/s "
            f"against DARec_base's {speed['base']:.2f}, timed in alternating rounds on one batch"
        )
    else:
        lines.append("- `fast_ratio`: none (no Pareto layout within 2% of DARec_base)")
    lines += [
        "",
        "Best trials (validation NDCG@10 after the trial budget):",
        "",
        "| trial | valid NDCG@10 | layout | step s | adapter params | known layout |",
        "|---|---|---|---|---|---|",
    ]
    for t in record["best_layouts"]:
        lines.append(
            f"| {t['trial']} | {t['valid_ndcg10']:.4f} | `{t['layout']}` | "
            f"{t['step_seconds']:.2f} | {t['adapter_params']:,} | {t['known_layout'] or ''} |"
        )
    lines.append("")
    lines += [f"![{Path(name).stem}](img/search/{name})" for name in plots]
    return "\n".join(lines)


def write_docs(args: argparse.Namespace) -> None:
    """Rewrite docs/results.md's search section and copy the study's plots beside it."""
    record = json.loads((args.record or RESULTS).read_text())
    img = ROOT / "docs" / "img" / "search"
    img.mkdir(parents=True, exist_ok=True)
    plots = []
    for name in PLOTS:
        source = args.out / "search" / name
        if source.exists():
            shutil.copyfile(source, img / name)
            plots.append(name)
    replace_block(DOC, "search", docs_block(record, plots), "")


def main() -> None:
    args = parse_args()
    if args.write_docs:
        write_docs(args)
        return
    results = results_path(args.record, RESULTS, args.quick)
    if args.quick:
        args.trials, args.trial_epochs, args.seeds = 2, 1, "42"
        with quick_setup() as quick:
            args.out, args.storage = quick.folder / "search-bench", ""
            record = search(args, quick.sets())
    else:
        record = search(args, [])
    write_json(results, record)
    print(f"gain {record['gain']}, fast_ratio {record['fast_ratio']}; wrote {results}")


def search(args: argparse.Namespace, quick_sets: list[str]) -> dict[str, Any]:
    """The search, the retrainings and the timing of the fast layout: the record."""
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = base_config(args, quick_sets)
    storage = args.storage or f"sqlite:///{(args.out / 'study.db').resolve()}"
    started = time.monotonic()
    study = run_search(cfg, args.study, storage, args.out / "search", args.workers)
    search_seconds = time.monotonic() - started
    write_report(study, args.out / "search")

    seeds = [int(s) for s in args.seeds.split(",") if s]
    searched_runs: list[dict[str, Any]] = []
    base_runs: list[dict[str, Any]] = []
    best_layout = ""
    for seed in seeds:
        seeded = apply_overrides(cfg, [f"train.seed={seed}"])
        run_dir = args.out / f"searched-seed{seed}"
        resume = (run_dir / "checkpoints" / "pointers.json").exists()
        result, _, best = retrain(study, run_dir, base=seeded, resume=resume)
        best_layout = best.user_attrs["layout"]
        searched_runs.append(result.test)
        base_cfg = apply_overrides(seeded, [f"darec.adapters={BASE_SPEC}"])
        run_dir = args.out / f"base-seed{seed}"
        resume = (run_dir / "checkpoints" / "pointers.json").exists()
        base_result, _ = run_experiment(base_cfg, run_dir, resume=resume)
        base_runs.append(base_result.test)

    base, searched = mean_metrics(base_runs), mean_metrics(searched_runs)
    fast = pareto_fast_layout(study)
    fast_ratio, fast_info = None, None
    if fast is not None:
        trial, base_valid = fast
        speed = throughput_side_by_side(
            cfg, {"base": BASE_SPEC, "fast": trial.user_attrs["layout"]}
        )
        fast_ratio = speed["fast"] / speed["base"]
        fast_info = {
            "trial": trial.number,
            "layout": trial.user_attrs["layout"],
            "valid_ndcg10": trial.values[0],
            "base_valid_ndcg10": base_valid,
            "windows_per_second": speed,
        }

    trials = study.get_trials()
    complete = sorted(
        (t for t in trials if t.state == TrialState.COMPLETE and t.values),
        key=lambda t: -t.values[0],
    )
    record = {
        "dataset": "ml-100k",
        "model": "darec (demo: SmolLM2-135M, 8 layers, frozen SASRec CF model)",
        "study": args.study,
        "trials": sum(t.state != TrialState.WAITING for t in trials),  # queued ones never ran
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "search_seconds": round(search_seconds, 1),
        "trial_budget": {"epochs": cfg.search.trial_epochs, "minutes": cfg.search.trial_minutes},
        "full_budget_minutes": cfg.train.max_minutes,
        "seeds": seeds,
        "base_layout": BASE_SPEC,
        "searched_layout": best_layout,
        "base": base,
        "searched": searched,
        "gain": searched["NDCG@10"] / base["NDCG@10"] if base.get("NDCG@10") else None,
        "fast_ratio": fast_ratio,
        "fast": fast_info,
        "best_layouts": [
            {
                "trial": t.number,
                "valid_ndcg10": t.values[0],
                "layout": t.user_attrs.get("layout"),
                "step_seconds": t.user_attrs.get("step_seconds"),
                "adapter_params": t.user_attrs.get("adapter_params"),
                "known_layout": t.user_attrs.get("known_layout"),
            }
            for t in complete[:5]
        ],
        "base_runs": base_runs,
        "searched_runs": searched_runs,
        "commit": provenance()["commit"],
        "command": "python benchmarks/search_bench.py " + " ".join(sys.argv[1:]),
    }
    return record


if __name__ == "__main__":
    main()
