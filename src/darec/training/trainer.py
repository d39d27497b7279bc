"""One training loop for every model: AdamW (or Adam), warm-up + schedule, gradient clipping,
validation on full ranking, early stopping, resumable checkpoints, and a single read of the test
split."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from darec.config import Config, config_from_run, config_to_dict, flat_config
from darec.data.batching import TrainBatch, make_batch, training_windows
from darec.data.split import Split
from darec.data.types import SequenceDataset
from darec.devices import pick_device
from darec.errors import CheckpointError, ConfigError, DarecError, DataError
from darec.evaluation.evaluator import EvalResult, evaluate
from darec.evaluation.popularity import item_counts, metrics_by_group, popularity_groups
from darec.models.base import ModelContext, SequentialRecommender
from darec.models.registry import build_model
from darec.paths import cache_dir
from darec.run import load_trained_model, with_absolute_paths
from darec.run.checkpoint import (
    CheckpointState,
    atomic_write_json,
    checkpoint_path,
    load_checkpoint,
    provenance,
    read_json,
    save_checkpoint,
)
from darec.run.fingerprint import check_data_unchanged, data_fingerprint, write_data_fingerprint
from darec.run.folder import CONTENT_WEIGHT_FILE
from darec.run.lock import run_lock
from darec.run.state import TrainerState
from darec.training.distributed import from_environment
from darec.training.log import TrainingLog

__all__ = [
    "Trainer",
    "FitResult",
    "TrainCallback",
    "TrainingError",
]


class TrainingError(DarecError):
    """Training cannot go on (e.g. the loss became NaN)."""


class TrainCallback(Protocol):
    """Progress hooks; the CLI draws a progress bar with them. All optional."""

    def on_epoch_start(self, epoch: int, steps: int) -> None: ...
    def on_step(self, epoch: int, step: int, loss: float) -> None: ...
    def on_validation(self, epoch: int, metrics: dict[str, float], improved: bool) -> None: ...


@dataclass
class FitResult:
    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float]
    epochs: int
    train_seconds: float
    stopped: str
    """Why training ended: ``epochs``, ``early_stopping``, ``time_limit`` or ``untrainable``."""
    history: list[dict[str, Any]] = field(default_factory=list)
    test_other_protocol: dict[str, float] = field(default_factory=dict)
    """Test metrics with the other ``eval.exclude_history`` (seen items kept, by default)."""
    test_by_popularity: dict[str, dict[str, float]] = field(default_factory=dict)
    """Test metrics of the users whose target is in the head, torso or tail third of items."""
    content_weight: dict[str, Any] = field(default_factory=dict)
    """The content prior's weight chosen on validation (``eval.content_weights``): the run
    folder's content_weight.json; empty when none was chosen."""
    notes: list[str] = field(default_factory=list)
    """What a user should know about how the run ended (e.g. a time limit that cut a run whose
    validation was still improving); the CLI prints them."""


RESUME_MAY_CHANGE = (
    "train.epochs",
    "train.max_minutes",
    "train.patience",
    "train.tensorboard",
    "train.threads",
    "eval.content_weights",
)
"""Config keys a resumed run may change: the budget, the logging, the CPU threads (a run moved
to a machine with other cores) and the content-prior weights tried after training (a finished
run resumed with new ones chooses among them), never what is trained or how."""


def _schedule(cfg: Config, total_steps: int) -> Callable[[int], float]:
    warmup, kind = cfg.train.warmup_steps, cfg.train.scheduler

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "constant" or total_steps <= warmup:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class _LossOf(torch.nn.Module):
    """``model.loss`` as a module's ``forward``: what DistributedDataParallel wraps, since it
    synchronises the gradients of what goes through ``forward`` only."""

    def __init__(self, model: SequentialRecommender) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, inputs: torch.Tensor, targets: torch.Tensor, users: torch.Tensor
    ) -> torch.Tensor:
        return self.model.loss(TrainBatch(inputs, targets, users))


def _data_parallel(model: SequentialRecommender, device: torch.device) -> torch.nn.Module:
    """``model.loss`` wrapped in DistributedDataParallel (which starts by broadcasting rank 0's
    parameters). Buffers are set by ``prepare`` and equal everywhere: none is synchronised on
    each step. Every trainable parameter of the models that train data-parallel takes part in
    every step's loss, so DDP need not search the graph for unused ones."""
    from torch.nn.parallel import DistributedDataParallel

    options: dict[str, Any] = {}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
        options["forward_sync_buffers"] = False  # torch >= 2.13 names it so
    else:
        options["broadcast_buffers"] = False
    device_ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(_LossOf(model), device_ids=device_ids, **options)


class Trainer:
    """Trains ``cfg.model.name`` on ``split.train``, selects on ``split.valid``, tests once.

    The run folder receives the config, the id maps, checkpoints and the final metrics. With
    ``resume=True`` training continues from the last checkpoint exactly: same parameters,
    optimizer and scheduler state, RNG, epoch and position inside the epoch.

    Started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment), every process builds a
    Trainer and they train one model data-parallel: see :mod:`darec.training.distributed`.
    """

    def __init__(
        self,
        cfg: Config,
        dataset: SequenceDataset,
        split: Split,
        run_dir: str | Path,
        callback: TrainCallback | None = None,
        record_data: bool = False,
    ) -> None:
        self.cfg = cfg
        # ``dataset`` is exactly what cfg.data reads: fingerprint it into the run folder, and
        # check it against that fingerprint when resuming (darec.run.fingerprint)
        self.record_data = record_data
        self.dataset = dataset
        self.split = split
        self.run_dir = Path(run_dir)
        board = self.run_dir / "tensorboard" if cfg.train.tensorboard else None
        self.log = TrainingLog(self.run_dir / "log.jsonl", board)
        self.callback = callback
        self._clock = time.monotonic()  # when training time last started counting (fit)
        if len(split.valid.targets) == 0:
            raise DataError(
                f"dataset {dataset.name!r} has no user with at least 3 interactions, so there is "
                "nothing to validate or test; raise data.user_min to 3 or more"
            )
        self.group = from_environment(cfg.train.device)
        self.main = self.group is None or self.group.main
        """Whether this process writes the run folder (rank 0, or the only process)."""
        self.device = (
            self.group.device if self.group else torch.device(pick_device(cfg.train.device))
        )
        # the run's explicit seed (initialisation here; batch order, dropout and sampling later)
        torch.manual_seed(cfg.train.seed)
        ctx = ModelContext(
            num_items=dataset.num_items,
            catalog=dataset.catalog,
            data_key=dataset.key,
            cache_dir=cache_dir(cfg.cache_dir) if cfg.data.cache else None,
            load_run=load_trained_model,
        )
        self.model: SequentialRecommender = build_model(cfg, ctx)
        self.model.prepare(split.train)
        self.model.to(self.device)
        self._ddp: torch.nn.Module | None = None
        if self.group is not None and self.model.trainable:
            if not self.model.data_parallel:
                raise ConfigError(
                    f"model {cfg.model.name!r} cannot train on several processes yet (WORLD_SIZE="
                    f"{self.group.world}): {self.model.data_parallel_note}; train it with one "
                    "process"
                )
            self._ddp = _data_parallel(self.model, self.device)
        self.windows, self.owners = training_windows(
            split.train, cfg.model.max_seq_len, cfg.train.windows
        )
        self.window_lengths = np.array([len(w) for w in self.windows], dtype=np.int64)
        self.steps_per_epoch = math.ceil(len(self.windows) / cfg.train.batch_size)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        if self.model.trainable:
            if not self.windows:
                raise TrainingError(
                    "no training windows: every user's training sequence has fewer than 2 "
                    "items (check data.user_min and the split)"
                )
            optimizer = torch.optim.Adam if cfg.train.optimizer == "adam" else torch.optim.AdamW
            self.optimizer = optimizer(
                [p for p in self.model.parameters() if p.requires_grad],
                lr=cfg.train.lr,
                weight_decay=cfg.train.weight_decay,
            )
            total = cfg.train.epochs * self.steps_per_epoch
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, _schedule(cfg, total)
            )
        self.state = TrainerState()

    # ------------------------------------------------------------------ run folder

    def _write_run_files(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.run_dir / "config.json", config_to_dict(self.cfg))
        atomic_write_json(
            self.run_dir / "ids.json",
            {
                "dataset": self.dataset.name,
                "dataset_key": self.dataset.key,
                "user_ids": self.dataset.user_ids,
                "item_ids": self.dataset.item_ids,
            },
        )
        if self.record_data:
            write_data_fingerprint(self.run_dir, data_fingerprint(self.cfg.data, self.dataset))

    def _barrier(self) -> None:
        """With several processes: wait for all (e.g. for rank 0's writes)."""
        if self.group is not None:
            self.group.barrier()

    def _log(self, record: dict[str, Any]) -> None:
        if self.main:
            self.log.write(record)

    def _checkpoint(self, is_best: bool) -> None:
        """Rank 0 saves (every process counts the save, so their states stay equal)."""
        self.state.saves += 1
        if not self.main:
            self._barrier()
            return
        on_gpu = self.device.type == "cuda"
        state = CheckpointState(
            model=self.model.trained_state(),
            optimizer=self.optimizer.state_dict() if self.optimizer else None,
            scheduler=self.scheduler.state_dict() if self.scheduler else None,
            rng=torch.get_rng_state(),
            trainer=self.state,
            cuda_rng=torch.cuda.get_rng_state(self.device) if on_gpu else None,
        )
        name = f"step-{self.state.global_step:08d}-{self.state.saves:04d}"
        save_checkpoint(self.run_dir, name, state, is_best)
        self._barrier()

    def _check_resumed_config(self) -> None:
        """Refuse a resume whose config differs from the run's, naming the keys, except for
        the budget keys (RESUME_MAY_CHANGE), which are then written to the run's config.json."""
        # normalised: keys added since (at their defaults) or renamed do not count as changes
        # data paths compared absolute: runs saved before they were stored so still resume
        saved_cfg = with_absolute_paths(config_from_run(read_json(self.run_dir / "config.json")))
        saved = flat_config(saved_cfg)
        now = flat_config(with_absolute_paths(self.cfg))
        changed = [k for k in now if saved.get(k) != now[k]]
        refused = [k for k in changed if k not in RESUME_MAY_CHANGE]
        if "train.epochs" in changed and self.cfg.train.scheduler != "constant":
            refused.append("train.epochs")  # the learning-rate schedule spans train.epochs
        if refused:
            shown = "; ".join(f"{k}: {saved.get(k)!r} in the run, {now[k]!r} now" for k in refused)
            raise CheckpointError(
                f"{self.run_dir}/config.json differs from the config given now ({shown}); "
                f"resume with the run's values (only {', '.join(RESUME_MAY_CHANGE)} may change, "
                "train.epochs only with a constant schedule), or train into a new folder"
            )
        if self.record_data:
            check_data_unchanged(self.run_dir, self.cfg.data, self.dataset, resuming=True)
        if changed and self.main:
            atomic_write_json(self.run_dir / "config.json", config_to_dict(self.cfg))

    def _reopen_if_budget_raised(self) -> None:
        """A run that ended on a budget that the resumed config raises goes on training."""
        cfg, state = self.cfg.train, self.state
        if (
            (state.stopped == "epochs" and state.epoch < cfg.epochs)
            or (state.stopped == "time_limit" and not self._out_of_time())
            or (state.stopped == "early_stopping" and not self._patience_spent())
        ):
            state.stopped = None

    def _restore(self) -> None:
        self._check_resumed_config()
        ckpt = load_checkpoint(checkpoint_path(self.run_dir, "last"))
        self.model.load_trained_state(ckpt.model)
        if self.optimizer is not None and ckpt.optimizer is not None:
            self.optimizer.load_state_dict(ckpt.optimizer)
        if self.scheduler is not None and ckpt.scheduler is not None:
            self.scheduler.load_state_dict(ckpt.scheduler)
        torch.set_rng_state(ckpt.rng)
        if ckpt.cuda_rng is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt.cuda_rng, self.device)
        self.state = ckpt.trainer
        if self.main:
            self.log.truncate_after(self.state.global_step)  # the steps about to be redone
        self._reopen_if_budget_raised()

    # ------------------------------------------------------------------ training

    def _validate(self, epoch: int, partial_steps: int | None = None) -> bool:
        """Validate now; ``epoch`` is the epoch in progress (1-based; 0 before training),
        ``partial_steps``: it has not finished (time limit or a mid-epoch validation) and ran
        this many of its steps."""
        result = self.evaluate_split("valid")
        metric = result.metrics[self.cfg.eval.select_metric]
        best = self.state.best_metric
        improved = best is None or metric > best
        step = self.state.global_step
        if improved:
            self.state.best_metric = metric
            self.state.best_epoch = epoch
            self.state.best_step = step
            self.state.bad_evals = 0
        else:
            self.state.bad_evals += 1
        record: dict[str, Any] = {"epoch": epoch, "step": step, **result.metrics}
        if partial_steps is not None:
            record["partial_epoch"] = True
            record["epoch_steps"] = f"{partial_steps}/{self.steps_per_epoch}"
        self.state.history.append(record)
        self._log({"event": "valid", **record, "seconds": round(self._elapsed(), 2)})
        if self.callback and self.main:
            self.callback.on_validation(epoch, result.metrics, improved)
        return improved

    def _patience_spent(self) -> bool:
        patience = self.cfg.train.patience
        return bool(patience) and self.state.bad_evals >= patience

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """Window indices of every batch of ``epoch``, reproducible from (seed, epoch).

        With ``train.bucket_by_length`` windows of similar length share a batch (sorted inside
        groups of 64 random batches, then the batches shuffled), so little time goes to padding.
        """
        gen = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.windows), generator=gen).numpy()
        size = self.cfg.train.batch_size
        if not self.cfg.train.bucket_by_length:
            return [order[i : i + size] for i in range(0, len(order), size)]
        batches: list[np.ndarray] = []
        group = size * 64
        for g in range(0, len(order), group):
            idx = order[g : g + group]
            idx = idx[np.argsort(self.window_lengths[idx], kind="stable")]
            batches += [idx[i : i + size] for i in range(0, len(idx), size)]
        shuffle = torch.randperm(len(batches), generator=gen).tolist()
        return [batches[i] for i in shuffle]

    def _train_epoch(self, epoch: int) -> str:
        """Run the rest of epoch ``epoch``: ``finished``, or what stopped it (``time_limit``,
        or ``early_stopping`` after a mid-epoch validation, see ``train.eval_every_steps``)."""
        assert self.scheduler is not None
        batches = self._epoch_batches(epoch)
        if self.callback and self.main:
            self.callback.on_epoch_start(epoch, self.steps_per_epoch)
        self.model.train()
        losses: list[float] = []
        try:
            return self._run_steps(epoch, batches, losses)
        finally:
            if losses:  # what this process ran of the epoch (all of it but after a resume)
                self._log(
                    {
                        "event": "epoch",
                        "epoch": epoch + 1,
                        "step": self.state.global_step,
                        "steps": len(losses),
                        "of_steps": self.steps_per_epoch,
                        "loss": sum(losses) / len(losses),
                        "lr": self.scheduler.get_last_lr()[0],
                        "seconds": round(self._elapsed(), 2),
                    }
                )

    def _run_steps(self, epoch: int, batches: list[np.ndarray], losses: list[float]) -> str:
        cfg = self.cfg.train
        assert self.optimizer is not None and self.scheduler is not None
        for step in range(self.state.step_in_epoch, self.steps_per_epoch):
            if self._out_of_time():
                return "time_limit"
            loss, shown = self._step_loss(batches[step])
            if not torch.isfinite(shown):
                raise TrainingError(
                    f"loss became {shown.item()} at epoch {epoch + 1}, step {step + 1}; "
                    "lower train.lr or raise train.grad_clip (the last checkpoint is intact)"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.state.step_in_epoch = step + 1
            self.state.global_step += 1
            losses.append(shown.item())
            if self.callback and self.main:
                self.callback.on_step(epoch, step, losses[-1])
            gstep, last = self.state.global_step, step + 1 == self.steps_per_epoch
            validate = bool(cfg.eval_every_steps) and gstep % cfg.eval_every_steps == 0 and not last
            if validate or (cfg.checkpoint_every_steps and gstep % cfg.checkpoint_every_steps == 0):
                improved = validate and self._validate(epoch + 1, self.state.step_in_epoch)
                self.model.train()  # validation left it in eval mode
                self._bank_time()
                self._checkpoint(is_best=improved)
                if validate and self._patience_spent():
                    return "early_stopping"
        return "finished"

    def _step_loss(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss to differentiate for the batch of windows ``idx``, and the batch's loss to
        report (the same tensor for one process).

        With several processes each takes its share of the batch, and DDP averages their
        gradients; each share's loss is weighted by its count of loss terms (positions with a
        target, see ``SequentialRecommender.loss_terms``), so the average is the gradient of the
        whole batch's loss, as one process computes it.
        """
        if self._ddp is None or self.group is None:
            batch = make_batch(
                [self.windows[i] for i in idx], self.owners[idx], self.cfg.model.max_seq_len
            ).to(self.device)
            loss = self.model.loss(batch)
            return loss, loss
        share = self.group.share(idx)
        empty = not len(share)
        if empty:  # a batch smaller than the world: this process still joins the sync
            share = idx[:1]
        batch = make_batch(
            [self.windows[i] for i in share], self.owners[share], self.cfg.model.max_seq_len
        ).to(self.device)
        terms = 0 if empty else self.model.loss_terms(batch)
        local = self._ddp(batch.inputs, batch.targets, batch.users)
        # one all-reduce: the batch's summed loss and its count of terms
        count_here = torch.tensor(float(terms), device=local.device)
        total, count = self.group.sum(torch.stack([local.detach().float() * terms, count_here]))
        count = count.clamp(min=1)
        return local * (terms * self.group.world / count), total / count

    def _bank_time(self) -> None:
        """Add the time since the clock last started to ``state.elapsed`` (what checkpoints
        carry across a resume) and restart the clock, so no interval is counted twice."""
        now = time.monotonic()
        self.state.elapsed += now - self._clock
        self._clock = now

    def _elapsed(self) -> float:
        """Seconds of training so far, across resumes."""
        return self.state.elapsed + time.monotonic() - self._clock

    def _out_of_time(self) -> bool:
        limit = self.cfg.train.max_minutes
        if not limit:
            return False
        late = self._elapsed() > limit * 60
        # with several processes rank 0's clock decides, so that all stop at the same step
        return self.group.agree(late) if self.group is not None else late

    def fit(self, resume: bool = False, test: bool = True) -> FitResult:
        """Train (or resume), select the best validation checkpoint, evaluate test once.

        ``test=False`` (hyper-parameter tuning) never reads the test split.
        """
        if not self.main:  # rank 0 holds the lock for all; the others follow its writes
            return self._fit(resume, test)
        with run_lock(self.run_dir):
            try:
                return self._fit(resume, test)
            finally:
                self.log.close()

    def _fit(self, resume: bool, test: bool) -> FitResult:
        cfg = self.cfg.train
        self._barrier()  # rank 0 holds the run lock (and cleaned the folder) from here
        if resume:
            self._restore()
        else:
            if (self.run_dir / "checkpoints" / "pointers.json").exists():
                raise CheckpointError(
                    f"{self.run_dir} already holds a trained run; continue it with "
                    "`darec train ... --resume` or choose a new output folder"
                )
            if self.main:
                self._write_run_files()
        if self.group is not None and not self.main:
            # dropout and sampling draws of its own, reproducible from where training starts;
            # rank 0 goes on with the run's RNG (what checkpoints save)
            torch.manual_seed(
                (cfg.seed * 1_000_003 + self.group.rank * 7_919 + self.state.global_step) % 2**63
            )
        self._barrier()  # the run files are written
        self._clock = time.monotonic()  # training time runs from here (and from each resume)
        while self.model.trainable and self.state.stopped is None and self.state.epoch < cfg.epochs:
            epoch = self.state.epoch
            if self._out_of_time():
                self.state.stopped = "time_limit"
                break
            if not self.state.history and cfg.validate_first:
                self._validate(0)  # the starting point competes with every later validation
                self._checkpoint(is_best=True)
            ended = self._train_epoch(epoch)
            done = self.state.step_in_epoch
            # a partial epoch (time limit) counts as an epoch; its validation says so
            self.state.epoch, self.state.step_in_epoch = epoch + 1, 0
            improved = False
            history = self.state.history
            # not twice at one step (time ran out just after a mid-epoch validation)
            fresh = not history or history[-1]["step"] != self.state.global_step
            if fresh and (
                ended == "time_limit"
                or (
                    ended == "finished"
                    and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs)
                )
            ):
                improved = self._validate(epoch + 1, None if ended == "finished" else done)
            if ended != "finished":
                self.state.stopped = ended
            elif self._patience_spent():
                self.state.stopped = "early_stopping"
            self._bank_time()
            self._checkpoint(is_best=improved)
        if not self.state.history:  # nothing to train (Pop) or train.epochs = 0
            self._validate(0)
            self._checkpoint(is_best=True)
        stopped = self.state.stopped or ("epochs" if self.model.trainable else "untrainable")
        return self._finish(stopped, test)

    def _finish(self, stopped: str, read_test: bool) -> FitResult:
        best = load_checkpoint(checkpoint_path(self.run_dir, "best"), with_training_state=False)
        self.model.load_trained_state(best.model)
        valid = self.state.best_metrics()
        chosen, valid = self._choose_content_weight(valid)
        # the only read of the test split: the selected checkpoint under both protocols (seen
        # items excluded or kept as candidates) and by the target's popularity
        test, test_other, by_popularity = self._test_report() if read_test else ({}, {}, {})
        result = FitResult(
            best_epoch=self.state.best_epoch,
            valid=valid,
            test=test,
            test_other_protocol=test_other,
            test_by_popularity=by_popularity,
            epochs=self.state.epoch,
            train_seconds=self.state.elapsed,
            stopped=stopped,
            history=self.state.history,
            content_weight=chosen,
            notes=self._notes(stopped),
        )
        if not self.main:
            self._barrier()  # rank 0 writes metrics.json
            return result
        atomic_write_json(
            self.run_dir / "metrics.json",
            {
                "dataset": self.dataset.name,
                "model": self.cfg.model.name,
                "seed": self.cfg.train.seed,
                "exclude_history": self.cfg.eval.exclude_history,
                "select_metric": self.cfg.eval.select_metric,
                "best_epoch": result.best_epoch,
                "epochs": result.epochs,
                "stopped": stopped,
                "train_seconds": result.train_seconds,
                "valid": valid,
                "test": test,
                "test_other_protocol": test_other,
                "test_by_popularity": by_popularity,
                **({"content_weight": chosen} if chosen else {}),
                "provenance": provenance(),
            },
        )
        self._barrier()
        return result

    def _choose_content_weight(
        self, valid: dict[str, float]
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """With ``eval.content_weights`` and a model with a content prior: validate the loaded
        best checkpoint with each weight (``valid``: its metrics at the current weight), keep the
        best on ``eval.select_metric`` (the smaller weight on a tie) in the model and in the run
        folder's content_weight.json. Returns that record ({} when there is nothing to choose)
        and the validation metrics at the chosen weight."""
        prior, weights = self.model.content_prior(), self.cfg.eval.content_weights
        if prior is None or not weights or not valid:
            if self.main:  # a choice made before this resume no longer says what was tested
                (self.run_dir / CONTENT_WEIGHT_FILE).unlink(missing_ok=True)
            return {}, valid
        metric = self.cfg.eval.select_metric
        tried = {prior.weight: valid}
        # the users are encoded once: a user's state (model and text parts) does not depend on
        # the weight, only its score does. The nonzero weights go first, so that the states kept
        # have the text part; weight 0 scores them as the model alone (+ 0 x cosine)
        states: dict[int, torch.Tensor] = {}
        for weight in sorted(set(weights) - {prior.weight}, key=lambda w: (w == 0, w)):
            prior.weight = weight
            tried[weight] = self.evaluate_split("valid", states).metrics
        prior.weight = max(sorted(tried), key=lambda w: tried[w][metric])  # first best: smallest
        record = {
            "weight": prior.weight,
            "select_metric": metric,
            "valid": {f"{w:g}": tried[w][metric] for w in sorted(tried)},
        }
        if self.main:
            atomic_write_json(self.run_dir / CONTENT_WEIGHT_FILE, record)
        self._log({"event": "content_weight", **record})
        return record, tried[prior.weight]

    def _notes(self, stopped: str) -> list[str]:
        """Warnings about how training ended, for the user (the CLI prints them)."""
        history, notes = self.state.history, list[str]()
        if stopped != "time_limit" or not history:
            return notes
        last = history[-1]
        if last.get("partial_epoch") and "epoch_steps" in last:
            notes.append(
                f"train.max_minutes ended epoch {last['epoch']} after {last['epoch_steps']} "
                "steps: it is a partial epoch"
            )
        if self.state.best_step == last["step"] and len(history) > 1:
            minutes = self.cfg.train.max_minutes
            notes.append(
                f"train.max_minutes={minutes:g} ended this run while validation was still "
                "improving (its last validation is the best): the result depends on how fast "
                "this machine was; train on with `darec train -o RUN --resume --set "
                f"train.max_minutes={2 * minutes:g}`"
            )
        return notes

    def _test_report(
        self,
    ) -> tuple[dict[str, float], dict[str, float], dict[str, dict[str, float]]]:
        """Test metrics under ``eval.exclude_history`` (with the top-10 lists' catalog coverage
        and mean popularity), under the other protocol, and by the popularity third
        (head/torso/tail by training count) of each user's target: one read of the test split."""
        result = self.evaluate_split("test")
        groups = popularity_groups(item_counts(self.split.train, self.dataset.num_items))
        ks = tuple(sorted({*self.cfg.eval.ks, 10}))
        by_group = metrics_by_group(result.ranks, self.split.test.targets, groups, ks)
        return result.metrics | result.lists, result.other_protocol, by_group

    def evaluate_split(
        self, which: str, user_states: dict[int, torch.Tensor] | None = None
    ) -> EvalResult:
        """Full-ranking metrics on ``valid`` or ``test``; the test read (once, at the end) also
        ranks under the other protocol and describes the top-10 lists (catalog coverage and
        mean popularity of the recommended items). ``user_states``: see
        :func:`~darec.evaluation.evaluator.evaluate`."""
        data, counts = self.split.valid, None
        if which == "test":
            data, counts = self.split.test, item_counts(self.split.train, self.dataset.num_items)
        return evaluate(
            self.model,
            data,
            self.cfg.eval,
            self.cfg.model.max_seq_len,
            self.device,
            counts,
            other_protocol=which == "test",
            shard=self.group,
            user_states=user_states,
        )
