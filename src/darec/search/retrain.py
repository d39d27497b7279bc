"""After a search: retrain the chosen layout with the full budget and test it once.

The result is an ordinary run folder (config, ids, safetensors checkpoints, metrics), so
``darec evaluate`` and ``darec recommend`` take it like any trained run; ``search.json`` beside
it says which study and trial it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from darec.config import Config, config_to_dict
from darec.experiment import RunRecord, run_experiment
from darec.run.checkpoint import atomic_write_json
from darec.search.study import SearchError, study_config, study_space
from darec.training.trainer import FitResult, TrainCallback

__all__ = ["chosen_trial", "pareto_trials", "retrain"]


def pareto_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials on the Pareto front (single objective: the best trial), best score
    first."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return []
    front = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    return sorted(front, key=lambda t: -_score(t))


def _score(trial: FrozenTrial) -> float:
    assert trial.values is not None
    return trial.values[0]


def chosen_trial(study: optuna.Study, number: int | None = None) -> FrozenTrial:
    """Trial ``number`` (must be complete), or the best: the best score, and in a cost-aware
    study the Pareto point with the best score."""
    if number is not None:
        trials = [t for t in study.get_trials(deepcopy=False) if t.number == number]
        if not trials:
            raise SearchError(f"study {study.study_name!r} has no trial {number}")
        if trials[0].state != TrialState.COMPLETE:
            raise SearchError(
                f"trial {number} of study {study.study_name!r} is {trials[0].state.name}, "
                "not COMPLETE; choose a completed trial"
            )
        return trials[0]
    front = pareto_trials(study)
    if not front:
        raise SearchError(f"study {study.study_name!r} has no completed trial yet")
    return front[0]


def retrain(
    study: optuna.Study,
    run_dir: str | Path,
    number: int | None = None,
    base: Config | None = None,
    callback: TrainCallback | None = None,
    resume: bool = False,
) -> tuple[FitResult, RunRecord, FrozenTrial]:
    """Train the chosen trial's point (:func:`chosen_trial`) with the full ``[train]`` budget of
    ``base`` (default: the config the study was created with), select on validation, and
    evaluate the test split once. Writes a normal run folder plus ``search.json``."""
    trial = chosen_trial(study, number)
    space = study_space(study)
    cfg = space.apply(base or study_config(study), trial.params)
    result, record = run_experiment(cfg, run_dir, callback, resume=resume, test=True)
    info: dict[str, Any] = {
        "study": study.study_name,
        "trial": trial.number,
        "params": trial.params,
        "layout": cfg.darec.adapters,
        "search_values": trial.values,
        "config": config_to_dict(cfg),
    }
    atomic_write_json(Path(run_dir) / "search.json", info)
    return result, record, trial
