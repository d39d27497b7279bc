"""Helpers shared by the readers: opening (gzip or plain) text, parsing times, building frames."""

from __future__ import annotations

import gzip
import math
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from darec.errors import DataError

__all__ = [
    "read_text",
    "iter_lines",
    "parse_floats",
    "parse_times",
    "check_ids",
    "interactions_frame",
    "strip_suffixes",
]

_KNOWN_SUFFIXES = (".gz", ".json", ".jsonl", ".inter", ".csv", ".tsv", ".txt")


def strip_suffixes(name: str) -> str:
    """``reviews_Beauty_5.json.gz`` -> ``reviews_Beauty_5``: drop the data-file suffixes we know."""
    changed = True
    while changed:
        changed = False
        for suffix in _KNOWN_SUFFIXES:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                changed = True
    return name


def read_text(path: Path) -> str:
    """The whole file as text: gzip-compressed when the name ends in ``.gz``, UTF-8 either way.

    A file that is not valid gzip or not UTF-8 raises :class:`DataError` naming the file (and the
    line of the first undecodable byte).
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except FileNotFoundError:
        raise DataError("file does not exist", path=path) from None
    except (OSError, EOFError) as exc:
        raise DataError(f"expected a gzip-compressed file ({exc})", path=path) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"expected UTF-8 text, got byte {raw[exc.start]:#04x}", path=path, line=line
        ) from None


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline), streamed; gzip when the name ends in
    ``.gz``. Unreadable gzip or non-UTF-8 text raises :class:`DataError` at the line."""
    number = 0
    try:
        if path.name.endswith(".gz"):
            handle: IO[str] = gzip.open(path, "rt", encoding="utf-8", newline="")
        else:
            handle = open(path, encoding="utf-8", newline="")
        with handle:
            for number, line in enumerate(handle, start=1):
                yield number, line.rstrip("\r\n")
    except FileNotFoundError:
        raise DataError("file does not exist", path=path) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"expected UTF-8 text ({exc.reason})", path=path, line=number + 1) from None
    except (OSError, EOFError) as exc:
        raise DataError(f"expected a gzip-compressed file ({exc})", path=path) from None


def _parse_one_time(value: str, allow_dates: bool) -> float:
    """One timestamp: a number, or (if ``allow_dates``) an ISO 8601 date/datetime (naive = UTC)."""
    try:
        number = float(value)
    except ValueError:
        if not allow_dates:
            raise
        stamp = datetime.fromisoformat(value.strip())
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        number = stamp.timestamp()
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def parse_floats(
    values: Sequence[str],
    lines: Sequence[int],
    path: Path,
    column: str,
    allow_dates: bool = False,
) -> np.ndarray:
    """(n,) float64 from strings; the first bad value raises ``DataError`` at its line.

    Numbers are converted in one vectorised call; only if that fails (or gives a non-finite value)
    do we walk the values one by one, to accept ISO dates where allowed and to find the bad line.
    """
    try:
        out = np.asarray(values, dtype=np.float64)
        if np.isfinite(out).all():
            return out
    except ValueError:
        pass
    out = np.empty(len(values), dtype=np.float64)
    for index, value in enumerate(values):
        try:
            out[index] = _parse_one_time(value, allow_dates)
        except ValueError:
            expected = "a finite number" + (" or an ISO 8601 date" if allow_dates else "")
            raise DataError(
                f"column {column!r}: expected {expected}, got {value!r}",
                path=path,
                line=lines[index],
            ) from None
    return out


def parse_times(
    values: Sequence[str] | None, lines: Sequence[int], path: Path, column: str
) -> np.ndarray:
    """Timestamps of a time column (numbers or ISO dates), or the file order when ``values`` is
    None (no time column)."""
    if values is None:
        return np.arange(len(lines), dtype=np.float64)
    return parse_floats(values, lines, path, column, allow_dates=True)


def check_ids(values: Sequence[str], lines: Sequence[int], path: Path, column: str) -> None:
    """Raise ``DataError`` at the first empty user or item id."""
    if "" in set(values):
        index = list(values).index("")
        raise DataError(f"column {column!r}: expected a non-empty id", path=path, line=lines[index])


def interactions_frame(
    users: Sequence[str], items: Sequence[str], times: np.ndarray
) -> pd.DataFrame:
    """The ``RawData.interactions`` frame: columns user (str), item (str), time (float64)."""
    return pd.DataFrame(
        {
            "user": pd.Series(users, dtype=str),
            "item": pd.Series(items, dtype=str),
            "time": pd.Series(times, dtype=np.float64),
        }
    )


def only_file(folder: Path, matches: Callable[[Path], bool], expected: str) -> Path:
    """The one file in ``folder`` that ``matches``; DataError naming what was found otherwise."""
    found = sorted(p for p in folder.iterdir() if matches(p))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise DataError(f"expected {expected} in the folder, found {listed}", path=folder)
    return found[0]


def configured_item_file(item_path: str, what: str = "item file") -> Path | None:
    """``data.item_path`` as a path (None when unset); DataError if it names no file."""
    if not item_path:
        return None
    item = Path(item_path).expanduser()
    if not item.is_file():
        raise DataError(f"{what} (data.item_path) does not exist", path=item)
    return item
