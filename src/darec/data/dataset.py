"""Read + preprocess, with an on-disk cache of the processed dataset.

The cache key is a SHA-256 over a format version, the preprocessing options and the bytes of
every source file the reader reads, so editing a file or an option gives a new entry and an old
entry is never served for new content. An entry is a folder
``<cache_root>/datasets/<key>/`` holding ``arrays.safetensors`` (offsets, items, times) and
``meta.json`` (name, ids, catalog). No pickle anywhere. Entries are written into a temporary
folder and renamed into place, so readers never see half an entry; if two processes race, the
first rename wins and the other keeps its in-memory copy. An unreadable entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from darec.config import DataConfig
from darec.data.preprocess import preprocess
from darec.data.readers import READERS, movielens, resolve_format, source_files
from darec.data.readers._common import strip_suffixes
from darec.data.types import PAD, SequenceDataset
from darec.errors import DataWarning

__all__ = ["CACHE_VERSION", "dataset_name", "dataset_key", "load_dataset"]

CACHE_VERSION = 1
"""Bump when readers or preprocessing change what they produce for the same input."""

_ARRAYS = "arrays.safetensors"
_CORRUPT = (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, SafetensorError)
"""What reading a damaged cache entry can raise."""
_META = "meta.json"


def dataset_name(cfg: DataConfig) -> str:
    """``cfg.name``, else the data file or folder name without data suffixes (``ml-100k`` for the
    bundled MovieLens)."""
    if cfg.name:
        return cfg.name
    if not cfg.path:
        return movielens.NAME
    path = Path(cfg.path).expanduser()
    return path.name if path.is_dir() else strip_suffixes(path.name)


def dataset_key(cfg: DataConfig) -> str:
    """Hex SHA-256 of the cache version, the options that shape the data and the source bytes."""
    fmt = resolve_format(cfg)
    options = {
        "version": CACHE_VERSION,
        "format": fmt,
        "user_column": cfg.user_column,
        "item_column": cfg.item_column,
        "time_column": cfg.time_column,
        "delimiter": cfg.delimiter,
        "user_min": cfg.user_min,
        "item_min": cfg.item_min,
        "drop_duplicates": cfg.drop_duplicates,
    }
    if cfg.keep_text_only_items:  # only when set, so the keys of earlier entries stay valid
        options["keep_text_only_items"] = True
    if cfg.item_id_column:
        options["item_id_column"] = cfg.item_id_column
    if fmt == "csv":  # CSV files without the default time column now have one chosen
        options["time_detection"] = 1
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for path in source_files(cfg):
        size = path.stat().st_size
        # the suffixes decide how bytes are read (.gz, .tsv); the size separates the files
        digest.update(f"\n{''.join(path.suffixes).lower()} {size}\n".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _save(ds: SequenceDataset, folder: Path) -> None:
    save_file(
        {"offsets": ds.offsets, "items": ds.items, "times": ds.times},
        str(folder / _ARRAYS),
    )
    meta = {
        "version": CACHE_VERSION,
        "key": ds.key,
        "name": ds.name,
        "user_ids": ds.user_ids,
        "item_ids": ds.item_ids,
        "catalog": ds.catalog,
        "filtering": ds.filtering,
        "removed_users": ds.removed_users,
        "notes": ds.notes,
    }
    (folder / _META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")


def _load(folder: Path, key: str) -> SequenceDataset:
    """Read a cache entry; anything inconsistent raises ``ValueError``."""
    meta: dict[str, Any] = json.loads((folder / _META).read_text(encoding="utf-8"))
    arrays = load_file(str(folder / _ARRAYS))
    offsets, items, times = arrays["offsets"], arrays["items"], arrays["times"]
    user_ids, item_ids, catalog = meta["user_ids"], meta["item_ids"], meta["catalog"]
    consistent = (
        meta.get("version") == CACHE_VERSION
        and meta.get("key") == key
        and user_ids[:1] == [PAD]
        and item_ids[:1] == [PAD]
        and len(catalog) == len(item_ids)
        and offsets.dtype == np.int64
        and items.dtype == np.int64
        and times.dtype == np.float64
        and offsets.shape == (len(user_ids) + 1,)
        and items.shape == times.shape == (int(offsets[-1]),)
        and offsets[0] == offsets[1] == 0
        and bool(np.all(np.diff(offsets) >= 0))
        and (items.size == 0 or (items.min() >= 1 and items.max() < len(item_ids)))
    )
    if not consistent:
        raise ValueError(f"inconsistent dataset cache entry {folder}")
    return SequenceDataset(
        name=str(meta["name"]),
        user_ids=user_ids,
        item_ids=item_ids,
        offsets=offsets,
        items=items,
        times=times,
        catalog=catalog,
        key=key,
        filtering=dict(meta.get("filtering", {})),  # entries written before it: unknown
        removed_users=list(meta.get("removed_users", [])),
        notes=[str(n) for n in meta.get("notes", [])],
    )


def _store(ds: SequenceDataset, root: Path, final: Path, replace: bool) -> None:
    """Write ``ds`` to ``final`` atomically (temp folder + rename). An existing entry is replaced
    only if ``replace`` (it was found corrupt); otherwise another process got there first."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{ds.key[:12]}-", dir=root))
    try:
        _save(ds, tmp)
        if replace and final.exists():
            trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=root))
            try:
                os.rename(final, trash / "entry")
            except OSError:
                pass  # another process moved it already
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            pass  # another process renamed its entry into place first: keep theirs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_dataset(cfg: DataConfig, cache_root: Path | None) -> SequenceDataset:
    """Read and preprocess the data ``cfg`` describes, through the cache when enabled.

    ``cache_root`` is the project cache folder (entries go under ``datasets/``); None or
    ``cfg.cache = False`` reads and preprocesses every time. ``SequenceDataset.key`` is set either
    way. A cache that cannot be written only costs a warning.
    """
    fmt = resolve_format(cfg)
    key = dataset_key(cfg)
    name = dataset_name(cfg)
    root = Path(cache_root) / "datasets" if cache_root is not None and cfg.cache else None
    ds = _cached_or_read(cfg, fmt, key, name, root)
    for note in ds.notes:  # at every load, from the cache too
        warnings.warn(note, DataWarning, stacklevel=2)
    return ds


def _cached_or_read(
    cfg: DataConfig, fmt: str, key: str, name: str, root: Path | None
) -> SequenceDataset:
    corrupt = False
    if root is not None and (root / key).exists():
        try:
            ds = _load(root / key, key)
            ds.name = name  # the name is a label, not part of the key
            return ds
        except _CORRUPT:
            corrupt = True  # unreadable or inconsistent entry: rebuild it below
    ds = preprocess(READERS[fmt](cfg), cfg, name)
    ds.key = key
    if root is not None:
        try:
            _store(ds, root, root / key, replace=corrupt)
        except OSError as exc:
            warnings.warn(f"could not write the dataset cache in {root}: {exc}", stacklevel=3)
    return ds
