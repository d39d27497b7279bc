"""The data a run was trained on, recorded so that later reads notice when it changed.

Training writes ``data.json`` into the run folder: for every source file the reader read (the
interaction file first, then the item file, if any) its absolute path, size and SHA-256, and the
users, items and interactions left after filtering. ``evaluate``, ``recommend`` and ``train
--resume`` compare the data they read with it. The dataset's cache key already covers the
source bytes and the options, so the files are only hashed again when that key differs; then
the message names the file and what changed. A file that moved but kept its bytes is the same
data. Run folders written before ``data.json`` existed are not checked.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

from darec.config import DataConfig
from darec.data.readers import source_files
from darec.data.types import SequenceDataset
from darec.errors import CheckpointError, DataError, DataWarning
from darec.run.checkpoint import atomic_write_json, read_json

__all__ = [
    "DATA_FILE",
    "data_fingerprint",
    "write_data_fingerprint",
    "read_data_fingerprint",
    "data_changes",
    "check_data_unchanged",
]

DATA_FILE = "data.json"
_COUNTS = ("users", "items", "interactions")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def data_fingerprint(cfg: DataConfig, dataset: SequenceDataset) -> dict[str, Any]:
    """What ``data.json`` holds for ``dataset``, read as ``cfg`` says."""
    files = []
    for path in source_files(cfg):
        files.append(
            {
                "path": str(path.expanduser().resolve()),
                "size": path.stat().st_size,
                "sha256": file_sha256(path),
            }
        )
    counts = {
        "users": dataset.num_users,
        "items": dataset.num_items,
        "interactions": dataset.num_interactions,
    }
    return {"dataset_key": dataset.key, "files": files, "counts": counts}


def write_data_fingerprint(run_dir: Path, fingerprint: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / DATA_FILE, fingerprint)


def read_data_fingerprint(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``data.json``, or None for a run written before it existed; an edited or
    damaged file raises :class:`CheckpointError` naming it."""
    path = Path(run_dir) / DATA_FILE
    if not path.exists():
        return None
    saved = read_json(path)
    files = saved.get("files") if isinstance(saved, dict) else None
    counts = saved.get("counts") if isinstance(saved, dict) else None
    well_formed = (
        isinstance(saved, dict)
        and isinstance(saved.get("dataset_key"), str)
        and isinstance(files, list)
        and all(
            isinstance(f, dict)
            and isinstance(f.get("path"), str)
            and isinstance(f.get("size"), int)
            and isinstance(f.get("sha256"), str)
            for f in files
        )
        and isinstance(counts, dict)
        and all(isinstance(counts.get(k), int) for k in _COUNTS)
    )
    if not well_formed:
        raise CheckpointError(
            f"{path}: expected dataset_key, files (path, size, sha256 each) and counts (users, "
            "items, interactions), as `darec train` writes it; was the file edited? Delete it "
            "to use the run without checking its data"
        )
    checked: dict[str, Any] = saved
    return checked


def _file_changes(role: str, then: dict[str, Any] | None, now: dict[str, Any] | None) -> str | None:
    """How one source file changed, in words, or None when its bytes are the same."""
    if then is None and now is not None:
        return f"{role} {now['path']} is read now but was not at training"
    if now is None and then is not None:
        return f"{role} {then['path']} was read at training but is not now"
    assert then is not None and now is not None
    if then["sha256"] == now["sha256"] and then["size"] == now["size"]:
        return None
    where = now["path"] if now["path"] == then["path"] else f"{now['path']} (was {then['path']})"
    if then["size"] != now["size"]:
        return f"{role} {where}: {then['size']} bytes at training, {now['size']} now"
    return f"{role} {where}: same size ({now['size']} bytes) but different content"


def data_changes(
    then: dict[str, Any], now: dict[str, Any], compare_item_files: bool = True
) -> list[str]:
    """What differs between two fingerprints, one phrase each (empty: the same data). The
    first file is the interaction file, the others item files (skipped unless
    ``compare_item_files``)."""
    old, new = then["files"], now["files"]
    changes = []
    for index in range(max(len(old), len(new))):
        if index and not compare_item_files:
            continue
        role = "interaction file" if index == 0 else "item file"
        change = _file_changes(
            role, old[index] if index < len(old) else None, new[index] if index < len(new) else None
        )
        if change is not None:
            changes.append(change)
    counted = [
        f"{k} {then['counts'][k]} then, {now['counts'][k]} now"
        for k in _COUNTS
        if then["counts"][k] != now["counts"][k]
    ]
    if counted:
        changes.append("after filtering: " + ", ".join(counted))
    return changes


def check_data_unchanged(
    run_dir: str | Path,
    cfg: DataConfig,
    dataset: SequenceDataset,
    allow_changed: bool = False,
    item_file_given: bool = False,
    resuming: bool = False,
) -> None:
    """Raise :class:`DataError` if ``dataset`` (read as ``cfg`` says) is not the data run
    ``run_dir`` was trained on; with ``allow_changed``, warn (:class:`DataWarning`) instead.
    ``item_file_given``: the item file was chosen anew, so only the interactions must match.
    A run without ``data.json`` (written before it existed) is not checked."""
    saved = read_data_fingerprint(run_dir)
    if saved is None or saved["dataset_key"] == dataset.key:
        return
    changes = data_changes(
        saved, data_fingerprint(cfg, dataset), compare_item_files=not item_file_given
    )
    if not changes:
        return  # e.g. the cache format changed, or only the item file (given anew) did
    what = f"the data changed since run {run_dir} was trained: {'; '.join(changes)}"
    if resuming:
        raise DataError(
            f"{what}. A resumed run must go on with the data it started on: pass that data "
            "with --data, or train a new run on the new data"
        )
    if not allow_changed:
        raise DataError(
            f"{what}. Its scores would not be those of the data the model learned: pass the "
            "original data with --data, retrain, or add --allow-changed-data to go on anyway"
        )
    warnings.warn(f"{what}; going on as --allow-changed-data asks", DataWarning, stacklevel=2)
