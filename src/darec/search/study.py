"""Studies in storage, their sampler and pruner, and the workers that run trials.

A study lives in storage, so it resumes after a crash and any number of workers (processes, or
machines sharing one SQL database) can add trials to it:

- ``sqlite:///path/study.db`` (default: ``study.db`` in the search folder), or a path ending
  in ``.db``/``.sqlite``;
- any SQLAlchemy URL, e.g. ``postgresql://user@host/db`` for several machines;
- ``journal:path/study.log`` (or a path ending in ``.log``/``.journal``): an append-only
  journal file.

SQL storages record a heartbeat of every running trial; a trial whose worker died is failed
after ``search.grace_seconds`` and queued again (``search.max_retry`` times) by the next worker
that starts a trial, so a killed worker loses at most its running trial.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import TrialState

from darec.config import Config, SearchConfig, config_from_dict, config_from_run, config_to_dict
from darec.errors import ConfigError, DarecError
from darec.models.adapters import LayerDims
from darec.search.objective import Objective, TrialFailed
from darec.search.space import SearchSpace, build_space, known_layouts

__all__ = [
    "SearchError",
    "WorkerResult",
    "open_storage",
    "make_sampler",
    "make_pruner",
    "backbone_shape",
    "create_or_load_study",
    "load_study",
    "study_config",
    "study_space",
    "run_worker",
    "run_search",
    "FINISHED",
]

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
"""Trials that count towards ``search.trials`` (failed ones do not)."""

_SPACE, _CONFIG, _OBJECTIVES = "darec.space", "darec.config", "darec.objectives"


class SearchError(DarecError):
    """A study cannot be created, loaded or run as asked."""


def _is_journal(url: str) -> bool:
    return url.startswith("journal:") or url.endswith((".log", ".journal"))


def open_storage(url: str, search: SearchConfig | None = None) -> optuna.storages.BaseStorage:
    """The storage behind ``url`` (module docstring), with heartbeats on SQL storages."""
    search = search or SearchConfig()
    if not url:
        raise SearchError("no study storage given; pass --storage (e.g. sqlite:///study.db)")
    if _is_journal(url):
        path = Path(url.removeprefix("journal:").removeprefix("///")).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    if "://" not in url:
        if not url.endswith((".db", ".sqlite", ".sqlite3")):
            raise SearchError(
                f"storage {url!r} is neither a URL (sqlite:///..., postgresql://...) nor a "
                "file ending in .db, .sqlite, .log or .journal"
            )
        url = f"sqlite:///{Path(url).expanduser().resolve()}"
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        db = url.split(":///", 1)[-1]
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        # several worker processes share one file: wait for its lock instead of failing, and
        # let SQLAlchemy (not the sqlite3 module) open transactions; see _serialize_sqlite
        engine_kwargs = {"connect_args": {"timeout": 60, "isolation_level": None}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    for attempt in range(3):
        try:
            storage = _rdb_storage(url, engine_kwargs, search)
            break
        except (ImportError, ValueError) as exc:
            raise SearchError(f"cannot open study storage {_redact(url)}: {exc}") from exc
        except Exception as exc:  # sqlalchemy.exc.OperationalError and friends
            # workers that start together on a new database race to create its tables
            if attempt == 2 or "IntegrityError" not in type(exc).__name__:
                raise SearchError(f"cannot connect to study storage {_redact(url)}: {exc}") from exc
            time.sleep(1.0 + attempt)
    if url.startswith("sqlite"):
        _serialize_sqlite(storage.engine)
    return storage


def _rdb_storage(
    url: str, engine_kwargs: dict[str, Any], search: SearchConfig
) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():  # heartbeats are "experimental" since optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=search.heartbeat_seconds,
            grace_period=search.grace_seconds,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=search.max_retry
            ),
        )


def _serialize_sqlite(engine: Any) -> None:
    """Start every SQLite transaction with ``BEGIN IMMEDIATE`` (the file's write lock).

    SQLite ignores ``SELECT ... FOR UPDATE``, and the sqlite3 module begins a transaction only
    at the first write, so two worker processes could both read a queued trial as WAITING and
    both run it. Taking the lock when the transaction begins makes the read and the update
    one step; workers wait for each other (``timeout``) instead."""
    import sqlalchemy

    def begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    sqlalchemy.event.listen(engine, "begin", begin)


def _redact(url: str) -> str:
    """``url`` without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def make_sampler(search: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    """Multivariate TPE (default), the GP sampler or random sampling, seeded with ``seed``."""
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search.sampler == "gp":
        try:
            import scipy  # noqa: F401  (GPSampler needs it; say so before the first trial)
        except ImportError:
            raise SearchError("search.sampler=gp needs scipy: pip install scipy") from None
        return optuna.samplers.GPSampler(
            seed=seed, n_startup_trials=search.startup_trials, warn_independent_sampling=False
        )
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=search.startup_trials,
        multivariate=True,
        constant_liar=True,  # workers running side by side do not all try the same point
    )


def make_pruner(search: SearchConfig, by_steps: bool = False) -> optuna.pruners.BasePruner:
    """Median pruner (default) or Hyperband over a trial's validations; none for cost-aware
    studies. ``by_steps``: trials validate every ``train.eval_every_steps`` steps, so
    Hyperband learns their number instead of taking ``search.trial_epochs``."""
    if search.pruner == "none" or "step_time" in search.objectives:
        return optuna.pruners.NopPruner()
    if search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1,
            max_resource="auto" if by_steps else search.trial_epochs or "auto",
            reduction_factor=3,
        )
    return optuna.pruners.MedianPruner(
        n_startup_trials=search.pruner_startup_trials,
        # steps are 1-based validation counts: the first pruner_warmup_evals are never pruned
        n_warmup_steps=search.pruner_warmup_evals + 1,
    )


def backbone_shape(cfg: Config) -> tuple[int, LayerDims]:
    """Decoder layers kept and layer widths of ``cfg.text.encoder``, from its config alone."""
    from transformers import AutoConfig

    from darec.models.backbone import resolve_backbone_path
    from darec.paths import cache_dir

    path = resolve_backbone_path(cfg.text.encoder, cache_dir(cfg.cache_dir))
    local = Path(path).expanduser().exists()
    try:
        llm = AutoConfig.from_pretrained(path, local_files_only=local)
    except OSError as exc:
        raise ConfigError(f"could not read text.encoder {cfg.text.encoder!r}: {exc}") from exc
    llm = getattr(llm, "text_config", llm)
    total = int(llm.num_hidden_layers)
    layers = cfg.text.encoder_layers or total
    if layers > total:
        raise ConfigError(
            f"text.encoder_layers = {layers}, but {cfg.text.encoder!r} has {total} layers"
        )
    return layers, LayerDims.from_config(llm)


def _directions(search: SearchConfig) -> list[StudyDirection]:
    return [
        StudyDirection.MAXIMIZE if o == "ndcg" else StudyDirection.MINIMIZE
        for o in search.objectives
    ]


def create_or_load_study(
    cfg: Config, name: str, storage: optuna.storages.BaseStorage, space: SearchSpace
) -> tuple[optuna.Study, bool]:
    """Create study ``name`` (first trials: the known layouts) or load it; True when created.

    A study remembers its space, objectives and base config; loading it with a different
    space or objectives is an error (the trials would not be comparable)."""
    if cfg.model.name != "darec":
        raise SearchError(f"the adapter search needs model.name = darec, got {cfg.model.name!r}")
    directions = _directions(cfg.search)
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=directions,
        sampler=make_sampler(cfg.search, cfg.search.seed),
        pruner=make_pruner(cfg.search, by_steps=bool(cfg.train.eval_every_steps)),
        load_if_exists=True,
    )
    attrs = study.user_attrs
    if _SPACE not in attrs:  # new (or created by a worker that died before writing its attrs)
        study.set_user_attr(_SPACE, space.to_json())
        study.set_user_attr(_OBJECTIVES, list(cfg.search.objectives))
        study.set_user_attr(_CONFIG, config_to_dict(cfg))
        if cfg.search.known_layouts:
            for label, text in known_layouts(space).items():
                params = space.params_for(text, cfg)
                if params is not None:
                    study.enqueue_trial(params, {"known_layout": label}, skip_if_exists=True)
        return study, True
    if attrs[_SPACE] != space.to_json():
        raise SearchError(
            f"study {name!r} was created with another search space ({attrs[_SPACE]}), not "
            f"{space.to_json()}; keep its [search] settings or choose a new --study name"
        )
    if attrs.get(_OBJECTIVES) != list(cfg.search.objectives):
        raise SearchError(
            f"study {name!r} has objectives {attrs.get(_OBJECTIVES)}, not "
            f"{list(cfg.search.objectives)}; choose a new --study name"
        )
    return study, False


def load_study(name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """An existing study (for reports and retraining); a clear error when there is none."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise SearchError(
            f"no study {name!r} in this storage; studies there: {', '.join(names) or 'none'}"
        ) from None
    if _SPACE not in study.user_attrs:
        raise SearchError(f"study {name!r} was not created by `darec search`")
    return study


def study_config(study: optuna.Study) -> Config:
    """The base config the study was created with."""
    return config_from_run(study.user_attrs[_CONFIG])  # stored whole, like a run folder's


def study_space(study: optuna.Study) -> SearchSpace:
    return SearchSpace.from_json(study.user_attrs[_SPACE])


def _count(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


class _FailureStop:
    """Study callback: stop this worker after ``limit`` failed trials in a row (0: never)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.streak, self.trials, self.gave_up = limit, 0, 0, False

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.trials += 1
        self.streak = self.streak + 1 if trial.state == TrialState.FAIL else 0
        if self.limit and self.streak >= self.limit:
            self.gave_up = True
            study.stop()


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


def run_worker(
    cfg: Config,
    study_name: str,
    storage_url: str,
    run_root: str | Path,
    worker: int = 0,
    threads: int = 0,
) -> WorkerResult:
    """Run trials of the study until it has ``search.trials`` finished ones.

    Several workers (processes or machines) may run this on the same storage at once. The
    sampler's seed is ``search.seed`` plus 1000 x ``worker`` plus the trials already in the
    study, so a fresh single-worker study is reproducible and side-by-side workers differ."""
    import torch

    if threads or cfg.train.threads:
        torch.set_num_threads(threads or cfg.train.threads)
    storage = open_storage(storage_url, cfg.search)
    layers, dims = backbone_shape(cfg)
    space = build_space(cfg, layers)
    study, _ = create_or_load_study(cfg, study_name, storage, space)
    seed = cfg.search.seed + 1000 * worker + len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(cfg.search, seed)
    target = cfg.search.trials
    left = target - _count(study, FINISHED)
    if left <= 0:
        return WorkerResult(worker, 0, _count(study, FINISHED))
    objective = Objective(cfg, space, dims, Path(run_root))
    failures = _FailureStop(cfg.search.max_failures)
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = [
        optuna.study.MaxTrialsCallback(target, states=FINISHED),
        failures,
    ]
    for _ in range(3):
        try:
            study.optimize(
                objective, catch=(TrialFailed,), callbacks=callbacks, gc_after_trial=True
            )
            break
        except ValueError as exc:
            # another worker failed this worker's trial as stale (a heartbeat that came too
            # late): the trial is lost, this worker is not
            if "Cannot tell a" not in str(exc):
                raise
    return WorkerResult(worker, failures.trials, _count(study, FINISHED), failures.gave_up)


def _worker_main(
    cfg_data: dict[str, Any], name: str, url: str, root: str, worker: int, threads: int
) -> None:
    run_worker(config_from_dict(cfg_data), name, url, root, worker, threads)


def run_search(
    cfg: Config,
    study_name: str,
    storage_url: str,
    run_root: str | Path,
    workers: int = 1,
) -> optuna.Study:
    """Create or resume the study and run ``workers`` worker processes on it (one: this
    process). Returns the study after every worker has stopped.

    With several local workers each gets ``cpu_count // workers`` torch threads unless
    ``train.threads`` says otherwise."""
    if workers < 1:
        raise SearchError(f"--workers must be >= 1, got {workers}")
    layers, _ = backbone_shape(cfg)
    storage = open_storage(storage_url, cfg.search)
    create_or_load_study(cfg, study_name, storage, build_space(cfg, layers))
    if workers == 1:
        run_worker(cfg, study_name, storage_url, run_root)
    else:
        from darec.run import load_data

        load_data(cfg)  # preprocess (and cache) the data once, not in every worker
        threads = cfg.train.threads or max(1, (os.cpu_count() or 1) // workers)
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(
                target=_worker_main,
                args=(config_to_dict(cfg), study_name, storage_url, str(run_root), w, threads),
                name=f"darec-search-worker-{w}",
            )
            for w in range(workers)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        failed = [p.name for p in procs if p.exitcode != 0]
        if failed:
            raise SearchError(f"search workers {failed} exited with an error (see their output)")
    return load_study(study_name, storage)
