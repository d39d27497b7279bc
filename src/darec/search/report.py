"""Search reports: a markdown summary and figures, written into the search folder.

``search_report.md``         trials by state, search cost, best trials and their per-layer
                             layouts, known layouts, failed and rejected trials
``layout_heatmap.png``       architecture per layer and slot of the best trials (size written in)
``optimization_history.png`` Optuna's optimization history
``param_importances.png``    Optuna's parameter importances (fANOVA)
``pareto_front.png``         Optuna's Pareto front (cost-aware studies only)

Optuna's matplotlib plots are used where Optuna has the plot; a plot that cannot be drawn yet
(e.g. importances need two completed trials) is named in the summary with the reason.
"""

from __future__ import annotations

import datetime
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from darec.search.retrain import pareto_trials
from darec.search.space import SearchSpace
from darec.search.study import study_config, study_space

__all__ = ["SearchSummary", "summarize", "write_report"]

HEATMAP, HISTORY, IMPORTANCES, PARETO = (
    "layout_heatmap.png",
    "optimization_history.png",
    "param_importances.png",
    "pareto_front.png",
)
SUMMARY = "search_report.md"


@dataclass
class SearchSummary:
    """Numbers of a study, for the report, the CLI and the benchmark."""

    study: str
    metric: str
    objectives: list[str]
    states: dict[str, int]
    rejected: int
    trial_seconds: float
    """Sum of the durations of finished trials (the compute the search cost)."""
    wall_seconds: float
    """From the first trial's start to the last trial's end."""
    best: list[FrozenTrial] = field(default_factory=list)
    """Best trials (the Pareto front in cost-aware studies), best score first."""


def _seconds(trial: FrozenTrial) -> float:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return 0.0
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def summarize(study: optuna.Study) -> SearchSummary:
    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    return SearchSummary(
        study=study.study_name,
        metric=study_config(study).eval.select_metric,
        objectives=list(study.user_attrs.get("darec.objectives", ["ndcg"])),
        states=dict(Counter(t.state.name for t in trials)),
        rejected=sum("rejected" in t.user_attrs for t in trials),
        trial_seconds=sum(_seconds(t) for t in trials),
        wall_seconds=wall,
        best=pareto_trials(study),
    )


# ---------------------------------------------------------------- markdown


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _hours(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


def _trial_row(rank: int, t: FrozenTrial) -> str:
    values = t.values or []
    step = t.user_attrs.get("step_seconds", float("nan"))
    cells = [
        str(rank),
        str(t.number),
        f"{values[0]:.4f}" if values else "",
        f"{step:.3f}" if isinstance(step, float) and not math.isnan(step) else "",
        str(t.user_attrs.get("adapter_params", "")),
        f"`{t.user_attrs.get('layout', '')}`",
        ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items() if "." not in k) or "",
        t.user_attrs.get("known_layout", ""),
    ]
    return "| " + " | ".join(cells) + " |"


def _layer_table(space: SearchSpace, trial: FrozenTrial) -> list[str]:
    layout = space.layout(trial.params)
    lines = ["| layer | attn | mlp |", "|---|---|---|"]
    lines += [f"| {i} | `{layer.attn}` | `{layer.mlp}` |" for i, layer in enumerate(layout)]
    return lines


def _markdown(
    study: optuna.Study, summary: SearchSummary, figures: dict[str, str], top: int
) -> str:
    space = study_space(study)
    cfg = study_config(study)
    cost_aware = len(summary.objectives) > 1
    trials = study.get_trials(deepcopy=False)
    lines = [
        f"# Adapter search `{summary.study}`",
        "",
        f"- objective: validation {summary.metric} after {cfg.search.trial_epochs} epoch(s)"
        + (f" / {cfg.search.trial_minutes} min" if cfg.search.trial_minutes else "")
        + (" and measured training step time (Pareto front)" if cost_aware else ""),
        f"- space: {space.num_layers} layers in {space.num_groups} group(s) of "
        f"{space.group_size}, two slots each; choices per slot: "
        + ", ".join(f"`{c}`" for c in space.choices)
        + (f"; lr in {space.lr_range}" if space.lr_range else "")
        + (
            f"; {', '.join(space.task_weights)} in {space.task_weight_range}"
            if space.task_weights
            else ""
        ),
        f"- sampler: {cfg.search.sampler}, pruner: "
        f"{'none (cost-aware)' if cost_aware else cfg.search.pruner}, seed {cfg.search.seed}",
        "- the test split was not read during the search",
        "",
        "## Trials and cost",
        "",
        "| state | trials |",
        "|---|---|",
    ]
    lines += [f"| {state} | {n} |" for state, n in sorted(summary.states.items())]
    lines += [
        f"| of the pruned: rejected by a budget | {summary.rejected} |",
        "",
        f"Search cost: {_hours(summary.trial_seconds)} of trial time (h:mm:ss, summed over "
        f"workers), {_hours(summary.wall_seconds)} from the first trial's start to the last "
        "trial's end.",
        "",
    ]
    if summary.best:
        title = "Pareto front" if cost_aware else f"Best trials (top {top})"
        best = summary.best if cost_aware else _top(study, top)
        lines += [
            f"## {title}",
            "",
            f"| rank | trial | valid {summary.metric} | step s | adapter params | layout | other "
            "params | known layout |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [_trial_row(i + 1, t) for i, t in enumerate(best)]
        chosen = summary.best[0]
        lines += ["", f"## Per-layer layout of trial {chosen.number}", ""]
        lines += _layer_table(space, chosen)
        lines.append("")
    known = [t for t in trials if "known_layout" in t.user_attrs]
    if known:
        lines += ["## Known layouts", "", "| layout | trial | state | value |", "|---|---|---|---|"]
        for t in known:
            value = f"{t.values[0]:.4f}" if t.values else ""
            lines.append(
                f"| {t.user_attrs['known_layout']} | {t.number} | {t.state.name} | {value} |"
            )
        lines.append("")
    problems = [
        t
        for t in trials
        if "fail_reason" in t.user_attrs or "rejected" in t.user_attrs or t.state == TrialState.FAIL
    ]
    if problems:
        lines += [
            "## Failed and rejected trials",
            "",
            "| trial | state | reason |",
            "|---|---|---|",
        ]
        retries = {
            t.system_attrs["failed_trial"]: t.number
            for t in trials
            if "failed_trial" in t.system_attrs
        }
        for t in problems:
            reason = (
                t.user_attrs.get("rejected")
                or t.user_attrs.get("fail_reason")
                or "its worker stopped (no heartbeat)"
            )
            if t.number in retries:
                reason = f"{reason}; retried as trial {retries[t.number]}"
            lines.append(f"| {t.number} | {t.state.name} | {str(reason).replace('|', '/')} |")
        lines.append("")
    lines += ["## Figures", ""]
    for name, status in figures.items():
        lines.append(f"![{name}]({name})" if status == "ok" else f"- {name}: not drawn ({status})")
    return "\n".join(lines) + "\n"


def _top(study: optuna.Study, k: int) -> list[FrozenTrial]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: -(t.values or [-math.inf])[0])[:k]


# ---------------------------------------------------------------- figures


def _heatmap(study: optuna.Study, trials: list[FrozenTrial], path: Path) -> None:
    """Rows: (trial, slot); columns: layers; colour: architecture; text: size."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    if not trials:
        raise ValueError("no completed trial")
    space = study_space(study)
    kinds = list(dict.fromkeys(c.partition(":")[0] for c in space.choices))
    grid = np.zeros((2 * len(trials), space.num_layers), dtype=int)
    labels: list[str] = []
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * space.num_layers + 2), 0.45 * len(grid) + 1.6))
    for r, trial in enumerate(trials):
        layout = space.layout(trial.params)
        for s, slot in enumerate(("attn", "mlp")):
            row = 2 * r + s
            labels.append(f"#{trial.number} {slot}")
            for i, layer in enumerate(layout):
                spec = getattr(layer, slot)
                grid[row, i] = kinds.index(spec.kind)
                if spec.size:
                    ax.text(i, row, str(spec.size), ha="center", va="center", fontsize=7)
    tab10 = plt.get_cmap("tab10")
    cmap = ListedColormap(
        ["#f0f0f0" if kind == "none" else tab10(k % 10) for k, kind in enumerate(kinds)]
    )
    ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=len(kinds) - 0.5, aspect="auto")
    ax.set_xticks(range(space.num_layers))
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("decoder layer")
    ax.set_title("adapter per layer and slot (number: size)")
    ax.legend(
        handles=[Patch(color=cmap(k), label=kind) for k, kind in enumerate(kinds)],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
    )
    fig.savefig(path, bbox_inches="tight", dpi=120)
    plt.close(fig)


def _save_axes(ax: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    fig.savefig(path, bbox_inches="tight", dpi=120)
    plt.close(fig)


def write_report(study: optuna.Study, out_dir: str | Path, top: int = 5) -> Path:
    """Write the summary and figures (module docstring) into ``out_dir``; returns the
    summary's path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(study)
    metric = f"valid {summary.metric}"
    cost_aware = len(summary.objectives) > 1
    score = (lambda t: t.values[0]) if cost_aware else None
    heat_trials = summary.best[:top] if cost_aware else _top(study, top)

    plots: dict[str, Any] = {
        HEATMAP: lambda p: _heatmap(study, heat_trials, p),
        HISTORY: lambda p: _save_axes(
            ovm.plot_optimization_history(study, target=score, target_name=metric), p
        ),
        IMPORTANCES: lambda p: _save_axes(
            ovm.plot_param_importances(study, target=score, target_name=metric), p
        ),
    }
    if cost_aware:
        plots[PARETO] = lambda p: _save_axes(
            ovm.plot_pareto_front(study, target_names=[metric, "step seconds"]), p
        )
    figures: dict[str, str] = {}
    # optuna's plots switch the matplotlib style; the context puts it back afterwards
    with warnings.catch_warnings(), plt.style.context("default"):
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        for name, draw in plots.items():
            (out / name).unlink(missing_ok=True)
            try:
                draw(out / name)
                figures[name] = "ok"
            except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as exc:
                figures[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    path = out / SUMMARY
    path.write_text(_markdown(study, summary, figures, top), encoding="utf-8")
    return path
