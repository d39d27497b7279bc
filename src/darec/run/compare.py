"""Run folders side by side (``darec compare``): what each run trained, how far it got, its
validation and test metrics, and the settings in which the runs differ.

A finished run is read from its ``metrics.json``; one still training, interrupted or resumed
past its ``metrics.json`` from its last checkpoint (its best validation so far, no test).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from darec.config import flat_config
from darec.run.folder import RunFolder
from darec.run.lock import lock_holder
from darec.run.state import TrainerState

__all__ = ["RunSummary", "Comparison", "summarize_run", "compare_runs", "OWN_ROWS"]

OWN_ROWS = ("model.name", "train.seed")
"""Config keys shown in a row of their own, so never among the differing settings."""


@dataclass(frozen=True)
class RunSummary:
    """One run folder as ``darec compare`` shows it."""

    run: str
    """The run folder, as given."""
    model: str
    dataset: str
    seed: int
    finished: bool
    """Training ended and the test split was read (``metrics.json`` matches the last checkpoint)."""
    stopped: str
    """Why training ended (``epochs``, ``early_stopping``, ``time_limit``, ``untrainable``);
    while unfinished: ``training (pid N on HOST)``, ``interrupted`` or ``not started`` (no
    checkpoint yet)."""
    best_epoch: int | None
    """Epoch of the selected validation (0: the validated start); None before any checkpoint."""
    epochs: int | None
    """Epochs trained (a partial one cut by the time limit counts)."""
    train_seconds: float | None
    exclude_history: bool
    """The run's own protocol (``eval.exclude_history``), the one ``valid`` was measured with."""
    valid: dict[str, float]
    """Validation metrics of the selected checkpoint (the best so far while unfinished)."""
    test: dict[str, float]
    """Test metrics with the items a user has seen excluded from the ranking; empty until the
    run has finished."""
    test_seen_kept: dict[str, float]
    """Test metrics with seen items kept as candidates; empty where not recorded."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Comparison:
    """What ``darec compare`` prints: a summary per run, and how their settings differ."""

    runs: list[RunSummary]
    differences: dict[str, list[Any]]
    """``section.key`` -> the value of every run, in order, for the keys whose values are not
    all equal (``OWN_ROWS`` left out)."""

    def to_json(self) -> dict[str, Any]:
        return {"runs": [r.to_json() for r in self.runs], "differences": self.differences}


def _is_current(metrics: dict[str, Any], progress: TrainerState | None) -> bool:
    """Whether ``metrics.json`` describes the last checkpoint (not a run resumed since)."""
    if progress is None:
        return True
    return metrics.get("epochs") == progress.epoch and progress.step_in_epoch == 0


def summarize_run(path: str | Path) -> RunSummary:
    """What run folder ``path`` trained and how far it got; raise ``CheckpointError`` (naming
    the folder or file) when it is not a run folder or one of its files is damaged."""
    return _summary(RunFolder.open(path), str(path))


def _summary(folder: RunFolder, label: str) -> RunSummary:
    cfg, progress, metrics = folder.config, folder.progress, folder.metrics
    holder = lock_holder(folder.path)
    # while unfinished: the last checkpoint's progress (nothing before the first one)
    summary = RunSummary(
        run=label,
        model=cfg.model.name,
        dataset=str(folder.ids.get("dataset", "")),
        seed=cfg.train.seed,
        finished=False,
        stopped=(
            f"training ({holder})"
            if holder is not None
            else "not started"
            if progress is None
            else "interrupted"
        ),
        best_epoch=None if progress is None else progress.best_epoch,
        epochs=None if progress is None else progress.epoch,
        train_seconds=None if progress is None else progress.elapsed,
        exclude_history=cfg.eval.exclude_history,
        valid={} if progress is None else progress.best_metrics(),
        test={},
        test_seen_kept={},
    )
    if metrics is None or holder is not None or not _is_current(metrics, progress):
        return summary
    test, other = metrics.get("test", {}), metrics.get("test_other_protocol", {})
    excluded = bool(metrics.get("exclude_history", cfg.eval.exclude_history))
    return dataclasses.replace(
        summary,
        finished=True,
        stopped=str(metrics.get("stopped", "")),
        best_epoch=metrics.get("best_epoch"),
        epochs=metrics.get("epochs"),
        train_seconds=metrics.get("train_seconds"),
        exclude_history=excluded,
        valid=metrics.get("valid", {}),
        test=test if excluded else other,
        test_seen_kept=other if excluded else test,
    )


def compare_runs(paths: Sequence[str | Path]) -> Comparison:
    """The summary of every run folder in ``paths`` and the settings that differ between them."""
    folders = [RunFolder.open(p) for p in paths]  # every folder checked before any is read
    runs = [_summary(folder, str(p)) for folder, p in zip(folders, paths, strict=True)]
    flats = [flat_config(folder.config) for folder in folders]
    differences: dict[str, list[Any]] = {}
    for key in dict.fromkeys(k for flat in flats for k in flat):  # every key once, in order
        values = [flat.get(key) for flat in flats]
        if key not in OWN_ROWS and any(v != values[0] for v in values):
            differences[key] = values
    return Comparison(runs, differences)
