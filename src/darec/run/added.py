"""Items added to a trained run from their text (``darec catalog add``), kept beside the run.

One file, ``added_items.safetensors`` in the run folder: the tensors the model appends to its
catalog (e.g. ``feats`` (M, D), one row per added item, in the order added) and, in the file's
metadata, the items' external ids and text attributes as JSON. Added items get the internal ids
after the trained ones (N + 1 .. N + M). The file is written through a temporary name and a
rename, so a reader sees the old set or the new one; :func:`append_added_items` holds a lock
(``.added_items.lock``) from reading the file to replacing it, so two writers (``darec catalog
add`` and a server's ``POST /items``) never lose each other's items. Checkpoints are never
touched: resuming training is unaffected, and every load of the run appends the items again.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from darec.errors import CheckpointError, DuplicateIdError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: no lock
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "ADDED_FILE",
    "AddedItems",
    "append_added_items",
    "read_added_items",
    "write_added_items",
]

ADDED_FILE = "added_items.safetensors"


@dataclass
class AddedItems:
    """Items appended after training: ids, attributes and the model's rows, all in one order."""

    item_ids: list[str]
    catalog: list[dict[str, str]]
    rows: dict[str, torch.Tensor]
    """Name -> (M, ...) tensor, as the model's ``item_rows_from_text`` returned it."""

    def __post_init__(self) -> None:
        sizes = {name: t.shape[0] for name, t in self.rows.items()}
        m = len(self.item_ids)
        if len(self.catalog) != m or any(size != m for size in sizes.values()):
            raise CheckpointError(
                f"added items disagree: {m} ids, {len(self.catalog)} attribute sets, rows {sizes}"
            )

    def __len__(self) -> int:
        return len(self.item_ids)

    def plus(self, other: AddedItems) -> AddedItems:
        """These items followed by ``other``'s (with the same row names)."""
        if set(self.rows) != set(other.rows):
            raise CheckpointError(
                f"added item rows {sorted(other.rows)} do not match the earlier {sorted(self.rows)}"
            )
        rows = {k: torch.cat([v, other.rows[k].to(v)]) for k, v in self.rows.items()}
        return AddedItems(self.item_ids + other.item_ids, self.catalog + other.catalog, rows)


def read_added_items(run_dir: str | Path) -> AddedItems | None:
    """The items added to a run, or None when there are none."""
    path = Path(run_dir) / ADDED_FILE
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["items"])
            rows = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
        return AddedItems(list(meta["item_ids"]), list(meta["catalog"]), rows)
    except (SafetensorError, OSError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is damaged ({exc}); add the items again") from None


def write_added_items(run_dir: str | Path, added: AddedItems) -> Path:
    """Write (replace) the run's added items atomically; returns the file."""
    path = Path(run_dir) / ADDED_FILE
    meta = {"items": json.dumps({"item_ids": added.item_ids, "catalog": added.catalog})}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in added.rows.items()}
        save_file(tensors, tmp, metadata=meta)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def _append_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive lock on ``run_dir/.added_items.lock``, waited for (released when the
    process dies)."""
    with open(run_dir / ".added_items.lock", "a+", encoding="utf-8") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def append_added_items(run_dir: str | Path, added: AddedItems) -> AddedItems:
    """Append ``added`` to the run's added items (under a lock, see the module) and return the
    whole set now in the file. Raise :class:`DuplicateIdError` naming ids added already."""
    folder = Path(run_dir)
    with _append_lock(folder):
        before = read_added_items(folder)
        if before is not None:
            known = set(before.item_ids)
            repeated = [item for item in added.item_ids if item in known]
            if repeated:
                shown = ", ".join(map(repr, repeated[:3]))
                raise DuplicateIdError(
                    f"{len(repeated)} item(s) were added to the run already (e.g. {shown}); "
                    "give new items only",
                    path=folder / ADDED_FILE,
                )
        everything = added if before is None else before.plus(added)
        write_added_items(folder, everything)
    return everything
