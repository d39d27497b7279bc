"""A trained run folder as an object: its config, id maps, checkpoints, data and model.

Everything that reads a run folder goes through :class:`RunFolder` (evaluation, serving,
search retraining, DARec's CF start), so no reader needs the trainer that wrote it. The folder
layout and the checkpoint format are described in :mod:`darec.run.checkpoint`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from darec.config import Config, DataConfig, config_from_run
from darec.data.dataset import load_dataset
from darec.data.types import SequenceDataset
from darec.errors import CheckpointError
from darec.models.base import ModelContext, SequentialRecommender
from darec.models.registry import build_model
from darec.paths import cache_dir
from darec.run.added import AddedItems, read_added_items
from darec.run.checkpoint import checkpoint_path, load_checkpoint, read_json, read_trainer_state
from darec.run.fingerprint import check_data_unchanged
from darec.run.state import TrainerState

__all__ = [
    "CONTENT_WEIGHT_FILE",
    "RunFolder",
    "load_trained_model",
    "load_data",
    "data_config",
    "check_run_data",
    "with_absolute_paths",
]


CONTENT_WEIGHT_FILE = "content_weight.json"
"""The content prior's weight chosen on validation after training (``eval.content_weights``):
``{"weight": w, "select_metric": ..., "valid": {weight: metric}}``; applied at every load."""


def with_absolute_paths(cfg: Config) -> Config:
    """``cfg`` with ``data.path`` and ``data.item_path`` made absolute (from the working folder),
    as a run folder stores them: the run then works from any folder."""

    def absolute(value: str) -> str:
        return str(Path(value).expanduser().resolve()) if value else value

    data = dataclasses.replace(
        cfg.data, path=absolute(cfg.data.path), item_path=absolute(cfg.data.item_path)
    )
    return dataclasses.replace(cfg, data=data)


def data_config(cfg: Config, path: str | None = None, item_path: str | None = None) -> DataConfig:
    """``cfg.data`` with ``path`` and ``item_path`` overriding ``data.path`` and
    ``data.item_path`` where given (data that moved since training, another item file)."""
    data_cfg = cfg.data if path is None else dataclasses.replace(cfg.data, path=path)
    if item_path is not None:
        data_cfg = dataclasses.replace(data_cfg, item_path=item_path)
    return data_cfg


def load_data(
    cfg: Config, path: str | None = None, item_path: str | None = None
) -> SequenceDataset:
    """The processed dataset of ``cfg`` (from the cache when enabled); ``path`` and
    ``item_path`` override ``data.path`` and ``data.item_path`` (see :func:`data_config`)."""
    data_cfg = data_config(cfg, path, item_path)
    return load_dataset(data_cfg, cache_dir(cfg.cache_dir) if data_cfg.cache else None)


def check_run_data(dataset: SequenceDataset, ids: dict[str, Any], run_dir: str | Path) -> None:
    """Raise unless ``dataset`` has the items a run was trained on (same ids, same order)."""
    if dataset.key != ids.get("dataset_key") and dataset.item_ids != ids["item_ids"]:
        raise CheckpointError(
            f"the data now at {dataset.name!r} does not match the items run {run_dir} was "
            "trained on; pass the original data with --data"
        )


@dataclass(frozen=True)
class RunFolder:
    """A folder written by the trainer (``config.json``, ``ids.json``, ``checkpoints/``)."""

    path: Path

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """The run at ``path``; raise :class:`CheckpointError` if it is not a run folder."""
        run = Path(path)
        if not (run / "config.json").exists():
            raise CheckpointError(
                f"{run} is not a run folder (no config.json); train one with `darec train`"
            )
        return cls(run)

    @cached_property
    def config(self) -> Config:
        return config_from_run(read_json(self.path / "config.json"))

    @cached_property
    def ids(self) -> dict[str, Any]:
        """``user_ids`` and ``item_ids`` (index = internal id), the dataset's name and key."""
        path = self.path / "ids.json"
        ids = read_json(path)
        for key in ("user_ids", "item_ids"):
            values = ids.get(key) if isinstance(ids, dict) else None
            if not (
                isinstance(values, list) and values and all(isinstance(v, str) for v in values)
            ):
                raise CheckpointError(
                    f"{path}: expected {key!r}, a list of id strings (index = internal id, "
                    "entry 0 = padding), as `darec train` writes it; was the file edited?"
                )
        checked: dict[str, Any] = ids
        return checked

    @property
    def num_items(self) -> int:
        """Items the run was trained on (added items not counted)."""
        return len(self.ids["item_ids"]) - 1

    @property
    def added_items(self) -> AddedItems | None:
        """Items added after training from their text (``darec catalog add``), or None."""
        return read_added_items(self.path)

    @property
    def item_ids(self) -> list[str]:
        """External id per internal id of the model :meth:`load_model` gives: the trained items,
        then the added ones."""
        added = self.added_items
        trained: list[str] = self.ids["item_ids"]
        return trained if added is None else trained + added.item_ids

    @cached_property
    def metrics(self) -> dict[str, Any] | None:
        """``metrics.json``, written when training ended (selected epoch, valid and test
        metrics); None while the run has not finished."""
        path = self.path / "metrics.json"
        if not path.exists():
            return None
        metrics = read_json(path)
        if not isinstance(metrics, dict):
            raise CheckpointError(
                f"{path}: expected a JSON object, as `darec train` writes it; was the file edited?"
            )
        checked: dict[str, Any] = metrics
        return checked

    @cached_property
    def progress(self) -> TrainerState | None:
        """Where training stood at the last checkpoint (epochs, best validation, training
        time); None before the first checkpoint."""
        if not (self.path / "checkpoints" / "pointers.json").exists():
            return None
        return read_trainer_state(self.checkpoint("last"))

    def checkpoint(self, which: str = "best") -> Path:
        """Folder of the ``best`` or ``last`` checkpoint."""
        return checkpoint_path(self.path, which)

    def load_model(
        self,
        which: str = "best",
        device: torch.device | str | None = None,
        with_added_items: bool = True,
    ) -> SequentialRecommender:
        """The model with the ``which`` checkpoint's weights, in eval mode, on ``device``; with
        the items added after training appended to its catalog unless ``with_added_items`` is
        False (then it has exactly the trained items)."""
        ctx = ModelContext(num_items=self.num_items, load_run=load_trained_model)
        model = build_model(self.config, ctx)
        ckpt = load_checkpoint(self.checkpoint(which), with_training_state=False)
        try:
            model.load_trained_state(ckpt.model)
        except CheckpointError as exc:
            raise CheckpointError(f"{self.path}: {exc}") from None
        added = self.added_items if with_added_items else None
        if added is not None:
            model.extend_catalog(added.rows)
        prior, chosen = model.content_prior(), self.path / CONTENT_WEIGHT_FILE
        if prior is not None and chosen.exists():
            prior.weight = float(read_json(chosen)["weight"])
        if device is not None:
            model.to(device)
        return model.eval()

    def load_data(
        self,
        path: str | None = None,
        item_path: str | None = None,
        allow_changed_data: bool = False,
    ) -> SequenceDataset:
        """The run's dataset (``path`` overrides where it is now, ``item_path`` its item file),
        checked against the data it was trained on (``data.json``: a change raises
        :class:`~darec.errors.DataError`, or warns with ``allow_changed_data``) and against its
        items (always)."""
        dataset = load_data(self.config, path, item_path)
        check_data_unchanged(
            self.path,
            data_config(self.config, path, item_path),
            dataset,
            allow_changed=allow_changed_data,
            item_file_given=item_path is not None,
        )
        check_run_data(dataset, self.ids, self.path)
        return dataset


def load_trained_model(
    run_dir: str | Path, which: str = "best"
) -> tuple[Config, SequentialRecommender, dict[str, Any]]:
    """Config, model with the ``best`` (or ``last``) weights, and the id maps of a run folder:
    the items it was trained on (not those added since, see :meth:`RunFolder.load_model`)."""
    run = RunFolder.open(run_dir)
    return run.config, run.load_model(which, with_added_items=False), run.ids
