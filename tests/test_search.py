"""The adapter search (`darec search`): space from the registry, trials, pruning, failures,
storage, resuming, several workers, reports and the retrained checkpoint. Tiny LLaMA, tiny data:
every trial trains in about a second."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from typer.testing import CliRunner

from darec.cli import app
from darec.config import Config, SearchConfig, apply_overrides, config_to_dict
from darec.config_docs import field_help
from darec.data.split import leave_one_out
from darec.errors import ConfigError
from darec.evaluation.evaluator import evaluate
from darec.models.adapters import ARCHITECTURES, Architecture, SlotSpec
from darec.models.adapters.registry import NoAdapterConfig
from darec.run import load_data, load_trained_model
from darec.search import (
    SearchError,
    build_space,
    create_or_load_study,
    known_layouts,
    load_study,
    measure_step_time,
    open_storage,
    pareto_trials,
    run_search,
    run_worker,
    slot_choices,
    study_config,
    write_report,
)
from darec.search.objective import trial_config
from darec.search.space import SearchSpace
from darec.training.trainer import Trainer
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


SEARCH_SETS = [
    "model.name=darec",
    "text.dtype=fp32",
    "text.max_tokens=6",
    "darec.hard_negatives=3",
    "train.epochs=2",
    "train.threads=1",
    "search.sizes=4,16",
    "search.trial_epochs=2",
]


def search_cfg(data: Path, tmp: Path, llm: Path, *extra: str) -> Config:
    return tiny_config(data, tmp / "cache", f"text.encoder={llm}", *SEARCH_SETS, *extra)


def sqlite(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'study.db'}"


def states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in sorted(study.trials, key=lambda t: t.number)]


# ---------------------------------------------------------------- the space


def _fake_arch(name: str, sized: bool) -> Architecture:
    return Architecture(
        name=name,
        help="a fake architecture for the test",
        sized=sized,
        config_cls=NoAdapterConfig,
        install=lambda model, targets, dropout: {},
        count=lambda slot, size, dims: 7 * max(size, 1),
    )


def test_space_is_generated_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = apply_overrides(Config(), ["search.sizes=8,16"])
    expected: list[str] = []
    for name, arch in ARCHITECTURES.items():
        expected += [f"{name}:8", f"{name}:16"] if arch.sized else [name]
    assert build_space(cfg, 4).choices == tuple(expected)
    assert "none" in expected

    monkeypatch.setitem(ARCHITECTURES, "fakescale", _fake_arch("fakescale", sized=False))
    monkeypatch.setitem(ARCHITECTURES, "fakewide", _fake_arch("fakewide", sized=True))
    space = build_space(cfg, 4)
    assert space.choices[-3:] == ("fakescale", "fakewide:8", "fakewide:16")
    params = {name: "fakewide:16" for _, _, name in space.slot_params()}
    assert all(layer.attn == SlotSpec("fakewide", 16) for layer in space.layout(params))
    assert space.overrides(params) == ["darec.adapters=fakewide:16"]
    assert slot_choices(("none", "fakescale"), (4,)) == ("none", "fakescale")
    with pytest.raises(ConfigError, match="unknown adapter types \\['nosuch'\\]"):
        slot_choices(("nosuch",), (4,))


def test_search_config_is_validated_and_documented() -> None:
    cfg = apply_overrides(Config(), ["search.objectives=ndcg,step_time", "search.sizes=4"])
    assert cfg.search.objectives == ("ndcg", "step_time") and cfg.search.sizes == (4,)
    for bad, message in [
        ("search.objectives=step_time", "search.objectives must be 'ndcg' or 'ndcg,step_time'"),
        ("search.objectives=ndcg,speed", "must be one of 'ndcg', 'step_time'"),
        ("search.lr_range=0.01", "search.lr_range must be two numbers"),
        ("search.sizes=0", "search.sizes must be integers >= 1"),
        ("search.grace_seconds=10", "must exceed search.heartbeat_seconds"),
        ("search.sampler=cmaes", "search.sampler must be one of"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            apply_overrides(Config(), [bad])
    missing = [k for k, v in field_help(SearchConfig).items() if not v]
    assert not missing, f"SearchConfig fields without a docstring: {missing}"


def test_groups_of_layers_share_a_choice() -> None:
    cfg = apply_overrides(Config(), ["search.group_size=2", "search.architectures=none,serial"])
    space = build_space(cfg, 5)
    assert space.num_groups == 3
    assert [name for _, _, name in space.slot_params()][:3] == [
        "layers0-1.attn",
        "layers0-1.mlp",
        "layers2-3.attn",
    ]
    assert space.param_name(2, "mlp") == "layer4.mlp"  # the last group has one layer
    params = {name: "none" for _, _, name in space.slot_params()}
    params["layers2-3.mlp"] = "serial:16"
    layout = space.layout(params)
    assert len(layout) == 5
    assert [str(layer) for layer in layout] == ["none", "none", "none/serial:16"] * 1 + [
        "none/serial:16",
        "none",
    ]


def test_known_layouts_are_enqueued_first(tmp_path: Path) -> None:
    space = build_space(Config(), 8)
    layouts = known_layouts(space)
    assert layouts == {
        "DARec_base": "serial:16",
        "top_half": "none*4,serial:16*4",
        "top_quarter": "none*6,serial:16*2",
    }
    for text in layouts.values():
        params = space.params_for(text, Config())
        assert params is not None and space.overrides(params)[0] == f"darec.adapters={text}"
    no16 = build_space(apply_overrides(Config(), ["search.sizes=8"]), 8)
    assert no16.params_for("serial:16", Config()) is None


def test_sampling_is_seeded() -> None:
    space = SearchSpace(
        num_layers=3, group_size=1, choices=("none", "serial:4", "lora:4"), lr_range=(1e-4, 1e-2)
    )

    def run(seed: int) -> list[dict[str, object]]:
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=3)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(lambda t: float(len(str(space.suggest(t)))), n_trials=6)
        return [t.params for t in study.trials]

    assert run(3) == run(3)
    assert run(3) != run(4)


# ---------------------------------------------------------------- trials


def test_step_time_measurement_leaves_training_unchanged(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    cfg = search_cfg(tiny_data, tmp_path, tiny_llm_dir, "darec.adapters=none/none,serial:4")
    dataset = load_data(cfg)
    split = leave_one_out(dataset)
    plain = Trainer(cfg, dataset, split, tmp_path / "plain").fit(test=False)
    timed = Trainer(cfg, dataset, split, tmp_path / "timed")
    before = {k: v.clone() for k, v in timed.model.trained_state().items()}
    seconds = measure_step_time(timed, steps=2)
    assert seconds > 0
    after = timed.model.trained_state()
    assert all(torch.equal(before[k], after[k]) for k in before)
    result = timed.fit(test=False)
    assert [h["NDCG@10"] for h in result.history] == pytest.approx(
        [h["NDCG@10"] for h in plain.history], abs=1e-9
    )


def test_cli_search_end_to_end_then_retrain_and_report(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[str] = []
    original = Trainer.evaluate_split

    def spy(self: Trainer, which: str):  # type: ignore[no-untyped-def]
        read.append(which)
        return original(self, which)

    monkeypatch.setattr(Trainer, "evaluate_split", spy)
    out, url = tmp_path / "search", sqlite(tmp_path)
    sets = [
        *("data.user_min=3", "data.item_min=1", f"cache_dir={tmp_path / 'cache'}"),
        *("model.max_seq_len=8", "model.hidden_size=16", "model.num_heads=2"),
        *("model.inner_size=32", "model.num_layers=1", "model.dropout=0.1"),
        *("model.attn_dropout=0.1", "train.batch_size=8", "train.lr=0.01", "train.patience=0"),
        f"text.encoder={tiny_llm_dir}",
        *SEARCH_SETS,
    ]
    args = ["search", "--study", "e2e", "--storage", url, "--trials", "3", "--out", str(out)]
    args += ["--data", str(tiny_data), *(x for item in sets for x in ("--set", item))]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "test" not in read and read.count("valid") >= 3  # the search never read test

    study = load_study("e2e", open_storage(url))
    trials = sorted(study.trials, key=lambda t: t.number)
    expected = search_cfg(tiny_data, tmp_path, tiny_llm_dir, "search.trials=3")
    assert study_config(study) == expected
    assert len(trials) == 3
    assert [t.user_attrs.get("known_layout") for t in trials[:2]] == ["DARec_base", "top_half"]
    assert trials[0].user_attrs["layout"] == "serial:16"
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert trials[0].state == TrialState.COMPLETE and len(trials[0].intermediate_values) == 2
    assert not list((out / "trials").glob("trial-*"))  # trial runs are removed

    report = (out / "search_report.md").read_text()
    assert "## Per-layer layout of trial" in report and "| 1 | `" in report
    for png in ("layout_heatmap.png", "optimization_history.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png

    read.clear()
    result = runner.invoke(
        app,
        ["search", "retrain", "--study", "e2e", "--storage", url, "--out", str(out)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert read.count("test") == 1  # tested once, after selection
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    info = json.loads((out / "best" / "search.json").read_text())
    assert info["trial"] == best.number and info["layout"] == best.user_attrs["layout"]
    run_cfg, model, _ = load_trained_model(out / "best")
    assert run_cfg.darec.adapters == best.user_attrs["layout"]
    test = json.loads((out / "best" / "metrics.json").read_text())["test"]
    again = evaluate(
        model,
        leave_one_out(load_data(run_cfg)).test,
        run_cfg.eval,
        run_cfg.model.max_seq_len,
        torch.device("cpu"),
    )
    assert again.metrics["NDCG@10"] == pytest.approx(test["NDCG@10"], abs=1e-9)
    result = runner.invoke(app, ["evaluate", str(out / "best"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["NDCG@10"] == pytest.approx(test["NDCG@10"], abs=1e-9)
    result = runner.invoke(app, ["search", "report", "--study", "nosuch", "--storage", url])
    assert result.exit_code == 2 and "no study 'nosuch'" in result.output


def _add_perfect_trials(study: optuna.Study, space: SearchSpace, n: int, epochs: int) -> None:
    dists = {name: CategoricalDistribution(space.choices) for _, _, name in space.slot_params()}
    for _ in range(n):
        study.add_trial(
            optuna.trial.create_trial(
                params={name: "none" for name in dists},
                distributions=dists,  # type: ignore[arg-type]
                value=1.0,
                intermediate_values={e: 1.0 for e in range(1, epochs + 1)},
            )
        )


def _last_trial_behind_perfect_ones(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path, reports: int, *settings: str
) -> optuna.trial.FrozenTrial:
    """Run one trial after 3 finished ones scoring NDCG@10 = 1 at each of ``reports``
    validations (unbeatable), with the median pruner; the new trial as it ended."""
    cfg = search_cfg(
        tiny_data,
        tmp_path,
        tiny_llm_dir,
        "search.trials=4",
        "search.known_layouts=false",
        "search.pruner_startup_trials=3",
        *settings,
    )
    storage = open_storage(sqlite(tmp_path), cfg.search)
    space = build_space(cfg, 2)
    study, created = create_or_load_study(cfg, "prune", storage, space)
    assert created
    _add_perfect_trials(study, space, 3, epochs=reports)
    run_worker(cfg, "prune", sqlite(tmp_path), tmp_path / "search")
    return max(load_study("prune", storage).trials, key=lambda t: t.number)


def test_trials_never_validate_the_start(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    # the start (the CF model's scores) is the same for every layout: as a trial's value it
    # would be a floor hiding the differences between layouts
    cfg = search_cfg(
        tiny_data, tmp_path, tiny_llm_dir, "train.validate_first=true", "train.eval_every_steps=3"
    )
    space = build_space(cfg, 2)
    trial = trial_config(cfg, space, {name: "none" for _, _, name in space.slot_params()})
    assert not trial.train.validate_first and trial.train.eval_every_steps == 3


def test_pruning_stops_a_trial_with_worse_intermediate_scores(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    last = _last_trial_behind_perfect_ones(
        tiny_data,
        tmp_path,
        tiny_llm_dir,
        3,
        "search.trial_epochs=3",
        "search.pruner_warmup_evals=0",
    )
    assert last.state == TrialState.PRUNED
    assert list(last.intermediate_values) == [1]  # stopped after its first epoch of three
    assert len(last.user_attrs["valid_history"]) == 1


def test_pruning_by_steps_acts_inside_a_one_epoch_trial(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    # one epoch a trial: validating only at epoch ends, the pruner (first validation never
    # pruned) could not act; validating every step, it stops the trial at its second one
    last = _last_trial_behind_perfect_ones(
        tiny_data,
        tmp_path,
        tiny_llm_dir,
        2,
        "search.trial_epochs=1",
        "train.eval_every_steps=1",
        "search.pruner_warmup_evals=1",
    )
    assert last.state == TrialState.PRUNED
    assert list(last.intermediate_values) == [1, 2]


def test_failing_trial_is_recorded_and_the_study_goes_on(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_install(model, targets, dropout):  # type: ignore[no-untyped-def]
        raise RuntimeError("the broken adapter cannot be installed")

    broken = _fake_arch("broken", sized=False)
    monkeypatch.setitem(
        ARCHITECTURES, "broken", broken.__class__(**{**broken.__dict__, "install": broken_install})
    )
    cfg = search_cfg(
        tiny_data,
        tmp_path,
        tiny_llm_dir,
        "search.trials=1",
        "search.known_layouts=false",
        "search.architectures=serial,broken",
        "search.sizes=4",
    )
    url = sqlite(tmp_path)
    space = build_space(cfg, 2)
    study, _ = create_or_load_study(cfg, "fail", open_storage(url), space)
    study.enqueue_trial({name: "broken" for _, _, name in space.slot_params()})
    study.enqueue_trial({name: "serial:4" for _, _, name in space.slot_params()})
    result = run_worker(cfg, "fail", url, tmp_path / "search")
    study = load_study("fail", open_storage(url))
    assert states(study) == ["FAIL", "COMPLETE"]
    assert "broken adapter cannot be installed" in study.trials[0].user_attrs["fail_reason"]
    assert result.finished == 1 and not result.gave_up
    write_report(study, tmp_path / "report")
    assert "broken adapter" in (tmp_path / "report" / "search_report.md").read_text()


def test_budgets_reject_layouts_before_training(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    cfg = search_cfg(
        tiny_data, tmp_path, tiny_llm_dir, "search.trials=2", "search.param_budget=100"
    )
    run_worker(cfg, "params", sqlite(tmp_path), tmp_path / "search")
    study = load_study("params", open_storage(sqlite(tmp_path)))
    rejected = [t for t in study.trials if "rejected" in t.user_attrs]
    assert rejected and all(t.state == TrialState.PRUNED for t in rejected)
    for t in rejected:  # rejected before any training (or timing)
        assert t.user_attrs["adapter_params"] > 100
        assert "valid_history" not in t.user_attrs and "step_seconds" not in t.user_attrs

    cfg = apply_overrides(cfg, ["search.param_budget=0", "search.step_time_budget=1e-9"])
    run_worker(cfg, "time", sqlite(tmp_path), tmp_path / "search")
    trials = load_study("time", open_storage(sqlite(tmp_path))).trials
    assert len(trials) == 2 and all(t.state == TrialState.PRUNED for t in trials)
    assert all(
        "step_seconds" in t.user_attrs and "valid_history" not in t.user_attrs for t in trials
    )
    assert "step_time_budget" in trials[0].user_attrs["rejected"]


def test_cost_aware_search_gives_a_pareto_front(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    cfg = search_cfg(
        tiny_data,
        tmp_path,
        tiny_llm_dir,
        "search.trials=3",
        "search.objectives=ndcg,step_time",
        "search.trial_epochs=1",
    )
    study = run_search(cfg, "cost", f"journal:{tmp_path / 'study.log'}", tmp_path / "search")
    assert len(study.directions) == 2
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3 and all(len(t.values) == 2 for t in complete)
    assert all(t.values[1] == t.user_attrs["step_seconds"] > 0 for t in complete)
    front = pareto_trials(study)
    assert front and all(t in complete for t in front)
    assert [t.values[0] for t in front] == sorted((t.values[0] for t in front), reverse=True)
    write_report(study, tmp_path / "search")
    assert (tmp_path / "search" / "pareto_front.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Pareto front" in (tmp_path / "search" / "search_report.md").read_text()


def test_resuming_with_another_space_is_refused(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    cfg = search_cfg(tiny_data, tmp_path, tiny_llm_dir)
    storage = open_storage(sqlite(tmp_path), cfg.search)
    create_or_load_study(cfg, "s", storage, build_space(cfg, 2))
    other = apply_overrides(cfg, ["search.sizes=8"])
    with pytest.raises(SearchError, match="another search space"):
        create_or_load_study(other, "s", storage, build_space(other, 2))
    _, created = create_or_load_study(cfg, "s", storage, build_space(cfg, 2))
    assert not created and len(load_study("s", storage).trials) == 2  # enqueued once


def test_gp_sampler_runs(tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path) -> None:
    pytest.importorskip("scipy")
    cfg = search_cfg(
        tiny_data,
        tmp_path,
        tiny_llm_dir,
        "search.sampler=gp",
        "search.trials=1",
        "search.known_layouts=false",
        "search.trial_epochs=1",
    )
    study = run_search(cfg, "gp", sqlite(tmp_path), tmp_path / "search")
    assert isinstance(study.trials[0].value, float)


# ---------------------------------------------------------------- workers and storage


def _worker_process(cfg: Config, name: str, url: str, root: Path) -> subprocess.Popen[bytes]:
    path = root / f"{name}-config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config_to_dict(cfg)))
    code = (
        "import json, sys; from darec.config import config_from_dict; "
        "from darec.search import run_search; "
        "run_search(config_from_dict(json.load(open(sys.argv[1]))), sys.argv[2], sys.argv[3], "
        "sys.argv[4])"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(path), name, url, str(root)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_resuming_after_a_killed_worker_adds_trials_to_the_same_study(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    slow = ["search.trial_epochs=40", "search.heartbeat_seconds=1", "search.grace_seconds=2"]
    cfg = search_cfg(tiny_data, tmp_path, tiny_llm_dir, "search.trials=5", *slow)
    url = sqlite(tmp_path)
    proc = _worker_process(cfg, "kill", url, tmp_path / "search")
    storage = open_storage(url, cfg.search)
    deadline = time.monotonic() + 120
    running: list[optuna.trial.FrozenTrial] = []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            try:
                study = optuna.load_study(study_name="kill", storage=storage)
            except KeyError:
                continue
            running = study.get_trials(states=(TrialState.RUNNING,))
            # running for a heartbeat interval: its heartbeat is recorded
            if running and time.time() - running[0].datetime_start.timestamp() > 1.0:
                break
        assert running, "the worker never started a trial"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    killed = running[0].number
    # the killed trial's heartbeat goes stale: grace 2 s, plus SQLite's whole-second clock
    time.sleep(3.2)

    # the queued top_half layout runs first, then the killed trial's retry
    quick = apply_overrides(cfg, ["search.trials=2", "search.trial_epochs=1"])
    study = run_search(quick, "kill", url, tmp_path / "search")
    assert len(optuna.get_all_study_summaries(storage)) == 1  # the same study, resumed
    by_number = {t.number: t for t in study.trials}
    assert by_number[killed].state == TrialState.FAIL
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == by_number[killed].params
    report = write_report(study, tmp_path / "search").read_text()
    assert f"| {killed} | FAIL | its worker stopped (no heartbeat); retried as trial" in report
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials) == 2


def test_two_worker_processes_share_one_storage(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    # the two known layouts are queued: each worker takes one as soon as it starts
    cfg = search_cfg(tiny_data, tmp_path, tiny_llm_dir, "search.trials=2")
    study = run_search(cfg, "two", sqlite(tmp_path), tmp_path / "search", workers=2)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) >= 2
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) == 2, workers
    assert str(os.getpid()) not in {w.split(":")[1] for w in workers}  # other processes did it
    assert len({t.number for t in study.trials}) == len(study.trials)


def test_study_written_with_former_keys_loads() -> None:
    stored = config_to_dict(apply_overrides(Config(), ["model.name=darec"]))
    text = stored.pop("text")
    del stored["darec"]["reference_path"]
    stored["darec"] |= {
        "backbone": "some/llm",
        "backbone_layers": 4,
        "compute_dtype": text["dtype"],
        "item_fields": ["title"],
        "item_max_tokens": text["max_tokens"],
        "align": True,
        "hard": False,
        "item_once": True,
        "cache_frozen": True,
    }
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    study.set_user_attr("darec.config", stored)
    cfg = study_config(study)
    assert (cfg.text.encoder, cfg.text.encoder_layers, cfg.text.fields) == (
        "some/llm",
        4,
        ("title",),
    )
    assert cfg.darec.hard_weight == 0.0 and cfg.darec.align_weight == Config().darec.align_weight
    assert cfg.darec.reference_path is False


def test_task_weights_are_searched_for_tasks_with_a_weight() -> None:
    on = apply_overrides(Config(), ["search.search_task_weights=true"])
    assert build_space(on, 4).task_weights == ("align_weight", "hard_weight")
    no_align = apply_overrides(on, ["darec.align_weight=0"])
    assert build_space(no_align, 4).task_weights == ("hard_weight",)
    assert build_space(Config(), 4).task_weights == ()
