"""Adding items to a trained run from their text alone (``darec catalog add``), no retraining.

A model that reads item text (``content``, ``sasrec-text``, ``darec``) computes what it needs for
each new item from its attributes
(:meth:`~darec.models.base.SequentialRecommender.item_rows_from_text`);
the rows are saved beside the run (:mod:`darec.run.added`) and appended to the catalog whenever
the run is loaded, so ``recommend`` and ``evaluate`` rank the new items with the trained ones.
ID-only models refuse with an error naming the model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from darec.data.readers import read_item_file
from darec.errors import DataError
from darec.models.base import cannot_add_items
from darec.models.registry import MODELS, check_model_name
from darec.run import RunFolder
from darec.run.added import AddedItems, write_added_items

__all__ = ["add_items"]


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
    known = set(run.item_ids)
    repeated = [item for item in new if item in known]
    if repeated:
        shown = ", ".join(map(repr, repeated[:3]))
        raise DataError(
            f"{len(repeated)} item(s) are already in the run's catalog (e.g. {shown}); "
            "give new items only",
            path=path,
        )
    model = run.load_model("best", with_added_items=False)
    catalog = run.load_data(data_path).catalog
    with torch.no_grad():
        rows = model.item_rows_from_text(cfg, catalog, list(new.values()))
    added = AddedItems(list(new), list(new.values()), rows)
    before = run.added_items
    write_added_items(run.path, added if before is None else before.plus(added))
    return added.item_ids
