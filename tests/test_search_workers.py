"""Searches across machines: the PostgreSQL driver of a plain URL, distinct sampler seeds,
dead workers' trials, workers with other settings, failed worker processes, the exact trial
count and log lines that name the worker. The trials here do not train: a quick objective stands
in for the real one, so each test takes seconds."""

from __future__ import annotations

import logging
import sys
import threading
import time
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import darec.search.worker as worker_module
from darec.config import Config, apply_overrides, config_from_dict
from darec.search import (
    SearchError,
    build_space,
    create_or_load_study,
    load_study,
    open_storage,
    run_search,
    run_worker,
)
from darec.search.space import SearchSpace
from darec.search.study import sqlalchemy_url
from tests.test_search import ROOT, search_cfg, sqlite

QUICK = ["search.known_layouts=false", "search.heartbeat_seconds=1", "search.grace_seconds=30"]


class QuickObjective:
    """Stands in for :class:`darec.search.objective.Objective`: samples a point, no training.
    ``hooks`` (per trial number) run inside the trial; ``on_init`` when a worker builds it."""

    hooks: dict[int, Any] = {}
    on_init: Any = None

    def __init__(self, cfg: Config, space: SearchSpace, dims: Any, run_root: Path) -> None:
        self.space = space
        if QuickObjective.on_init is not None:
            QuickObjective.on_init()

    def __call__(self, trial: optuna.Trial) -> float:
        params = self.space.suggest(trial)
        trial.set_user_attr("layout", str(self.space.overrides(params)[0]))
        if hook := QuickObjective.hooks.get(trial.number):
            hook(trial)
        return 0.5


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[QuickObjective]]:
    monkeypatch.setattr(worker_module, "Objective", QuickObjective)
    QuickObjective.hooks, QuickObjective.on_init = {}, None
    yield QuickObjective
    QuickObjective.hooks, QuickObjective.on_init = {}, None


@pytest.fixture
def worker_log() -> Iterator[list[logging.LogRecord]]:
    """Records of the worker module's logger (whatever the CLI did to the "darec" logger)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("darec.search.worker")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def _in_threads(*targets: Any) -> None:
    errors: list[BaseException] = []

    def run(target: Any) -> None:
        try:
            target()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def _stale_running_trial(study: optuna.Study, storage: Any) -> int:
    """A RUNNING trial whose last heartbeat is long past (its worker died); its number."""
    with warnings.catch_warnings():  # "heartbeat ... supposed to be used with optimize"
        warnings.simplefilter("ignore", UserWarning)
        trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    with storage.engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00' "
            f"WHERE trial_id = {trial._trial_id}"
        )
    return trial.number


def _state(url: str, name: str, number: int) -> TrialState:
    study = load_study(name, open_storage(url))
    return next(t.state for t in study.trials if t.number == number)


# ---------------------------------------------------------------- the PostgreSQL driver


def test_plain_postgresql_url_takes_an_installed_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert extras["postgres"] == ["psycopg[binary]>=3.1"]
    for extra in ("test", "dev"):  # the tests run the driver the docs name
        assert "psycopg[binary]>=3.1" in extras[extra], extra
    assert "sqlite:///x.db" == sqlalchemy_url("sqlite:///x.db")
    assert sqlalchemy_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"

    monkeypatch.setitem(sys.modules, "psycopg", None)  # psycopg 3 not installed
    monkeypatch.setitem(sys.modules, "psycopg2", object())
    assert sqlalchemy_url("postgresql://u:pw@h/db") == "postgresql+psycopg2://u:pw@h/db"
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # no driver at all
    with pytest.raises(SearchError, match=r"pip install 'darec\[postgres\]'") as err:
        open_storage("postgresql://user:secret@db.example/study")
    assert "secret" not in str(err.value) and "user:***@db.example" in str(err.value)


# ---------------------------------------------------------------- seeds and names


def test_workers_started_together_draw_different_points(
    tiny_data: Path,
    tmp_path: Path,
    tiny_llm_dir: Path,
    quick: type[QuickObjective],
    worker_log: list[logging.LogRecord],
) -> None:
    # two machines start `darec search` at once: both are worker 0 of an empty study
    cfg = search_cfg(tiny_data, tmp_path, tiny_llm_dir, "search.trials=2", *QUICK)
    url = sqlite(tmp_path)
    both_ready = threading.Barrier(2, timeout=30)
    quick.on_init = both_ready.wait  # both workers are set up before either samples
    first = threading.Barrier(2, timeout=30)
    quick.hooks = {0: lambda t: first.wait(), 1: lambda t: first.wait()}
    _in_threads(*[lambda: run_worker(cfg, "seeds", url, tmp_path / "search")] * 2)

    trials = sorted(load_study("seeds", open_storage(url)).trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert trials[0].params != trials[1].params
    assert trials[0].user_attrs["sampler_seed"] != trials[1].user_attrs["sampler_seed"]
    assert all(t.user_attrs["worker_id"].endswith("/w0") for t in trials)
    lines = [r.getMessage() for r in worker_log]
    for t in trials:  # one line when it starts and one when it ends, naming the worker
        worker = t.user_attrs["worker_id"]
        assert f"[{worker}] trial {t.number} started" in lines
        assert any(line.startswith(f"[{worker}] trial {t.number} COMPLETE") for line in lines)


def test_a_single_worker_study_is_reproducible(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path, quick: type[QuickObjective]
) -> None:
    cfg = search_cfg(tiny_data, tmp_path, tiny_llm_dir, "search.trials=2", *QUICK)
    points = []
    for name in ("a", "b"):
        run_worker(cfg, name, sqlite(tmp_path), tmp_path / "search")
        points.append([t.params for t in load_study(name, open_storage(sqlite(tmp_path))).trials])
    assert points[0] == points[1] and len(points[0]) == 2


# ---------------------------------------------------------------- dead workers


def test_a_worker_fails_stale_trials_when_it_starts(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path, quick: type[QuickObjective]
) -> None:
    # the study is complete; a restarted command still fails the dead worker's trial
    cfg = search_cfg(tiny_data, tmp_path, tiny_llm_dir, "search.trials=1", *QUICK)
    url = sqlite(tmp_path)
    run_worker(cfg, "stale", url, tmp_path / "search")
    storage = open_storage(url, cfg.search)
    stale = _stale_running_trial(load_study("stale", storage), storage)
    result = run_worker(cfg, "stale", url, tmp_path / "search")
    assert result.trials == 0 and result.finished == 1
    assert _state(url, "stale", stale) == TrialState.FAIL


def test_a_busy_worker_fails_stale_trials_periodically(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path, quick: type[QuickObjective]
) -> None:
    # while this worker's trial runs, another worker dies: its trial is failed without
    # waiting for some worker to start a trial
    cfg = search_cfg(tiny_data, tmp_path, tiny_llm_dir, "search.trials=1", *QUICK)
    url = sqlite(tmp_path)
    seen: list[TrialState] = []

    def meanwhile(trial: optuna.Trial) -> None:
        storage = open_storage(url, cfg.search)
        number = _stale_running_trial(load_study("busy", storage), storage)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and _state(url, "busy", number) == TrialState.RUNNING:
            time.sleep(0.2)
        seen.append(_state(url, "busy", number))

    quick.hooks = {0: meanwhile}
    run_worker(cfg, "busy", url, tmp_path / "search")
    assert seen == [TrialState.FAIL]
    trials = load_study("busy", open_storage(url)).trials
    assert [t.state for t in trials].count(TrialState.WAITING) == 1  # queued again (max_retry)


# ---------------------------------------------------------------- settings


def test_a_worker_with_other_training_settings_is_refused(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    cfg = search_cfg(tiny_data, tmp_path, tiny_llm_dir)
    storage = open_storage(sqlite(tmp_path), cfg.search)
    space = build_space(cfg, 2)
    create_or_load_study(cfg, "s", storage, space)
    other = apply_overrides(cfg, ["train.lr=0.5", "model.hidden_size=8"])
    with pytest.raises(SearchError, match="other training settings") as err:
        create_or_load_study(other, "s", storage, space)
    assert "model.hidden_size = 8 (study: 16)" in str(err.value)
    assert "train.lr = 0.5 (study: 0.01)" in str(err.value)
    assert "train.epochs" not in str(err.value)
    # what differs between machines, and the search budget of this command, may differ
    local = apply_overrides(
        cfg, ["train.threads=3", "cache_dir=/elsewhere", "search.trials=7", "data.path=/d"]
    )
    _, created = create_or_load_study(local, "s", storage, space)
    assert not created


# ---------------------------------------------------------------- failures and the trial count


class _FakeProcess:
    """A worker "process" that runs in this process: worker indices in ``fail`` exit with 1."""

    fail: set[int] = set()

    def __init__(self, target: Any, args: tuple[Any, ...], kwargs: Any, name: str) -> None:
        self.args, self.name, self.pid, self.exitcode = args, name, 4242, -1

    def start(self) -> None:
        cfg_data, name, url, root, worker, threads = self.args
        if worker in _FakeProcess.fail:
            self.exitcode = 1
            return
        run_worker(config_from_dict(cfg_data), name, url, root, worker, threads)
        self.exitcode = 0

    def join(self) -> None:
        pass


class _FakeContext:
    Process = _FakeProcess


def test_a_failed_worker_process_is_a_warning_when_the_study_has_its_trials(
    tiny_data: Path,
    tmp_path: Path,
    tiny_llm_dir: Path,
    quick: type[QuickObjective],
    worker_log: list[logging.LogRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_module.multiprocessing, "get_context", lambda kind: _FakeContext)
    monkeypatch.setattr(_FakeProcess, "fail", {1})
    cfg = search_cfg(tiny_data, tmp_path, tiny_llm_dir, "search.trials=2", *QUICK)
    url = sqlite(tmp_path)
    study = run_search(cfg, "one", url, tmp_path / "search", workers=2)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    warnings = [r.getMessage() for r in worker_log if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "darec-search-worker-1" in warnings[0]
    assert "exit code 1" in warnings[0] and "darec-search-worker-0" not in warnings[0]

    monkeypatch.setattr(_FakeProcess, "fail", {0, 1})
    with pytest.raises(SearchError, match="has 0 of 2 trials") as err:
        run_search(cfg, "none", url, tmp_path / "search", workers=2)
    assert "darec-search-worker-0" in str(err.value) and "darec-search-worker-1" in str(err.value)


def test_trials_is_the_exact_total_with_workers_side_by_side(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path, quick: type[QuickObjective]
) -> None:
    # worker A runs a long trial; worker B finishes one and must not start another for the
    # last slot, which A's trial holds (unless it fails: then B takes it)
    cfg = search_cfg(tiny_data, tmp_path, tiny_llm_dir, "search.trials=2", *QUICK)
    url = sqlite(tmp_path)
    started, release = threading.Event(), threading.Event()

    def long_trial(trial: optuna.Trial) -> None:
        started.set()
        assert release.wait(30)

    quick.hooks = {0: long_trial}

    def worker_b() -> None:
        assert started.wait(30)
        run_worker(cfg, "exact", url, tmp_path / "search", worker=1)

    def watch() -> None:  # release A's trial once B has had time to overrun
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            study = load_study("exact", open_storage(url)) if started.is_set() else None
            if study and any(t.state == TrialState.COMPLETE for t in study.trials):
                break
            time.sleep(0.1)
        time.sleep(1.5)
        release.set()

    _in_threads(lambda: run_worker(cfg, "exact", url, tmp_path / "search"), worker_b, watch)
    trials = load_study("exact", open_storage(url)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert {t.user_attrs["worker_id"][-3:] for t in trials} == {"/w0", "/w1"}
