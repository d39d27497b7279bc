import json
from pathlib import Path

import numpy as np
import pytest
import torch

from darec.config import apply_overrides, config_from_dict, config_from_run
from darec.data.dataset import load_dataset
from darec.data.split import leave_one_out
from darec.errors import CheckpointError, DataError
from darec.run import checkpoint as ckpt_mod
from darec.run import load_trained_model
from darec.run.checkpoint import checkpoint_path, read_json
from darec.training.trainer import Trainer, TrainingError

from .conftest import tiny_config


def _trainer(cfg, run_dir, callback=None):
    ds = load_dataset(cfg.data, Path(cfg.cache_dir))
    return Trainer(cfg, ds, leave_one_out(ds), run_dir, callback)


class CrashAt:
    """Simulates a crash (e.g. the process being killed) at a given epoch and step."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_epoch_start(self, epoch, steps):
        pass

    def on_step(self, epoch, step, loss):
        if (epoch, step) == (self.epoch, self.step):
            raise RuntimeError("simulated crash")

    def on_validation(self, epoch, metrics, improved):
        pass


@pytest.mark.parametrize(
    ("model", "crash"),
    [
        ("sasrec", (1, 2)),
        ("gru4rec", (1, 2)),
        ("bert4rec", (1, 2)),
        ("sasrec", (1, 0)),
        ("sasrec", (2, 3)),
    ],
)
def test_resume_after_crash_is_exact(tiny_cfg, tmp_path, model, crash):
    cfg = apply_overrides(
        tiny_cfg,
        [
            f"model.name={model}",
            "train.checkpoint_every_steps=2",
            "train.scheduler=cosine",
            "train.warmup_steps=2",
        ],
    )
    straight = _trainer(cfg, tmp_path / "a")
    res_a = straight.fit()
    with pytest.raises(RuntimeError, match="simulated crash"):
        _trainer(cfg, tmp_path / "b", CrashAt(*crash)).fit()
    resumed = _trainer(cfg, tmp_path / "b")
    res_b = resumed.fit(resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert res_a.test == res_b.test and res_a.best_epoch == res_b.best_epoch
    assert [h["NDCG@10"] for h in res_a.history] == [h["NDCG@10"] for h in res_b.history]


def test_step_validations_inside_epochs_and_exact_resume(tiny_cfg, tmp_path):
    cfg = apply_overrides(tiny_cfg, ["train.eval_every_steps=2", "train.epochs=2"])
    straight = _trainer(cfg, tmp_path / "a")
    per_epoch = straight.steps_per_epoch
    assert per_epoch > 2, "the tiny data should give several steps an epoch"
    res_a = straight.fit()
    # every 2nd step inside an epoch, plus each epoch end (never twice at one step)
    expected = sorted(
        {s for s in range(2, 2 * per_epoch, 2) if s % per_epoch} | {per_epoch, 2 * per_epoch}
    )
    assert [h["step"] for h in res_a.history] == expected
    inside = [h for h in res_a.history if h["step"] % per_epoch]
    assert inside and all(h.get("partial_epoch") for h in inside)
    best = max(res_a.history, key=lambda h: h["NDCG@10"])  # the first of equal scores
    assert res_a.valid == {k: v for k, v in best.items() if "@" in k}
    # a crash just after a mid-epoch validation resumes exactly
    with pytest.raises(RuntimeError, match="simulated crash"):
        _trainer(cfg, tmp_path / "b", CrashAt(0, 2)).fit()
    resumed = _trainer(cfg, tmp_path / "b")
    res_b = resumed.fit(resume=True)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert res_a.test == res_b.test and res_a.history == res_b.history


def test_time_running_out_just_after_a_mid_epoch_validation_does_not_repeat_it(
    tiny_cfg, tmp_path, monkeypatch
):
    cfg = apply_overrides(tiny_cfg, ["train.eval_every_steps=2"])
    trainer = _trainer(cfg, tmp_path / "run")
    # the time runs out as soon as anything has been validated
    monkeypatch.setattr(trainer, "_out_of_time", lambda: bool(trainer.state.history))
    result = trainer.fit()
    assert result.stopped == "time_limit"
    assert [h["step"] for h in result.history] == [2]


def test_validate_first_keeps_a_start_that_training_never_beats(tiny_cfg, tmp_path):
    # a learning rate too small to move any score: the start stays the best, training stops
    # mid-epoch once patience is spent and the selected model is the untrained one
    cfg = apply_overrides(
        tiny_cfg,
        [
            "train.validate_first=true",
            "train.eval_every_steps=1",
            "train.patience=2",
            "train.lr=1e-12",
            "train.epochs=5",
        ],
    )
    trainer = _trainer(cfg, tmp_path / "run")
    start = {k: v.clone() for k, v in trainer.model.trained_state().items()}
    result = trainer.fit()
    assert result.stopped == "early_stopping"
    assert [h["step"] for h in result.history] == [0, 1, 2]
    assert result.best_epoch == 0 and result.epochs == 1
    assert result.valid == {k: v for k, v in result.history[0].items() if "@" in k}
    for key, value in trainer.model.trained_state().items():
        assert torch.equal(value, start[key]), key


def test_checkpoint_round_trip_gives_same_scores(tiny_cfg, tmp_path):
    trainer = _trainer(tiny_cfg, tmp_path / "run")
    result = trainer.fit()
    _, model, ids = load_trained_model(tmp_path / "run")
    history = torch.tensor([[0, 0, 0, 0, 0, 1, 2, 3]])
    items = torch.arange(model.num_items + 1)
    trainer.model.eval()
    expected = trainer.model.score_items(trainer.model.encode_users(history), items)
    got = model.score_items(model.encode_users(history), items)
    assert torch.equal(expected, got)
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["test"] == result.test and metrics["seed"] == tiny_cfg.train.seed
    assert {"darec", "commit", "torch"} <= set(metrics["provenance"])
    assert ids["item_ids"][0] == "[PAD]"
    files = [p.name for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert not [f for f in files if f.endswith((".pt", ".pkl", ".bin", ".pth"))]


def test_crash_while_saving_keeps_previous_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    trainer = _trainer(apply_overrides(tiny_cfg, ["train.epochs=1"]), tmp_path / "run")
    trainer.fit()
    before = checkpoint_path(tmp_path / "run", "last")
    real = ckpt_mod.save_file
    calls = {"n": 0}

    def flaky(tensors, path):
        calls["n"] += 1
        if calls["n"] == 2:  # model written, optimizer write dies
            raise OSError("disk full")
        real(tensors, path)

    monkeypatch.setattr(ckpt_mod, "save_file", flaky)
    with pytest.raises(OSError):
        trainer.state.global_step += 1
        trainer._checkpoint(is_best=True)
    assert checkpoint_path(tmp_path / "run", "last") == before
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".")]


def test_existing_run_and_changed_config_are_refused(tiny_cfg, tmp_path):
    _trainer(apply_overrides(tiny_cfg, ["train.epochs=1"]), tmp_path / "run").fit()
    with pytest.raises(CheckpointError, match="already holds a trained run"):
        _trainer(apply_overrides(tiny_cfg, ["train.epochs=1"]), tmp_path / "run").fit()
    changed = apply_overrides(tiny_cfg, ["train.epochs=1", "train.lr=0.02"])
    with pytest.raises(
        CheckpointError, match=r"differs .* \(train.lr: 0.01 in the run, 0.02 now\)"
    ):
        _trainer(changed, tmp_path / "run").fit(resume=True)
    cosine = apply_overrides(tiny_cfg, ["train.epochs=2", "train.scheduler=cosine"])
    _trainer(cosine, tmp_path / "cos").fit()
    longer = apply_overrides(cosine, ["train.epochs=3"])
    with pytest.raises(CheckpointError, match="train.epochs only with a constant schedule"):
        _trainer(longer, tmp_path / "cos").fit(resume=True)


def test_a_resume_may_raise_the_budget_and_then_trains_on(tiny_cfg, tmp_path):
    straight = _trainer(apply_overrides(tiny_cfg, ["train.epochs=3"]), tmp_path / "a").fit()
    _trainer(apply_overrides(tiny_cfg, ["train.epochs=1"]), tmp_path / "b").fit()
    more = apply_overrides(tiny_cfg, ["train.epochs=3", "train.patience=20"])
    resumed = _trainer(more, tmp_path / "b").fit(resume=True)
    assert resumed.epochs == 3 and resumed.stopped == "epochs"
    assert resumed.valid == straight.valid and resumed.test == straight.test
    assert read_json(tmp_path / "b" / "config.json")["train"]["epochs"] == 3


def test_run_folder_of_an_older_version_loads_and_resumes(tiny_cfg, tmp_path):
    # its config.json lacks keys added since and has a key under its former name
    cfg = apply_overrides(tiny_cfg, ["train.epochs=1"])
    _trainer(cfg, tmp_path / "run").fit()
    path = tmp_path / "run" / "config.json"
    saved = read_json(path)
    del saved["train"]["validate_first"]
    saved["search"]["pruner_warmup_epochs"] = saved["search"].pop("pruner_warmup_evals")
    del saved["darec"]["head_scale"]  # a DARec-only key: a SASRec run keeps the default
    path.write_text(json.dumps(saved))
    loaded, _, _ = load_trained_model(tmp_path / "run")
    assert loaded == cfg
    darec_run = {**saved, "model": {**saved["model"], "name": "darec"}}
    assert config_from_run(darec_run).darec.head_scale == 0.0  # as it was trained
    assert config_from_dict(darec_run).darec.head_scale == cfg.darec.head_scale
    longer = apply_overrides(tiny_cfg, ["train.epochs=2"])
    path.write_text(json.dumps({**saved, "train": {**saved["train"], "epochs": 2}}))
    assert _trainer(longer, tmp_path / "run").fit(resume=True).epochs == 2


def test_checkpoint_trainer_state_of_an_older_version_resumes(tiny_cfg, tmp_path):
    # runs saved before best_step and saves existed: the trainer state lacks both
    _trainer(apply_overrides(tiny_cfg, ["train.epochs=1"]), tmp_path / "run").fit()
    state_file = checkpoint_path(tmp_path / "run", "last") / "state.json"
    saved = read_json(state_file)
    del saved["trainer"]["best_step"], saved["trainer"]["saves"]
    state_file.write_text(json.dumps(saved))
    path = tmp_path / "run" / "config.json"
    path.write_text(
        json.dumps({**read_json(path), "train": {**read_json(path)["train"], "epochs": 2}})
    )
    result = _trainer(apply_overrides(tiny_cfg, ["train.epochs=2"]), tmp_path / "run").fit(
        resume=True
    )
    assert result.epochs == 2 and [h["epoch"] for h in result.history] == [1, 2]
    assert result.valid == {
        k: v for k, v in result.history[result.best_epoch - 1].items() if "@" in k
    }
    # a key this version does not know (a newer one wrote it) is refused, not dropped
    state_file = checkpoint_path(tmp_path / "run", "last") / "state.json"
    saved = read_json(state_file)
    state_file.write_text(json.dumps({**saved, "trainer": {**saved["trainer"], "mystery": 1}}))
    with pytest.raises(CheckpointError, match="state.json: unknown trainer state key"):
        _trainer(apply_overrides(tiny_cfg, ["train.epochs=2"]), tmp_path / "run").fit(resume=True)


def test_pop_needs_no_training_and_ranks_by_training_counts(tiny_cfg, tmp_path):
    trainer = _trainer(apply_overrides(tiny_cfg, ["model.name=pop"]), tmp_path / "pop")
    result = trainer.fit()
    assert result.stopped == "untrainable" and result.epochs == 0
    # recompute the expected test ranks by hand from the training counts
    counts = np.bincount(
        np.concatenate(trainer.split.train), minlength=trainer.dataset.num_items + 1
    )
    test = trainer.split.test
    ranks = []
    for history, target in zip(test.histories, test.targets, strict=True):
        allowed = np.ones_like(counts, dtype=bool)
        allowed[0] = False
        allowed[history] = False
        allowed[target] = True
        others = allowed.copy()
        others[target] = False
        greater = int((counts[others] > counts[target]).sum())
        ties = int((counts[others] == counts[target]).sum())
        ranks.append((greater + 1, greater + ties + 1))
    got = trainer.evaluate_split("test").ranks
    assert all(lo <= r <= hi for r, (lo, hi) in zip(got, ranks, strict=True))
    assert result.test["HR@10"] == pytest.approx(np.mean([r <= 10 for r in got]), abs=1e-12)


def test_tuning_never_reads_the_test_split(tiny_cfg, tmp_path):
    trainer = _trainer(apply_overrides(tiny_cfg, ["train.epochs=2"]), tmp_path / "run")

    class Sentinel:
        def __getattr__(self, name):
            raise AssertionError("the test split was read during tuning")

    trainer.split.test = Sentinel()
    result = trainer.fit(test=False)
    assert result.test == {} and result.valid


def test_users_too_short_to_evaluate_are_a_clear_error(tmp_path):
    data = tmp_path / "short"
    data.mkdir()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"u{u}\ti{(u + t) % 5}\t{t}" for u in range(10) for t in range(2)]
    (data / "short.inter").write_text("\n".join(lines) + "\n")
    cfg = tiny_config(data, tmp_path / "cache", "data.user_min=1")
    with pytest.raises(DataError, match="no user with at least 3 interactions"):
        _trainer(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_time_limit_stops_and_reports(tiny_cfg, tmp_path):
    cfg = apply_overrides(tiny_cfg, ["train.epochs=50", "train.max_minutes=0.00001"])
    result = _trainer(cfg, tmp_path / "run").fit()
    assert result.stopped == "time_limit"
    assert result.best_epoch <= result.epochs < 50
    assert result.history[-1].get("partial_epoch") is True


class TenSecondSteps:
    """A fake clock for the trainer that advances 10 s per training step and at no other time."""

    def __init__(self) -> None:
        self.now, self.steps = 1000.0, 0

    def monotonic(self) -> float:
        return self.now

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        pass

    def on_step(self, epoch: int, step: int, loss: float) -> None:
        self.now += 10.0
        self.steps += 1

    def on_validation(self, epoch: int, metrics: dict, improved: bool) -> None:
        pass


@pytest.mark.parametrize("every", [0, 1, 3])
def test_training_time_is_counted_once(tiny_cfg, tmp_path, monkeypatch, every):
    """In-epoch checkpoints bank the time so far; the epoch's end must not count it again."""
    from types import SimpleNamespace

    from darec.training import trainer as trainer_mod

    clock = TenSecondSteps()
    monkeypatch.setattr(trainer_mod, "time", SimpleNamespace(monotonic=clock.monotonic))
    sets = ["train.epochs=3", "train.patience=0", f"train.checkpoint_every_steps={every}"]
    result = _trainer(apply_overrides(tiny_cfg, sets), tmp_path / "run", clock).fit()
    assert clock.steps > 3
    assert result.train_seconds == pytest.approx(10.0 * clock.steps)
    # the time limit sees the same clock: 35 s allow 4 steps of 10 s, whatever the checkpoints
    clock = TenSecondSteps()
    monkeypatch.setattr(trainer_mod, "time", SimpleNamespace(monotonic=clock.monotonic))
    sets += ["train.max_minutes=" + str(35 / 60)]
    result = _trainer(apply_overrides(tiny_cfg, sets), tmp_path / "limited", clock).fit()
    assert result.stopped == "time_limit"
    assert clock.steps == 4


def test_nan_loss_is_a_clear_error(tiny_cfg, tmp_path, monkeypatch):
    trainer = _trainer(tiny_cfg, tmp_path / "run")
    monkeypatch.setattr(trainer.model, "loss", lambda batch: torch.tensor(float("nan")))
    with pytest.raises(TrainingError, match="loss became nan"):
        trainer.fit()


def test_early_stopping_and_learning(tiny_cfg, tmp_path):
    cfg = apply_overrides(
        tiny_cfg,
        ["train.epochs=60", "train.patience=3", "model.dropout=0.0", "model.attn_dropout=0.0"],
    )
    result = _trainer(cfg, tmp_path / "run").fit()
    assert result.stopped == "early_stopping" and result.epochs < 60
    assert result.best_epoch == result.epochs - 3
    # the tiny data is a deterministic walk: a trained SASRec beats random guessing by far
    # (random guessing among the ~22 allowed items would give HR@5 of about 0.23)
    assert result.valid["HR@5"] > 0.6


def test_test_report_has_both_protocols_and_popularity_groups(tiny_cfg, tmp_path):
    trainer = _trainer(apply_overrides(tiny_cfg, ["train.epochs=2"]), tmp_path / "run")
    result = trainer.fit()
    saved = read_json(tmp_path / "run" / "metrics.json")
    assert (
        saved["test"] == result.test and saved["test_other_protocol"] == result.test_other_protocol
    )
    # seen items kept as candidates can only push the target down
    assert result.test_other_protocol["HR@20"] <= result.test["HR@20"]
    groups = saved["test_by_popularity"]
    assert set(groups) <= {"head", "torso", "tail"}
    assert sum(g["users"] for g in groups.values()) == len(trainer.split.test)
    assert 0 < saved["test"]["Coverage@10"] <= 1 and saved["test"]["AvgPop@10"] > 0
    users = sum(g["users"] * g["NDCG@10"] for g in groups.values()) / len(trainer.split.test)
    assert users == pytest.approx(result.test["NDCG@10"])


def test_a_time_limit_that_cuts_an_improving_run_is_said(tiny_cfg, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from darec.training import trainer as trainer_mod

    clock = TenSecondSteps()
    monkeypatch.setattr(trainer_mod, "time", SimpleNamespace(monotonic=clock.monotonic))
    # 5 steps an epoch: 75 s end the run 2 steps into the second epoch
    sets = ["train.epochs=5", "train.validate_first=true", "train.max_minutes=" + str(75 / 60)]
    trainer = _trainer(apply_overrides(tiny_cfg, sets), tmp_path / "run", clock)
    monkeypatch.setattr(trainer, "evaluate_split", _rising_metric(trainer.evaluate_split))
    result = trainer.fit()
    assert result.stopped == "time_limit"
    assert any("ended epoch 2 after 3/5 steps: it is a partial epoch" in n for n in result.notes)
    assert any("while validation was still improving" in n for n in result.notes)


def _rising_metric(evaluate_split):
    """Validation scores that rise at every call (the test split is left as it is)."""
    calls = []

    def fake(which):
        result = evaluate_split(which)
        if which == "valid":
            calls.append(1)
            result.metrics = {k: len(calls) / 100 for k in result.metrics}
        return result

    return fake


def test_optimizer_choice_adam_couples_weight_decay(tiny_cfg, tmp_path):
    """train.optimizer: adamw (decoupled decay, the default) or adam (decay as an L2 term in
    the gradient, as published runs use); both resume from their own state."""
    kinds = {}
    for name in ("adamw", "adam"):
        cfg = apply_overrides(
            tiny_cfg, [f"train.optimizer={name}", "train.weight_decay=0.01", "train.epochs=1"]
        )
        trainer = _trainer(cfg, tmp_path / name)
        kinds[name] = type(trainer.optimizer)
        assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.01
        trainer.fit()
        resumed = _trainer(apply_overrides(cfg, ["train.epochs=2"]), tmp_path / name)
        resumed.fit(resume=True)
        assert type(resumed.optimizer) is kinds[name]
    assert kinds == {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}
