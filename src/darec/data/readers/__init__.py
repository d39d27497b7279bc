"""Readers turn source files into :class:`~darec.data.types.RawData`, one module per format.

``READERS`` is the explicit registry of formats; ``SOURCE_FILES`` says, for the same formats,
which files a reader will read (the cache hashes exactly these). ``format = "auto"`` is resolved
from the path by :func:`detect_format`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from darec.config import DataConfig
from darec.data.readers import amazon, atomic, csv_reader, movielens
from darec.data.types import RawData
from darec.errors import ConfigError, DataError

__all__ = [
    "READERS",
    "SOURCE_FILES",
    "detect_format",
    "resolve_format",
    "read_raw",
    "read_item_file",
    "source_files",
]

READERS: dict[str, Callable[[DataConfig], RawData]] = {
    "atomic": atomic.read,
    "csv": csv_reader.read,
    "movielens": movielens.read,
    "amazon": amazon.read,
}
SOURCE_FILES: dict[str, Callable[[DataConfig], list[Path]]] = {
    "atomic": atomic.source_files,
    "csv": csv_reader.source_files,
    "movielens": movielens.source_files,
    "amazon": amazon.source_files,
}

_CSV_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")


def detect_format(path: str) -> str:
    """The reader for a data path, from file names alone.

    - empty path: ``movielens`` (the copy in the recbole wheel);
    - a ``.inter`` file, or a folder holding ``.inter`` files: ``atomic`` (``movielens`` when the
      file is ``ml-100k.inter``, which only adds friendlier attribute names);
    - ``*.json(.gz)`` / ``*.jsonl(.gz)``, or a folder holding one: ``amazon``;
    - ``.csv`` / ``.tsv`` (optionally ``.gz``): ``csv``.
    """
    if not path:
        return "movielens"
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError("data path does not exist", path=p)
    candidates = sorted(p.iterdir()) if p.is_dir() else [p]
    inter = [c for c in candidates if c.name.endswith(".inter")]
    if inter:
        return "movielens" if all(c.name == f"{movielens.NAME}.inter" for c in inter) else "atomic"
    if any(amazon.is_reviews_file(c) for c in candidates):
        return "amazon"
    if p.is_file() and p.name.lower().endswith(_CSV_SUFFIXES):
        return "csv"
    raise DataError(
        "cannot tell the data format from the file name: expected a .inter file or folder "
        "(atomic), .csv/.tsv (csv), *.json(.gz)/*.jsonl(.gz) (amazon), or an empty path "
        f"(movielens); set data.format to one of {', '.join(READERS)}",
        path=p,
    )


def resolve_format(cfg: DataConfig) -> str:
    """``cfg.format``, checked against the registry, with ``auto`` resolved from the path."""
    if cfg.format == "auto":
        return detect_format(cfg.path)
    if cfg.format not in READERS:
        raise ConfigError(
            f"unknown data.format {cfg.format!r}; valid formats: auto, {', '.join(READERS)}"
        )
    return cfg.format


def source_files(cfg: DataConfig) -> list[Path]:
    """The files the reader for ``cfg`` will read, in a fixed order (missing ones raise)."""
    return SOURCE_FILES[resolve_format(cfg)](cfg)


def read_raw(cfg: DataConfig) -> RawData:
    """Read the interactions and item attributes ``cfg`` describes, with the registered reader."""
    return READERS[resolve_format(cfg)](cfg)


def read_item_file(
    path: str | Path,
    id_column: str,
    delimiter: str = ",",
    max_mb: int = DataConfig.max_decompressed_mb,
    key: str = "data.item_id_column",
) -> dict[str, dict[str, str]]:
    """Item id -> text attributes from an item file alone, in the formats the readers take: a
    RecBole ``.item`` file (id column ``id_column``), an Amazon metadata file (``*.json(.gz)``,
    ``*.jsonl(.gz)``; ids are the asins) or a CSV/TSV file (``.csv``, ``.tsv``, optionally
    ``.gz``; id column ``id_column``, every other column an attribute). A missing id column
    names ``key``, the setting that chooses it; a ``.gz`` file may expand to ``max_mb`` MB."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError("item file does not exist", path=p)
    name = p.name.lower().removesuffix(".gz")
    if name.endswith(".item"):
        return atomic.read_item_attributes(p, id_column, max_mb, key)
    if name.endswith((".json", ".jsonl")):
        return amazon.read_meta(p, max_mb)
    if name.endswith((".csv", ".tsv")):
        return csv_reader.read_items(p, delimiter, id_column, max_mb, key)
    raise DataError(
        "cannot tell the item file format from its name: expected .item (RecBole atomic), "
        ".csv/.tsv, or .json/.jsonl (Amazon metadata), optionally .gz",
        path=p,
    )
