"""One trial: the sampled layout's config, its constraints, a timed step, a short training run.

The trial trains through the project's own :class:`~darec.training.trainer.Trainer` with
``test=False`` (the test split is never read during a search) and reports the validation score
after every epoch, so the study's pruner can stop it early.
"""

from __future__ import annotations

import gc
import os
import shutil
import socket
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch

from darec.config import Config, apply_overrides
from darec.data.batching import make_batch
from darec.data.split import Split, leave_one_out
from darec.data.types import SequenceDataset
from darec.errors import DarecError
from darec.models.adapters import LayerDims, count_adapter_parameters, format_layout
from darec.run import load_data
from darec.search.space import SearchSpace
from darec.training.trainer import Trainer

__all__ = ["Objective", "TrialFailed", "measure_step_time", "trial_config"]


class TrialFailed(DarecError):
    """A trial could not be evaluated (NaN loss, out of memory, a bad layout...). The study
    records it as failed, with the reason in the ``fail_reason`` user attribute, and goes on."""


def trial_config(cfg: Config, space: SearchSpace, params: dict[str, object]) -> Config:
    """The config one trial trains with: ``cfg`` with the point applied and the trial budget
    (``search.trial_epochs`` / ``trial_minutes``, validation every epoch and every
    ``train.eval_every_steps`` steps). The start is never validated in a trial: it is the same
    for every layout (the CF model's scores), so its score would be a floor under every trial's
    value and hide the differences between layouts."""
    point = space.apply(cfg, dict(params))
    epochs = cfg.search.trial_epochs or max(cfg.train.epochs, 1)
    return apply_overrides(
        point,
        [
            f"train.epochs={epochs}",
            f"train.max_minutes={cfg.search.trial_minutes}",
            "train.eval_every=1",
            "train.checkpoint_every_steps=0",
            "train.validate_first=false",
        ],
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_step_time(trainer: Trainer, steps: int = 3) -> float:
    """Median seconds of one training step (forward, backward, AdamW update) of the trainer's
    model on a real batch of ``train.batch_size`` windows, after one untimed warm-up step.

    The model's trained state and torch's RNG are restored afterwards, so training that follows
    is the same as without the measurement (a frozen-prefix cache built by the warm-up stays,
    it does not depend on trained weights)."""
    model, cfg = trainer.model, trainer.cfg
    if not model.trainable or not trainer.windows:
        return 0.0
    gen = torch.Generator().manual_seed(cfg.train.seed)
    idx = torch.randperm(len(trainer.windows), generator=gen)[: cfg.train.batch_size].numpy()
    batch = make_batch(
        [trainer.windows[i] for i in idx], trainer.owners[idx], cfg.model.max_seq_len
    ).to(trainer.device)
    saved = {k: v.detach().clone() for k, v in model.trained_state().items()}
    rng = torch.get_rng_state()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr)
    was_training = model.training
    model.train()
    times: list[float] = []
    try:
        for _ in range(steps + 1):
            _sync(trainer.device)
            start = time.perf_counter()
            loss = model.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            _sync(trainer.device)
            times.append(time.perf_counter() - start)
    finally:
        current = model.state_dict()
        with torch.no_grad():
            for key, value in saved.items():
                current[key].copy_(value)
        for p in params:
            p.grad = None
        torch.set_rng_state(rng)
        model.train(was_training)
    return statistics.median(times[1:])


class _Reporter:
    """Trainer callback: each validation score -> the trial (and its pruner).

    The pruner's step is the validation's 1-based count, so trials that validate on the same
    schedule (every epoch, or every ``train.eval_every_steps`` steps) compare like with like."""

    def __init__(self, trial: optuna.Trial, metric: str, prune: bool) -> None:
        self.trial, self.metric, self.prune = trial, metric, prune
        self.scores: list[float] = []

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        pass

    def on_step(self, epoch: int, step: int, loss: float) -> None:
        pass

    def on_validation(self, epoch: int, metrics: dict[str, float], improved: bool) -> None:
        value = metrics[self.metric]
        self.scores.append(value)
        self.trial.set_user_attr("valid_history", self.scores)
        if not self.prune:  # multi-objective studies cannot report intermediate values
            return
        self.trial.report(value, len(self.scores))
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned at validation {len(self.scores)} (epoch {epoch}): "
                f"{self.metric} {value:.4f}"
            )


def _reject(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr("rejected", reason)
    raise optuna.TrialPruned(f"rejected before training: {reason}")


@dataclass
class Objective:
    """The function a study optimizes: params -> validation score (and step seconds).

    Loads the data once per worker; each trial trains into ``run_root/trials/trial-NNNN``,
    removed afterwards unless ``search.keep_trial_runs``."""

    cfg: Config
    space: SearchSpace
    dims: LayerDims
    run_root: Path

    def __post_init__(self) -> None:
        self._data: tuple[SequenceDataset, Split] | None = None

    @property
    def cost_aware(self) -> bool:
        return "step_time" in self.cfg.search.objectives

    def data(self) -> tuple[SequenceDataset, Split]:
        if self._data is None:
            dataset = load_data(self.cfg)
            self._data = (dataset, leave_one_out(dataset))
        return self._data

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        search, metric = self.cfg.search, self.cfg.eval.select_metric
        params = self.space.suggest(trial)
        layout = self.space.layout(params)
        trial.set_user_attr("layout", format_layout(layout))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        n_params = count_adapter_parameters(layout, self.dims)
        trial.set_user_attr("adapter_params", n_params)
        if search.param_budget and n_params > search.param_budget:
            _reject(
                trial, f"{n_params} adapter parameters > search.param_budget {search.param_budget}"
            )
        run_dir = self.run_root / "trials" / f"trial-{trial.number:04d}"
        shutil.rmtree(run_dir, ignore_errors=True)  # a retried trial starts afresh
        reporter = _Reporter(trial, metric, prune=not self.cost_aware)
        trainer: Trainer | None = None
        try:
            dataset, split = self.data()
            trainer = Trainer(
                trial_config(self.cfg, self.space, params), dataset, split, run_dir, reporter
            )
            step = measure_step_time(trainer, search.timing_steps)
            trial.set_user_attr("step_seconds", step)
            if search.step_time_budget and step > search.step_time_budget:
                _reject(
                    trial,
                    f"training step {step:.3f}s > search.step_time_budget "
                    f"{search.step_time_budget}s",
                )
            result = trainer.fit(test=False)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # NaN loss, out of memory (torch raises RuntimeError), bad layout
            reason = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("fail_reason", reason)
            raise TrialFailed(f"trial {trial.number} failed: {reason}") from exc
        finally:
            del trainer
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if not search.keep_trial_runs:
                shutil.rmtree(run_dir, ignore_errors=True)
        value = result.valid.get(metric, float("nan"))
        trial.set_user_attr("valid", result.valid)
        trial.set_user_attr("epochs", result.epochs)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("train_seconds", round(result.train_seconds, 3))
        trial.set_user_attr("stopped", result.stopped)
        return (value, step) if self.cost_aware else value
