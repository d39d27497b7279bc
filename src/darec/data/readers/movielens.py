"""MovieLens-100K: the RecBole atomic copy shipped inside the ``recbole`` wheel, or a folder.

The wheel is found with ``importlib.util.find_spec`` without importing recbole (which would pull
in torch, ray and more). Item attributes are renamed to ``title``, ``year`` and ``genres``
(genres comma-separated).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from darec.config import DataConfig
from darec.data.readers.atomic import read_atomic
from darec.data.types import RawData
from darec.errors import DataError

__all__ = ["NAME", "INSTALL_HINT", "packaged_folder", "read", "source_files"]

NAME = "ml-100k"
INSTALL_HINT = "pip install --no-deps recbole==1.2.1"
_RENAME = {"movie_title": "title", "release_year": "year", "class": "genres"}


def packaged_folder() -> Path:
    """``recbole/dataset_example/ml-100k`` inside the installed recbole package."""
    try:
        spec = importlib.util.find_spec("recbole")
    except (ImportError, ValueError):
        spec = None
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    if spec is not None and spec.origin and not roots:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        folder = Path(root) / "dataset_example" / NAME
        if (folder / f"{NAME}.inter").is_file():
            return folder
    raise DataError(
        "MovieLens-100K is read from the recbole package, which is not installed "
        f"(or lacks dataset_example/{NAME}); install it with `{INSTALL_HINT}` "
        "or set data.path to a folder with ml-100k.inter and ml-100k.item"
    )


def _files(cfg: DataConfig) -> tuple[Path, Path | None]:
    folder = Path(cfg.path).expanduser() if cfg.path else packaged_folder()
    if folder.is_file():
        folder = folder.parent
    inter = folder / f"{NAME}.inter"
    if not inter.is_file():
        raise DataError(f"expected {NAME}.inter in the MovieLens folder", path=folder)
    item = folder / f"{NAME}.item"
    return inter, item if item.is_file() else None


def source_files(cfg: DataConfig) -> list[Path]:
    """Every file :func:`read` will read for ``cfg``, in a fixed order."""
    inter, item = _files(cfg)
    return [inter] if item is None else [inter, item]


def read(cfg: DataConfig) -> RawData:
    """Read MovieLens-100K (ratings become implicit interactions; every rating is kept)."""
    inter, item = _files(cfg)
    raw = read_atomic(
        inter, item, "user_id", "item_id", "timestamp", max_mb=cfg.max_decompressed_mb
    )
    for attributes in raw.catalog.values():
        for old, new in _RENAME.items():
            if old in attributes:
                attributes[new] = attributes.pop(old)
        if "genres" in attributes:
            attributes["genres"] = ", ".join(attributes["genres"].split())
    return raw
