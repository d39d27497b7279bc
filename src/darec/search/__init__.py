"""Bayesian search over per-layer adapter architectures (docs/design.md, "The adapter search").

    space.py      the search space, generated from the adapter registry; the known layouts
    objective.py  one trial: constraints, a timed training step, a short training run
    study.py      storage, sampler, pruner, study creation
    worker.py     the workers (processes, machines) that run a study's trials
    retrain.py    retrain the chosen layout with the full budget, test it once
    report.py     markdown summary and figures

Typical use (the ``darec search`` command does the same)::

    study = run_search(cfg, "ml100k", "sqlite:///runs/search/study.db", "runs/search", workers=2)
    write_report(study, "runs/search")
    retrain(study, "runs/search/best")
"""

from darec.search.objective import Objective, TrialFailed, measure_step_time, trial_config
from darec.search.report import SearchSummary, summarize, write_report
from darec.search.retrain import chosen_trial, pareto_trials, retrain
from darec.search.space import SearchSpace, build_space, known_layouts, slot_choices
from darec.search.study import (
    SearchError,
    backbone_shape,
    create_or_load_study,
    load_study,
    open_storage,
    study_config,
    study_space,
)
from darec.search.worker import WorkerResult, run_search, run_worker

__all__ = [
    "Objective",
    "SearchError",
    "SearchSpace",
    "SearchSummary",
    "TrialFailed",
    "WorkerResult",
    "backbone_shape",
    "build_space",
    "chosen_trial",
    "create_or_load_study",
    "known_layouts",
    "load_study",
    "measure_step_time",
    "open_storage",
    "pareto_trials",
    "retrain",
    "run_search",
    "run_worker",
    "slot_choices",
    "study_config",
    "study_space",
    "summarize",
    "trial_config",
    "write_report",
]
