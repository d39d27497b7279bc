"""The models on a CUDA GPU: training, evaluation, checkpoints and resuming on the device give
what the CPU gives for the same weights. Skipped where no CUDA device is present (CI runs on
CPUs); run them on a GPU machine with ``pytest tests/test_cuda.py``. ``DAREC_TEST_DEVICE``
names another device to run them on (``cpu`` checks the tests themselves)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from darec.config import Config
from darec.data.batching import make_batch, training_windows
from darec.data.split import leave_one_out
from darec.evaluation.evaluator import evaluate
from darec.experiment import run_experiment
from darec.run import load_data, load_trained_model
from tests.conftest import darec_sets, tiny_config, train_tiny_darec
from tests.test_training import CrashAt

CUDA = torch.device(os.environ.get("DAREC_TEST_DEVICE", "cuda"))
CPU = torch.device("cpu")

pytestmark = pytest.mark.skipif(
    CUDA.type == "cuda" and not torch.cuda.is_available(),
    reason="no CUDA device here: these tests check the GPU path",
)


def variants(llm: Path) -> dict[str, list[str]]:
    darec = darec_sets(llm)
    return {
        "sasrec": ["model.name=sasrec"],
        "sasrec-text": ["model.name=sasrec-text", *darec[1:3], "text.max_tokens=6"],
        # the item-once path, a frozen bottom layer served from the per-run cache
        "darec": darec,
        # every trainable layer checkpointed in small chunks
        "darec-checkpointed": [
            *darec,
            "darec.checkpoint_activations=always",
            "darec.item_batch_size=4",
        ],
        # plain causal attention: the whole-stream path
        "darec-no-cm": [*darec, "darec.context_masking=false"],
        "darec-no-cki": [*darec, "darec.cki=false"],
        # adapters from the input layer up, LoRA and IA3 from peft, bf16 backbone
        "darec-peft-bf16": [
            *darec[:2],
            "text.dtype=bf16",
            "darec.adapters=lora:4/ia3,parallel:4",
            *darec[4:],
        ],
    }


def cuda_config(data: Path, tmp: Path, sets: list[str], *extra: str) -> Config:
    return tiny_config(data, tmp / "cache", *sets, f"train.device={CUDA}", "train.epochs=2", *extra)


def batch_loss(model: torch.nn.Module, cfg: Config, device: torch.device) -> torch.Tensor:
    """The training loss of the model's first training batch, dropout off, on ``device``."""
    split = leave_one_out(load_data(cfg))
    windows, owners = training_windows(split.train, cfg.model.max_seq_len, cfg.train.windows)
    n = cfg.train.batch_size
    batch = make_batch(windows[:n], owners[:n], cfg.model.max_seq_len)
    model.to(device).eval()
    with torch.no_grad():
        return model.loss(batch.to(device)).float().cpu()


@pytest.mark.parametrize(
    "name",
    [
        "sasrec",
        "sasrec-text",
        "darec",
        "darec-checkpointed",
        "darec-no-cm",
        "darec-no-cki",
        "darec-peft-bf16",
    ],
)
def test_trains_on_the_gpu_and_scores_as_on_the_cpu(
    name: str, tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    cfg = cuda_config(tiny_data, tmp_path, variants(tiny_llm_dir)[name])
    run = tmp_path / "run"
    _, record = run_experiment(cfg, run)
    assert record.epochs == 2
    assert all(v == v for v in record.test.values())  # no NaN
    assert (record.peak_gpu_mb or 0) > 0 if CUDA.type == "cuda" else record.peak_gpu_mb is None
    # the selected weights, evaluated again on the GPU and on the CPU
    _, model, _ = load_trained_model(run)
    split = leave_one_out(load_data(cfg))
    on_gpu = evaluate(model.to(CUDA), split.test, cfg.eval, cfg.model.max_seq_len, CUDA)
    on_cpu = evaluate(model.to(CPU), split.test, cfg.eval, cfg.model.max_seq_len, CPU)
    assert on_gpu.metrics["NDCG@10"] == pytest.approx(record.test["NDCG@10"], abs=1e-6)
    # 40 users: one rank moving across a near-tie changes NDCG@10 by at most 1/40
    assert on_cpu.metrics["NDCG@10"] == pytest.approx(on_gpu.metrics["NDCG@10"], abs=0.026)
    # the same training loss on both devices (bf16 backbones: a looser tolerance)
    tol = 2e-2 if "bf16" in name else 1e-4
    gpu_loss = batch_loss(model, cfg, CUDA)
    assert torch.allclose(batch_loss(model, cfg, CPU), gpu_loss, rtol=tol, atol=tol)


def test_a_crash_on_the_gpu_resumes_exactly(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    cfg = cuda_config(
        tiny_data, tmp_path, variants(tiny_llm_dir)["darec"], "train.checkpoint_every_steps=2"
    )
    _, straight = run_experiment(cfg, tmp_path / "a")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_experiment(cfg, tmp_path / "b", CrashAt(1, 1))
    _, resumed = run_experiment(cfg, tmp_path / "b", resume=True)
    assert resumed.valid == pytest.approx(straight.valid, abs=1e-6)
    assert resumed.test == pytest.approx(straight.test, abs=1e-6)
    saved = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert saved["test"]["NDCG@10"] == pytest.approx(straight.test["NDCG@10"], abs=1e-6)


def test_auto_device_picks_the_gpu(tiny_data: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_data, tmp_path / "cache", "train.device=auto", "train.epochs=1")
    _, record = run_experiment(cfg, tmp_path / "run")
    # only a run on a CUDA device records its GPU memory
    assert (record.peak_gpu_mb is not None) == torch.cuda.is_available()


def test_recommends_on_the_gpu_as_on_the_cpu(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    """A run trained on the CPU serves on the GPU: the same top-k, streamed users included."""
    from darec.serving.recommend import Recommender

    run = train_tiny_darec(tiny_data, tmp_path, tiny_llm_dir)
    tops = {}
    for device in (CUDA, CPU):
        rec = Recommender(run, device=str(device))
        assert rec.model.device.type == device.type
        session = rec.session(["i1"])
        session.add("i2")  # DARec streams this step against the user's cached keys/values
        tops[device.type] = (rec.for_history(["i1", "i2"], k=5), session.top(k=5))
    (gpu_fresh, gpu_streamed), (cpu_fresh, cpu_streamed) = tops[CUDA.type], tops["cpu"]
    for got in (gpu_fresh, gpu_streamed, cpu_streamed):
        assert [r.item for r in got] == [r.item for r in cpu_fresh]
        assert [r.score for r in got] == pytest.approx([r.score for r in cpu_fresh], abs=1e-4)
