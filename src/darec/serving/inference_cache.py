"""Inference caches saved beside a checkpoint, so serving and evaluation skip per-item work.

A model that has per-item work to share implements
:meth:`~darec.models.base.SequentialRecommender.prepare_inference` (DARec: the catalog cache,
every item's per-layer keys/values and scoring vector); this module only says where its file
lives: ``checkpoints/<name>/catalog.safetensors`` next to the weights it was computed from. A
checkpoint folder is never rewritten (a new one gets a new name), so a cache there always
belongs to its weights; the fingerprint (the checkpoint's name and size) guards against the
rest. Models without such a cache need nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from darec.config import Config
from darec.models.base import SequentialRecommender
from darec.models.quantize import quantize_for_serving
from darec.run import RunFolder

__all__ = ["attach_inference_cache", "load_for_inference", "CACHE_FILE"]

CACHE_FILE = "catalog.safetensors"


def _fingerprint(folder: Path, added: list[str]) -> str:
    """The checkpoint (folder name, weight-file size) and the items added since training."""
    base = f"{folder.name}:{(folder / 'model.safetensors').stat().st_size}"
    if not added:
        return base
    return f"{base}+{len(added)}:{hashlib.sha256(chr(10).join(added).encode()).hexdigest()[:16]}"


def attach_inference_cache(
    model: SequentialRecommender,
    run_dir: str | Path,
    which: str = "best",
    save: bool = True,
    added_ids: list[str] | None = None,
) -> str:
    """Give ``model`` (loaded from ``run_dir``'s ``which`` checkpoint) its inference cache:
    read it from the checkpoint folder, or compute it and (with ``save``) write it there.
    ``added_ids``: the items appended to the model's catalog after training, in order (None:
    the run's added items, as :meth:`RunFolder.load_model` appends them). Returns ``loaded``,
    ``built`` or ``none`` (the model has nothing to cache)."""
    run = RunFolder.open(run_dir)
    folder = run.checkpoint(which)
    if added_ids is None:
        added = run.added_items
        added_ids = [] if added is None else added.item_ids
    fingerprint = _fingerprint(folder, added_ids)
    with torch.no_grad():
        return model.prepare_inference(folder / CACHE_FILE if save else None, fingerprint)


def load_for_inference(
    run_dir: str | Path, device: torch.device | str, quantize: str = "none"
) -> tuple[Config, SequentialRecommender, dict[str, Any]]:
    """Config, best weights on ``device`` (already resolved) with their inference cache, and id
    maps of a run folder: what ``evaluate`` and ``recommend`` start from. Items added after
    training are in the model's catalog, their ids under ``added_item_ids`` and their attributes
    under ``added_catalog``. ``quantize`` int8: the per-request layers also get int8 weights
    for small calls (:func:`~darec.models.quantize.quantize_for_serving`), after the cache."""
    run = RunFolder.open(run_dir)
    added = run.added_items  # read once: `darec catalog add` may write it meanwhile
    model = run.load_model("best", with_added_items=False)
    if added is not None:
        model.extend_catalog(added.rows)
    model.to(device)
    attach_inference_cache(model, run_dir, added_ids=[] if added is None else added.item_ids)
    quantize_for_serving(model, quantize)
    ids = dict(run.ids)
    if added is not None:
        ids["added_item_ids"] = added.item_ids
        ids["added_catalog"] = added.catalog
    return run.config, model, ids
