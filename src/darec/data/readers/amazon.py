"""Amazon review dumps (McAuley et al.): 2014 "loose JSON" and 2018 JSON lines, gzip or plain.

Reviews: one record per line with ``reviewerID`` (user), ``asin`` (item) and ``unixReviewTime``
(time). The 2014 files (``reviews_Beauty_5.json.gz``) hold one Python dict literal per line, the
2018 files (``Beauty_5.json.gz``) strict JSON; each line is tried as JSON first and then as a
Python literal (parsed with ``ast.literal_eval``, never evaluated).

Metadata (``cfg.item_path``, or ``meta_<Category>.json(.gz)`` found beside the reviews) gives the
attributes ``title``, ``brand`` and ``category``. 2014 ``categories`` is a list of category paths;
the most specific (longest; the first of equally long ones) is written ``A > B > C``. 2018
``category`` is one path, written the same way.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from darec.config import DataConfig
from darec.data.readers._common import (
    DEFAULT_MAX_MB,
    configured_item_file,
    interactions_frame,
    iter_lines,
    only_file,
    strip_suffixes,
)
from darec.data.types import RawData
from darec.errors import DataError

__all__ = ["is_reviews_file", "read", "read_meta", "source_files", "category_path"]

_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz")


def is_reviews_file(path: Path) -> bool:
    """A JSON (lines) file, possibly gzipped, that is not a ``meta_*`` file."""
    name = path.name.lower()
    return name.endswith(_SUFFIXES) and not name.startswith("meta_")


def _records(path: Path, max_mb: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every non-blank line; a line that is neither JSON nor a Python
    dict literal raises ``DataError`` at its line."""
    for number, line in iter_lines(path, max_mb):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            try:
                record = ast.literal_eval(line.strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                raise DataError(
                    f"expected one JSON object or Python dict per line, got {line[:80]!r}",
                    path=path,
                    line=number,
                ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"expected an object per line, got {type(record).__name__}", path=path, line=number
            )
        yield number, record


def _read_reviews(path: Path, max_mb: int) -> tuple[list[str], list[str], np.ndarray]:
    users: list[str] = []
    items: list[str] = []
    times: list[float] = []
    for number, record in _records(path, max_mb):
        try:
            user, item, stamp = record["reviewerID"], record["asin"], record["unixReviewTime"]
            if not (isinstance(user, str) and user and isinstance(item, str) and item):
                raise TypeError
            time = float(stamp)
            if not np.isfinite(time):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise DataError(
                "expected a review with non-empty string fields reviewerID and asin and a "
                f"numeric unixReviewTime; got keys {', '.join(map(str, record))}",
                path=path,
                line=number,
            ) from None
        users.append(user)
        items.append(item)
        times.append(time)
    if not users:
        raise DataError("expected at least one review, got an empty file", path=path)
    return users, items, np.asarray(times, dtype=np.float64)


def category_path(value: Any) -> str:
    """``[["Beauty", "Nails"], ["Beauty"]]`` or ``["Beauty", "Nails"]`` -> ``Beauty > Nails``."""
    if not isinstance(value, list) or not value:
        return ""
    paths = value if all(isinstance(v, list) for v in value) else [value]
    best = max(paths, key=len)  # max() keeps the first of equally long paths
    return " > ".join(str(name).strip() for name in best if str(name).strip())


def read_meta(path: Path, max_mb: int = DEFAULT_MAX_MB) -> dict[str, dict[str, str]]:
    """asin -> {title, brand, category} from a metadata file (empty values are left out)."""
    catalog: dict[str, dict[str, str]] = {}
    for number, record in _records(path, max_mb):
        item = record.get("asin")
        if not isinstance(item, str) or not item:
            raise DataError("expected a non-empty string field asin", path=path, line=number)
        attributes: dict[str, str] = {}
        for key in ("title", "brand"):
            value = record.get(key)
            if isinstance(value, str) and value.strip():
                attributes[key] = value.strip()
        category = category_path(record.get("categories", record.get("category")))
        if category:
            attributes["category"] = category
        catalog.setdefault(item, attributes)  # the first record of a repeated asin wins
    return catalog


def _files(cfg: DataConfig) -> tuple[Path, Path | None]:
    """The reviews file and the metadata file (or None)."""
    path = Path(cfg.path).expanduser()
    if path.is_dir():
        path = only_file(path, is_reviews_file, "one reviews file (*.json, *.json.gz, *.jsonl)")
    elif not path.is_file():
        raise DataError("data path does not exist", path=path)
    meta = configured_item_file(cfg.item_path, "metadata file")
    return path, meta if meta is not None else _find_meta(path)


def _find_meta(reviews: Path) -> Path | None:
    """``meta_Beauty.json(.gz)`` for ``reviews_Beauty_5.json.gz`` or ``Beauty_5.json.gz``; else
    the only ``meta_*`` file in the folder, if there is exactly one."""
    category = strip_suffixes(reviews.name).removeprefix("reviews_").removesuffix("_5")
    for suffix in _SUFFIXES:
        candidate = reviews.parent / f"meta_{category}{suffix}"
        if candidate.is_file():
            return candidate
    metas = sorted(p for p in reviews.parent.glob("meta_*") if p.name.lower().endswith(_SUFFIXES))
    return metas[0] if len(metas) == 1 else None


def source_files(cfg: DataConfig) -> list[Path]:
    """Every file :func:`read` will read for ``cfg``, in a fixed order."""
    reviews, meta = _files(cfg)
    return [reviews] if meta is None else [reviews, meta]


def read(cfg: DataConfig) -> RawData:
    """Read an Amazon reviews file and its metadata (if any)."""
    reviews, meta = _files(cfg)
    users, items, times = _read_reviews(reviews, cfg.max_decompressed_mb)
    catalog = read_meta(meta, cfg.max_decompressed_mb) if meta is not None else {}
    frame = interactions_frame(users, items, times)
    return RawData(frame, catalog, str(reviews), item_source="" if meta is None else str(meta))
