"""Adding items to a trained run from their text alone (``darec catalog add``, ``POST /items``),
no retraining.

A model that reads item text (``content``, ``sasrec-text``, ``darec``) computes what it needs for
each new item from its attributes
(:meth:`~darec.models.base.SequentialRecommender.item_rows_from_text`);
the rows are saved beside the run (:mod:`darec.run.added`) and appended to the catalog whenever
the run is loaded, so ``recommend`` and ``evaluate`` rank the new items with the trained ones.
ID-only models refuse with an error naming the model. :func:`new_item_rows` is the step both
the command and the server (:meth:`~darec.serving.recommend.Recommender.add_items`) share.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

import torch

from darec.config import Config
from darec.data.readers import read_item_file
from darec.errors import ConfigError, DataError, DuplicateIdError
from darec.models.base import SequentialRecommender, cannot_add_items
from darec.models.item_text import item_sentence
from darec.models.registry import MODELS, check_model_name
from darec.run import RunFolder
from darec.run.added import AddedItems, append_added_items

__all__ = ["add_items", "check_new_ids", "new_item_rows"]


def check_new_ids(new: Collection[str], known: Collection[str], where: str | Path) -> None:
    """Raise :class:`DuplicateIdError` if an id of ``new`` is in ``known`` (the run's catalog)
    or given twice; ``where`` names the source of ``new`` in the message."""
    repeated = [item for item in new if item in known]
    if repeated:
        shown = ", ".join(map(repr, repeated[:3]))
        raise DuplicateIdError(
            f"{len(repeated)} item(s) are already in the run's catalog (e.g. {shown}); "
            "give new items only",
            path=where,
        )
    seen: set[str] = set()
    for item in new:
        if item in seen:
            raise DuplicateIdError(f"item {item!r} is given twice", path=where)
        seen.add(item)


def new_item_rows(
    model: SequentialRecommender,
    cfg: Config,
    catalog: list[dict[str, str]],
    new: Mapping[str, Mapping[str, str]],
) -> AddedItems:
    """The items ``new`` (id -> text attributes) encoded by ``model`` (trained with ``cfg`` on
    ``catalog``) for :meth:`~darec.models.base.SequentialRecommender.extend_catalog`; ``model``
    is not changed. Raise :class:`ConfigError` for a model that cannot add items or an item
    without text in ``text.fields`` (naming it)."""
    if not model.adds_items_from_text:
        raise cannot_add_items(cfg.model.name)
    if not new:
        raise ConfigError("expected at least one new item, got none")
    fields = cfg.text.fields
    texts = [{str(k): str(v) for k, v in a.items()} for a in new.values()]
    for item, attributes in zip(new, texts, strict=True):
        if not item_sentence(attributes, fields):
            raise ConfigError(
                f"new item {item!r} has no text in text.fields "
                f"({', '.join(fields) or 'any attribute'}); an item is added from its text only"
            )
    with torch.no_grad():
        rows = model.item_rows_from_text(cfg, catalog, texts)
    return AddedItems(list(new), texts, rows)


def add_items(
    run_dir: str | Path,
    items_file: str | Path,
    id_column: str | None = None,
    data_path: str | None = None,
) -> list[str]:
    """Add the items of ``items_file`` (see :func:`~darec.data.readers.read_item_file`) to the
    run at ``run_dir`` and return their ids, in the order they get internal ids.

    ``id_column`` defaults to the run's ``data.item_id_column`` (else ``data.item_column``);
    ``data_path`` is where the run's
    data is now, if it moved (the training catalog sets the scale of the new items' features).
    Every item must be new to the run and have text in ``text.fields``.
    """
    run = RunFolder.open(run_dir)
    cfg = run.config
    check_model_name(cfg.model.name)
    if not MODELS[cfg.model.name].adds_items_from_text:
        raise cannot_add_items(cfg.model.name)
    path = Path(items_file)
    column = id_column or cfg.data.item_id_column or cfg.data.item_column
    d = cfg.data
    new = read_item_file(path, column, d.delimiter, d.max_decompressed_mb, "--id-column")
    if not new:
        raise DataError("expected at least one item, got none", path=path)
    check_new_ids(list(new), set(run.item_ids), path)
    model = run.load_model("best", with_added_items=False)
    catalog = run.load_data(data_path).catalog
    try:
        added = new_item_rows(model, cfg, catalog, new)
    except ConfigError as exc:
        raise DataError(str(exc), path=path) from None
    append_added_items(run.path, added)
    return added.item_ids
