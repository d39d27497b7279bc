"""Glue used by the CLI, the demo and the benchmarks: config -> dataset -> split -> trained run."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from darec.config import Config, apply_overrides
from darec.data.cold import ColdSplit
from darec.data.split import leave_one_out
from darec.evaluation.cold import cold_warm_metrics
from darec.models.registry import check_model_name
from darec.run import RunFolder, load_data, provenance, with_absolute_paths
from darec.training.trainer import FitResult, TrainCallback, Trainer

__all__ = [
    "RunRecord",
    "run_experiment",
    "run_cold_experiment",
    "DEMO_MODELS",
    "demo_config",
]


@dataclass
class RunRecord:
    """One benchmark/demo row (the schema of benchmarks/results/*.json)."""

    dataset: str
    model: str
    seed: int
    valid: dict[str, float]
    test: dict[str, float]
    epochs: int
    best_epoch: int
    train_seconds: float
    stopped: str
    peak_rss_mb: float
    commit: str
    run_dir: str
    peak_gpu_mb: float | None = None
    """Peak GPU memory allocated by torch in this process (runs on a CUDA device only)."""
    test_other_protocol: dict[str, float] | None = None
    """Test metrics under the other ``eval.exclude_history`` protocol (seen items kept)."""
    test_by_popularity: dict[str, dict[str, float]] | None = None
    """Test metrics by the popularity third (head/torso/tail) of the target."""
    content_weight: dict[str, Any] | None = None
    """The content prior's weight chosen on validation (``eval.content_weights``)."""

    def to_json(self) -> dict[str, Any]:
        # fields that are None are left out: the schema of the records written before them
        return {k: v for k, v in self.__dict__.items() if v is not None}


def run_experiment(
    cfg: Config,
    run_dir: str | Path,
    callback: TrainCallback | None = None,
    resume: bool = False,
    test: bool = True,
) -> tuple[FitResult, RunRecord]:
    """Load (cached) data, split leave-one-out, train, select on valid, test once.

    ``test=False`` is for tuning: the test split is not read and ``record.test`` is empty.
    """
    check_model_name(cfg.model.name)  # before reading any data
    cfg = with_absolute_paths(cfg)  # the run folder then works from any working folder
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    dataset = load_data(cfg)
    split = leave_one_out(dataset)
    commit = provenance()["commit"]  # the code this run starts with
    trainer = Trainer(cfg, dataset, split, run_dir, callback, record_data=True)
    result = trainer.fit(resume=resume, test=test)
    record = RunRecord(
        dataset=dataset.name,
        model=cfg.model.name,
        seed=cfg.train.seed,
        valid=result.valid,
        test=result.test,
        epochs=result.epochs,
        best_epoch=result.best_epoch,
        train_seconds=round(result.train_seconds, 2),
        stopped=result.stopped,
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        commit=commit,
        run_dir=str(run_dir),
        test_other_protocol=result.test_other_protocol or None,
        test_by_popularity=result.test_by_popularity or None,
        content_weight=result.content_weight or None,
    )
    if trainer.device.type == "cuda":
        record.peak_gpu_mb = round(torch.cuda.max_memory_allocated(trainer.device) / 2**20, 1)
    return result, record


def run_cold_experiment(
    cfg: Config,
    data: ColdSplit,
    run_dir: str | Path,
    callback: TrainCallback | None = None,
    resume: bool = False,
) -> tuple[FitResult, dict[str, dict[str, float]]]:
    """Train on ``data``'s warm items (selection on its warm validation cases), then test the
    best checkpoint on cold and warm targets (:func:`darec.evaluation.cold.cold_warm_metrics`).
    The run folder holds the warm model; the cold items are added in memory only."""
    check_model_name(cfg.model.name)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    trainer = Trainer(cfg, data.warm, data.train, run_dir, callback)
    result = trainer.fit(resume=resume, test=False)
    model = RunFolder.open(run_dir).load_model("best", trainer.device, with_added_items=False)
    return result, cold_warm_metrics(model, cfg, data, trainer.device)


# Settings chosen on ML-100K *validation* NDCG@10 (benchmarks/tune.py, records in
# benchmarks/results/tuning.json); the test split played no part in choosing them.
DEMO_MODELS: dict[str, list[str]] = {
    "pop": ["model.name=pop"],
    "gru4rec": ["model.name=gru4rec", "model.num_layers=1", "model.dropout=0.5"],
    "sasrec": ["model.name=sasrec", "model.dropout=0.2", "model.attn_dropout=0.2"],
    # the models that read item text, with DARec's text below (titles and genres, 8 layers);
    # not tuned: SASRec's settings, and the content baseline's default decay
    "content": [
        "model.name=content",
        "text.encoder_layers=8",
        "text.fields=title,genres",
        "text.max_tokens=24",
    ],
    # content plus counted transitions; held-out items borrow their text neighbours' (defaults)
    "content-cf": [
        "model.name=content-cf",
        "text.encoder_layers=8",
        "text.fields=title,genres",
        "text.max_tokens=24",
    ],
    "sasrec-text": [
        "model.name=sasrec-text",
        "model.dropout=0.2",
        "model.attn_dropout=0.2",
        "text.encoder_layers=8",
        "text.fields=title,genres",
        "text.max_tokens=24",
    ],
    # BERT4Rec learns from the masked 40% of positions only: it needs longer patience
    "bert4rec": [
        "model.name=bert4rec",
        "model.dropout=0.2",
        "model.attn_dropout=0.2",
        "model.mask_prob=0.4",
        "train.patience=20",
    ],
    # DARec sized for 2 CPU cores: the first 8 of SmolLM2's 30 layers, adapters in the top two
    # (the six frozen layers below run once per item per run, see darec.reference_path), titles and
    # genres as item text. Its CF model has the SASRec settings above; the demo starts it from
    # the SASRec run it has just trained (darec.cf_checkpoint), frozen. An untrained DARec
    # scores like that CF model (cf_residual), so its start is validated too: training must
    # beat it on validation to be kept.
    "darec": [
        "model.name=darec",
        "model.dropout=0.2",
        "model.attn_dropout=0.2",
        "text.encoder_layers=8",
        "darec.adapters=none/none*6,serial:16*2",
        "text.fields=title,genres",
        "text.max_tokens=24",
        "train.batch_size=256",
        "train.patience=3",
        "train.max_minutes=12",
        "train.validate_first=true",
    ],
}


def demo_config(model: str, base: Config | None = None, extra: list[str] | None = None) -> Config:
    """The demo's config for ``model`` on MovieLens-100K (the copy in the recbole wheel)."""
    cfg = apply_overrides(
        base or Config(),
        ["data.format=movielens", "train.epochs=200", "train.patience=10", "model.max_seq_len=50"],
    )
    return apply_overrides(cfg, DEMO_MODELS[model] + (extra or []))
