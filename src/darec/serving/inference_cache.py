"""Inference caches saved beside a checkpoint, so serving and evaluation skip per-item work.

For DARec this is the catalog cache (:mod:`darec.models.darec.catalog`): every item's per-layer
keys/values and scoring vector, in ``checkpoints/<name>/catalog.safetensors`` next to the
weights they were computed from. A checkpoint folder is never rewritten (a new one gets a new
name), so a cache there always belongs to its weights; the file also records the checkpoint's
name and size and is recomputed if they differ. Models without such a cache need nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch

from darec.config import Config
from darec.errors import CheckpointError
from darec.models.base import SequentialRecommender
from darec.training.checkpoint import checkpoint_path
from darec.training.trainer import load_trained_model

__all__ = ["attach_inference_cache", "load_for_inference", "CACHE_FILE"]

log = logging.getLogger(__name__)

CACHE_FILE = "catalog.safetensors"


def _fingerprint(folder: Path) -> str:
    return f"{folder.name}:{(folder / 'model.safetensors').stat().st_size}"


def attach_inference_cache(
    model: SequentialRecommender, run_dir: str | Path, which: str = "best", save: bool = True
) -> Literal["loaded", "built", "none"]:
    """Give ``model`` (loaded from ``run_dir``'s ``which`` checkpoint) its inference cache:
    read it from the checkpoint folder, or compute it and (with ``save``) write it there."""
    from darec.models.darec import DARec

    if not isinstance(model, DARec):
        return "none"
    folder = checkpoint_path(Path(run_dir), which)
    fingerprint = _fingerprint(folder)
    path = folder / CACHE_FILE
    if path.exists():
        from darec.models.darec.catalog import CatalogKV

        try:
            model.attach_catalog(CatalogKV.load(path, fingerprint))
            return "loaded"
        except CheckpointError as exc:
            log.warning("%s; computing it again", exc)
    with torch.no_grad():
        cache = model.catalog()
    if save:
        try:
            cache.to(torch.device("cpu")).save(path, fingerprint)
        except OSError as exc:  # a read-only run folder: keep the cache in memory only
            log.warning("could not save the catalog cache to %s: %s", path, exc)
    return "built"


def load_for_inference(
    run_dir: str | Path, device: torch.device | str
) -> tuple[Config, SequentialRecommender, dict[str, Any]]:
    """Config, best weights on ``device`` (already resolved) with their inference cache, and id
    maps of a run folder: what ``evaluate`` and ``recommend`` start from."""
    cfg, model, ids = load_trained_model(run_dir)
    model.to(device)
    attach_inference_cache(model, run_dir)
    return cfg, model, ids
