"""``train.tensorboard``: the values of log.jsonl as TensorBoard events, across a resume."""

from __future__ import annotations

import sys

import pytest

from darec.config import apply_overrides
from darec.errors import DarecError
from darec.training.log import read_log
from tests.test_training import CrashAt, _trainer


def _scalars(folder, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_tensorboard_gets_what_the_log_gets_and_a_resume_appends(tiny_cfg, tmp_path):
    sets = ["train.epochs=3", "train.checkpoint_every_steps=2", "train.tensorboard=true"]
    cfg = apply_overrides(tiny_cfg, sets)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        _trainer(cfg, run, CrashAt(1, 3)).fit()
    board = run / "tensorboard"
    assert _scalars(board, "train/loss")[-1][0] == 9  # the cut epoch, after the checkpoint at 8
    _trainer(cfg, run).fit(resume=True)
    assert len(list(board.glob("events.out.tfevents.*"))) == 2  # the resume added a file

    log = read_log(run / "log.jsonl")
    epochs = [r for r in log if r["event"] == "epoch"]
    valid = [r for r in log if r["event"] == "valid"]
    # the events after the checkpoint the resume started from are hidden, as in log.jsonl
    for tag, records, key in (
        ("train/loss", epochs, "loss"),
        ("train/lr", epochs, "lr"),
        ("train/seconds", epochs, "seconds"),
        ("valid/NDCG@10", valid, "NDCG@10"),
        ("valid/HR@10", valid, "HR@10"),
    ):
        expected = [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in records]
        assert _scalars(board, tag) == expected, tag
    # the cut epoch's loss at step 9 is gone; the resumed epoch logs its last steps at 10
    assert [step for step, _ in _scalars(board, "train/loss")] == [5, 10, 15]


def test_off_by_default_and_a_clear_error_without_the_package(tiny_cfg, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _trainer(apply_overrides(tiny_cfg, ["train.epochs=1"]), run).fit()
    assert not (run / "tensorboard").exists()
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    cfg = apply_overrides(tiny_cfg, ["train.tensorboard=true"])
    with pytest.raises(DarecError, match=r"pip install 'darec\[tensorboard\]'"):
        _trainer(cfg, tmp_path / "other")
