"""The workers that run a study's trials: processes on one machine, or on many sharing a storage.

Every worker (a ``darec search`` command, or one of its ``--workers`` processes) runs trials
until the study has ``search.trials`` finished ones (completed or pruned; failed trials do not
count), then stops:

- **exact count**: a worker starts a trial only while finished plus running trials are fewer
  than the target. When the rest are running elsewhere it waits for them (one of them may fail
  and need a replacement); a trial that two workers started at the same moment for the last
  slot is failed at once as "not run" (``surplus`` attribute), before training;
- **seeds**: the sampler is seeded per trial from ``search.seed`` and the trial's number, which
  the storage hands out once, so workers on any machine draw differently and a single-worker
  study is reproducible;
- **dead workers**: on SQL storages every worker fails trials without a heartbeat for
  ``search.grace_seconds`` when it starts and then every ``search.heartbeat_seconds`` (their
  parameters are queued again, ``search.max_retry`` times);
- **names**: a worker is ``host:pid/wN`` (N: its index among this command's ``--workers``), in
  its log lines and in the ``worker_id`` attribute of its trials.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from darec.config import Config, SearchConfig, config_from_dict, config_to_dict
from darec.errors import DarecError
from darec.search.objective import Objective, TrialFailed
from darec.search.space import build_space
from darec.search.study import (
    FINISHED,
    SearchError,
    backbone_shape,
    create_or_load_study,
    load_study,
    make_sampler,
    open_storage,
)

__all__ = ["TrialSeededSampler", "WorkerResult", "run_search", "run_worker", "trial_seed"]

log = logging.getLogger(__name__)


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number`` in a study seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """The study's sampler (:func:`~darec.search.study.make_sampler`), built afresh for each
    trial with :func:`trial_seed` of the trial's number.

    The samplers keep no state between trials besides their random generator (TPE and GP read
    the history from the storage), so this changes nothing but the seed."""

    def __init__(self, search: SearchConfig) -> None:
        self.search = search
        self._number = -1
        self._inner = make_sampler(search, search.seed)

    def _for(self, trial: FrozenTrial) -> BaseSampler:
        if trial.number != self._number:
            self._number = trial.number
            self._inner = make_sampler(self.search, trial_seed(self.search.seed, trial.number))
        return self._inner

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._for(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


@dataclass
class WorkerResult:
    """What one worker did."""

    worker: int
    trials: int
    """Trials this worker ran (any final state)."""
    finished: int
    """Finished trials in the study when the worker stopped (all workers)."""
    gave_up: bool = False
    """True when the worker stopped after ``search.max_failures`` failures in a row."""
    label: str = ""
    """``host:pid/wN``: the worker in log lines and in its trials' ``worker_id``."""


def worker_label(worker: int) -> str:
    return f"{socket.gethostname()}:{os.getpid()}/w{worker}"


def _has_heartbeats(storage: optuna.storages.BaseStorage) -> bool:
    return isinstance(storage, optuna.storages.RDBStorage) and bool(storage.heartbeat_interval)


def _fail_stale(study: optuna.Study) -> None:
    """Fail (and queue again) the study's trials whose worker stopped sending heartbeats."""
    with warnings.catch_warnings():  # experimental since optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class _StaleReaper:
    """Background thread: :func:`_fail_stale` every ``interval`` seconds while a worker runs,
    so a dead worker's trial is failed (and its retry queued) even while every live worker is
    busy with a long trial."""

    def __init__(self, study: optuna.Study, interval: float) -> None:
        self.study, self.interval = study, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="darec-stale-trials", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                _fail_stale(self.study)
            except Exception as exc:  # a lost connection: the next round tries again
                log.warning("could not check for stale trials: %s", exc)

    def __enter__(self) -> _StaleReaper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class _SurplusTrial(DarecError):
    """A trial started when the study's last slot was already taken (see the module doc)."""


def _counts(study: optuna.Study, exclude: int = -1) -> tuple[int, int]:
    """Finished and running trials of the study (without trial number ``exclude``)."""
    trials = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    finished = sum(t.state in FINISHED for t in trials if t.number != exclude)
    running = sum(t.state == TrialState.RUNNING for t in trials if t.number != exclude)
    return finished, running


_OWN_ATTRS = ("worker_id", "sampler_seed")


class _Guarded:
    """The objective as a worker runs it: names the worker in the trial, refuses a surplus
    trial, logs the start."""

    def __init__(
        self, objective: Callable[[optuna.Trial], Any], cfg: Config, label: str, exact: bool
    ) -> None:
        self.objective, self.cfg, self.label, self.exact = objective, cfg, label, exact
        self.surplus = 0
        """Trials this worker refused as surplus."""

    def __call__(self, trial: optuna.Trial) -> Any:
        trial.set_user_attr("worker_id", self.label)
        trial.set_user_attr("sampler_seed", trial_seed(self.cfg.search.seed, trial.number))
        if self.exact:
            self._refuse_surplus(trial)
        log.info("[%s] trial %d started", self.label, trial.number)
        return self.objective(trial)

    def _refuse_surplus(self, trial: optuna.Trial) -> None:
        target = self.cfg.search.trials
        trials = trial.study.get_trials(deepcopy=False)
        others = [t for t in trials if t.number != trial.number]
        if sum(t.state in (*FINISHED, TrialState.RUNNING) for t in others) < target:
            return
        # another worker took the last slot at the same moment; a queued point goes back
        this = next(t for t in trials if t.number == trial.number)
        if fixed := this.system_attrs.get("fixed_params"):
            queued = {k: v for k, v in this.user_attrs.items() if k not in _OWN_ATTRS}
            trial.study.enqueue_trial(fixed, queued)
        self.surplus += 1
        reason = f"not run: the study already had its {target} trials running or finished"
        trial.set_user_attr("surplus", True)
        trial.set_user_attr("fail_reason", reason)
        raise _SurplusTrial(reason)


class _Progress:
    """Study callback: one log line per trial that ends, naming the worker."""

    def __init__(self, label: str, target: int) -> None:
        self.label, self.target = label, target

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        attrs = trial.user_attrs
        if attrs.get("surplus"):
            return
        if trial.values:
            what = "values " + ", ".join(f"{v:.4f}" for v in trial.values)
        else:
            what = attrs.get("rejected") or attrs.get("fail_reason") or ""
        finished, _ = _counts(study)
        log.info(
            "[%s] trial %d %s (layout %s); %d of %d trials finished",
            self.label,
            trial.number,
            f"{trial.state.name} {what}".strip(),
            attrs.get("layout", "?"),
            finished,
            self.target,
        )


class _FailureStop:
    """Study callback: stop this worker after ``limit`` failed trials in a row (0: never)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.streak, self.trials, self.gave_up = limit, 0, 0, False

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.user_attrs.get("surplus"):
            return
        self.trials += 1
        self.streak = self.streak + 1 if trial.state == TrialState.FAIL else 0
        if self.limit and self.streak >= self.limit:
            self.gave_up = True
            study.stop()


def run_worker(
    cfg: Config,
    study_name: str,
    storage_url: str,
    run_root: str | Path,
    worker: int = 0,
    threads: int = 0,
) -> WorkerResult:
    """Run trials of the study until it has ``search.trials`` finished ones (module doc).

    Several workers (processes or machines) may run this on the same storage at once."""
    import torch

    if threads or cfg.train.threads:
        torch.set_num_threads(threads or cfg.train.threads)
    label = worker_label(worker)
    storage = open_storage(storage_url, cfg.search)
    layers, dims = backbone_shape(cfg)
    space = build_space(cfg, layers)
    study, _ = create_or_load_study(cfg, study_name, storage, space)
    study.sampler = TrialSeededSampler(cfg.search)
    target = cfg.search.trials
    # without heartbeats (journal files) a running trial may be a dead worker's: count only
    # finished trials there, or a killed worker's trial would hold its slot for ever
    exact = _has_heartbeats(storage)
    if exact:
        _fail_stale(study)
    objective = _Guarded(Objective(cfg, space, dims, Path(run_root)), cfg, label, exact)
    failures = _FailureStop(cfg.search.max_failures)
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = [
        failures,
        _Progress(label, target),
    ]
    poll = min(cfg.search.heartbeat_seconds, 5)
    jitter, surplus = random.Random(label), 0
    reaper: AbstractContextManager[object] = nullcontext()
    if exact:
        reaper = _StaleReaper(study, cfg.search.heartbeat_seconds)
    with reaper:
        while not failures.gave_up:
            finished, running = _counts(study)
            if finished >= target:
                break
            if exact and finished + running >= target:
                time.sleep(poll)  # the rest are running elsewhere; one may fail
                continue
            try:
                study.optimize(
                    objective,
                    n_trials=1,
                    catch=(TrialFailed, _SurplusTrial),
                    callbacks=callbacks,
                    gc_after_trial=True,
                )
            except ValueError as exc:
                # another worker failed this worker's trial as stale (a heartbeat that came
                # too late): the trial is lost, this worker is not
                if "Cannot tell a" not in str(exc):
                    raise
            if objective.surplus != surplus:
                surplus = objective.surplus
                time.sleep(jitter.uniform(0.1, 1.0))  # two workers raced: do not race again
    if failures.gave_up:
        log.warning(
            "[%s] gave up after %d failed trials in a row (search.max_failures)",
            label,
            failures.streak,
        )
    finished, _ = _counts(study)
    return WorkerResult(worker, failures.trials, finished, failures.gave_up, label)


def _worker_main(
    cfg_data: dict[str, Any],
    name: str,
    url: str,
    root: str,
    worker: int,
    threads: int,
    log_level: int | None,
) -> None:
    """A worker process: the parent's log level (None: it logs nowhere) on standard error."""
    if log_level is not None:
        logger = logging.getLogger("darec")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(log_level)
        logger.propagate = False
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # our lines name the worker
    run_worker(config_from_dict(cfg_data), name, url, root, worker, threads)


def _parent_log_level() -> int | None:
    logger = logging.getLogger("darec")
    return logger.getEffectiveLevel() if logger.handlers else None


def run_search(
    cfg: Config,
    study_name: str,
    storage_url: str,
    run_root: str | Path,
    workers: int = 1,
) -> optuna.Study:
    """Create or resume the study and run ``workers`` worker processes on it (one: this
    process). Returns the study after every worker has stopped.

    A worker process that fails is reported as a warning when the study has its
    ``search.trials`` nonetheless, and raises :class:`SearchError` when trials are missing.
    With several local workers each gets ``cpu_count // workers`` torch threads unless
    ``train.threads`` says otherwise."""
    if workers < 1:
        raise SearchError(f"--workers must be >= 1, got {workers}")
    layers, _ = backbone_shape(cfg)
    storage = open_storage(storage_url, cfg.search)
    create_or_load_study(cfg, study_name, storage, build_space(cfg, layers))
    failed: list[str] = []
    if workers == 1:
        run_worker(cfg, study_name, storage_url, run_root)
    else:
        from darec.run import load_data

        load_data(cfg)  # preprocess (and cache) the data once, not in every worker
        threads = cfg.train.threads or max(1, (os.cpu_count() or 1) // workers)
        ctx = multiprocessing.get_context("spawn")
        level = _parent_log_level()
        procs = [
            ctx.Process(
                target=_worker_main,
                args=(config_to_dict(cfg), study_name, storage_url, str(run_root), w, threads),
                kwargs={"log_level": level},
                name=f"darec-search-worker-{w}",
            )
            for w in range(workers)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        failed = [
            f"{p.name} ({socket.gethostname()}:{p.pid}, exit code {p.exitcode})"
            for p in procs
            if p.exitcode != 0
        ]
    study = load_study(study_name, storage)
    if failed:
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        target = cfg.search.trials
        if finished < target:
            raise SearchError(
                f"search worker(s) {', '.join(failed)} failed (see their output) and study "
                f"{study_name!r} has {finished} of {target} trials; run the same command again "
                "to add the missing ones"
            )
        log.warning(
            "search worker(s) %s failed (see their output); study %r has its %d trials",
            ", ".join(failed),
            study_name,
            target,
        )
    return study
