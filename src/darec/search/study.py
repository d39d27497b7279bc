"""Study storage, sampler and pruner, and the creation of a study (the workers: worker.py).

A study lives in storage, so it resumes after a crash and any number of workers (processes, or
machines sharing one SQL database) can add trials to it:

- ``sqlite:///path/study.db`` (default: ``study.db`` in the search folder), or a path ending
  in ``.db``/``.sqlite``;
- any SQLAlchemy URL, e.g. ``postgresql://user@host/db`` for several machines (the driver,
  psycopg 3, comes with ``pip install 'darec[postgres]'``);
- ``journal:path/study.log`` (or a path ending in ``.log``/``.journal``): an append-only
  journal file.

SQL storages record a heartbeat of every running trial; a trial whose worker died is failed
after ``search.grace_seconds`` and queued again (``search.max_retry`` times), see worker.py.
"""

from __future__ import annotations

import importlib
import re
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import TrialState

from darec.config import Config, SearchConfig, config_from_run, config_to_dict
from darec.errors import ConfigError, DarecError
from darec.models.adapters import LayerDims
from darec.search.space import SearchSpace, known_layouts

__all__ = [
    "SearchError",
    "MACHINE_KEYS",
    "open_storage",
    "sqlalchemy_url",
    "make_sampler",
    "make_pruner",
    "backbone_shape",
    "create_or_load_study",
    "load_study",
    "study_config",
    "study_space",
    "settings_differences",
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
    url = sqlalchemy_url(url)
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
            hint = f"; {_PG_EXTRA}" if url.startswith("postgres") else ""
            raise SearchError(f"cannot open study storage {_redact(url)}: {exc}{hint}") from exc
        except Exception as exc:  # sqlalchemy.exc.OperationalError and friends
            # workers that start together on a new database race to create its tables: one
            # wins, the others see a duplicate key or a table that "already exists"
            raced = "IntegrityError" in type(exc).__name__ or "already exists" in str(exc)
            if attempt == 2 or not raced:
                raise SearchError(f"cannot connect to study storage {_redact(url)}: {exc}") from exc
            time.sleep(1.0 + attempt)
    if url.startswith("sqlite"):
        _serialize_sqlite(storage.engine)
    return storage


_PG_DRIVERS = ("psycopg", "psycopg2")
"""PostgreSQL drivers SQLAlchemy knows, in the order taken for a plain ``postgresql://``."""
_PG_EXTRA = "install the PostgreSQL driver with: pip install 'darec[postgres]' (psycopg 3)"


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def sqlalchemy_url(url: str) -> str:
    """``url`` with a PostgreSQL driver that is installed.

    A plain ``postgresql://`` (or ``postgres://``) URL names no driver, and SQLAlchemy picks
    one by its version (psycopg2 before 2.1, psycopg 3 since), which may not be installed; it
    becomes ``postgresql+psycopg://`` (the ``darec[postgres]`` extra) or, without psycopg 3,
    ``postgresql+psycopg2://``. Other URLs are returned as they are."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return url
    for driver in _PG_DRIVERS:
        if _importable(driver):
            return f"postgresql+{driver}://{rest}"
    raise SearchError(
        f"study storage {_redact(url)} needs a PostgreSQL driver and neither psycopg nor "
        f"psycopg2 is installed; {_PG_EXTRA}"
    )


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
    differ = settings_differences(study_config(study), cfg)
    if differ:
        raise SearchError(
            f"study {name!r} was created with other training settings; here "
            + "; ".join(differ)
            + ". Its trials would not be comparable: use the study's settings (its base "
            "config is stored in the study) or choose a new --study name"
        )
    return study, False


MACHINE_KEYS = frozenset(
    {
        "cache_dir",
        "data.path",
        "data.item_path",
        "data.cache",
        "text.encoder",
        "train.threads",
        "train.device",
        "eval.batch_size",
        "eval.max_scores",
        "darec.cf_checkpoint",
        "darec.item_batch_size",
        "darec.checkpoint_activations",
        "darec.activation_budget_mb",
        "darec.compile",
        "darec.catalog_cache_mb",
        "darec.lean_inference",
    }
)
"""Keys that may differ between the workers of one study: where this machine keeps its files
and how it runs, not what a trial trains. The ``[search]`` section may differ too (its space
and objectives are checked on their own)."""


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def settings_differences(study_cfg: Config, cfg: Config) -> list[str]:
    """The training settings in which ``cfg`` differs from the study's base config, as
    ``key = value (study: value)``, sorted; :data:`MACHINE_KEYS` and ``[search]`` excepted."""
    ours, theirs = _flat(config_to_dict(cfg)), _flat(config_to_dict(study_cfg))
    return [
        f"{key} = {ours.get(key)!r} (study: {theirs.get(key)!r})"
        for key in sorted(ours.keys() | theirs.keys())
        if not key.startswith("search.")
        and key not in MACHINE_KEYS
        and ours.get(key) != theirs.get(key)
    ]


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
