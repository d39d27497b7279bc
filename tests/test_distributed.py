"""Data-parallel training on several CPU processes (gloo), as ``torchrun`` starts them.

The processes are forked from the test process with the environment ``torchrun`` gives each
(WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so they start in milliseconds."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from darec.config import Config
from darec.data.dataset import load_dataset
from darec.data.split import leave_one_out
from darec.errors import ConfigError
from darec.evaluation.evaluator import evaluate
from darec.models.base import ModelContext
from darec.models.registry import build_model
from darec.run import load_trained_model
from darec.training import distributed
from darec.training.log import read_log
from darec.training.trainer import Trainer

from .conftest import tiny_config

TIMEOUT = 120  # seconds for one multi-process run; a hang (a rank that died) fails the test


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fit(cfg: Config, run_dir: Path, resume: bool) -> None:
    ds = load_dataset(cfg.data, Path(cfg.cache_dir))
    Trainer(cfg, ds, leave_one_out(ds), run_dir).fit(resume=resume)


def _rank_main(rank: int, world: int, port: int, cfg: Config, run_dir: Path, resume: bool) -> None:
    os.environ.update(
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    try:
        _fit(cfg, run_dir, resume)
    finally:
        distributed.shutdown()


def train_on(world: int, cfg: Config, run_dir: Path, resume: bool = False) -> None:
    """Train ``cfg`` into ``run_dir`` on ``world`` processes (1: in this process)."""
    if world == 1:
        _fit(cfg, run_dir, resume)
        return
    ctx = multiprocessing.get_context("fork")  # the children inherit torch and darec, loaded
    port = _free_port()
    procs = [
        ctx.Process(target=_rank_main, args=(rank, world, port, cfg, run_dir, resume))
        for rank in range(world)
    ]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join(TIMEOUT)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    codes = [proc.exitcode for proc in procs]
    assert codes == [0] * world, f"rank exit codes {codes} (see the captured stderr)"


def _losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_log(run_dir / "log.jsonl") if r["event"] == "epoch"]


def _valid(run_dir: Path) -> list[float]:
    return [r["NDCG@10"] for r in read_log(run_dir / "log.jsonl") if r["event"] == "valid"]


def _config(tmp_path: Path, model: str, *extra: str) -> Config:
    from .conftest import write_tiny_atomic

    data = write_tiny_atomic(tmp_path / "tiny")
    # no dropout: the processes draw their own random numbers, the rest must agree to float noise
    # batch 13 of 40 windows: shares of 7 and 6, and a last batch of 1 that leaves rank 1 empty
    return tiny_config(
        data,
        tmp_path / "cache",
        f"model.name={model}",
        "model.dropout=0.0",
        "model.attn_dropout=0.0",
        "train.batch_size=13",
        "train.windows=last",
        "train.device=cpu",
        *extra,
    )


@pytest.mark.parametrize("model", ["sasrec", "gru4rec"])
def test_two_processes_follow_the_single_process_loss_curve(tmp_path, model):
    cfg = _config(tmp_path, model)
    train_on(1, cfg, tmp_path / "one")
    train_on(2, cfg, tmp_path / "two")
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 3
    np.testing.assert_allclose(two, one, rtol=1e-4)
    np.testing.assert_allclose(_valid(tmp_path / "two"), _valid(tmp_path / "one"), atol=1e-3)
    # rank 0 wrote one complete run folder: it loads and was tested once
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["test"]["NDCG@10"] > 0
    _, model_two, _ = load_trained_model(str(tmp_path / "two"))
    _, model_one, _ = load_trained_model(str(tmp_path / "one"))
    two_state = model_two.state_dict()
    for name, tensor in model_one.state_dict().items():
        torch.testing.assert_close(two_state[name], tensor, atol=1e-4, rtol=1e-3, msg=name)


def test_bert4rec_trains_on_two_processes(tmp_path):
    """Its masks are drawn in each process, so only the trend is compared."""
    cfg = _config(tmp_path, "bert4rec")
    train_on(1, cfg, tmp_path / "one")
    train_on(2, cfg, tmp_path / "two")
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(two) == 3 and all(np.isfinite(two))
    np.testing.assert_allclose(two, one, rtol=0.15)


def test_a_two_process_run_resumes_on_one_process_and_back(tmp_path):
    cfg = _config(tmp_path, "sasrec", "train.epochs=4")
    train_on(1, cfg, tmp_path / "one")
    short = _config(tmp_path, "sasrec", "train.epochs=2")
    train_on(2, short, tmp_path / "mixed")
    three = _config(tmp_path, "sasrec", "train.epochs=3")
    train_on(1, three, tmp_path / "mixed", resume=True)  # 2 processes -> 1
    train_on(2, cfg, tmp_path / "mixed", resume=True)  # 1 -> 2
    mixed = read_log(tmp_path / "mixed" / "log.jsonl")
    assert [r["epoch"] for r in mixed if r["event"] == "epoch"] == [1, 2, 3, 4]
    assert [r["step"] for r in mixed if r["event"] == "epoch"] == [4, 8, 12, 16]
    np.testing.assert_allclose(_losses(tmp_path / "mixed"), _losses(tmp_path / "one"), rtol=1e-4)
    assert json.loads((tmp_path / "mixed" / "metrics.json").read_text())["epochs"] == 4


class _Captured(Exception):
    pass


def test_sharded_evaluation_equals_one_process(tmp_path):
    """Each process scores every other evaluation batch; gathered, ties are broken in the same
    order as one process breaks them, so every rank and metric is the same."""
    cfg = _config(tmp_path, "pop")  # Pop scores many items the same: ties decide ranks
    ds = load_dataset(cfg.data, Path(cfg.cache_dir))
    split = leave_one_out(ds)
    model = build_model(cfg, ModelContext(num_items=ds.num_items))
    model.prepare(split.train)
    eval_cfg = dataclasses.replace(cfg.eval, batch_size=7)  # 6 batches, every other one each
    counts = np.bincount(np.concatenate(split.train), minlength=ds.num_items + 1)
    args = (model, split.test, eval_cfg, cfg.model.max_seq_len, "cpu", counts)
    whole = evaluate(*args, other_protocol=True)

    class Shard:
        """Rank ``rank`` of 2; rank 1's part is captured, rank 0 gathers it with its own."""

        def __init__(self, rank: int, parts: dict[int, object]) -> None:
            self.rank, self.world, self.parts = rank, 2, parts

        def gather(self, value: object) -> list[object]:
            self.parts[self.rank] = value
            if self.rank == 1:
                raise _Captured
            return [self.parts[0], self.parts[1]]

    parts: dict[int, object] = {}
    with pytest.raises(_Captured):
        evaluate(*args, other_protocol=True, shard=Shard(1, parts))
    sharded = evaluate(*args, other_protocol=True, shard=Shard(0, parts))
    np.testing.assert_array_equal(sharded.ranks, whole.ranks)
    assert sharded.metrics == whole.metrics
    assert sharded.other_protocol == whole.other_protocol
    assert sharded.lists == whole.lists


def test_one_process_has_no_group_and_shares_split_batches(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.from_environment("cpu") is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.from_environment("cpu") is None
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE='two'"):
        distributed.from_environment("cpu")
    group = distributed.ProcessGroup(rank=1, world=3, local_rank=1, device=torch.device("cpu"))
    assert group.share(np.arange(8)).tolist() == [3, 4, 5]
    assert group.share(np.arange(1)).tolist() == []


def test_a_model_that_cannot_train_data_parallel_is_refused(tmp_path, monkeypatch):
    """DARec says it cannot; the trainer refuses such a model when a group exists, naming it."""
    from darec.models.darec.model import DARecModel
    from darec.models.sasrec import SASRec
    from darec.training import trainer as trainer_module

    assert not DARecModel.data_parallel and "text bank" in DARecModel.data_parallel_note
    group = distributed.ProcessGroup(rank=0, world=2, local_rank=0, device=torch.device("cpu"))
    monkeypatch.setattr(trainer_module, "from_environment", lambda device: group)
    monkeypatch.setattr(SASRec, "data_parallel", False)
    monkeypatch.setattr(SASRec, "data_parallel_note", "a reason")
    cfg = _config(tmp_path, "sasrec")
    with pytest.raises(ConfigError, match=r"model 'sasrec' cannot train on several .*a reason"):
        _fit(cfg, tmp_path / "run", resume=False)
