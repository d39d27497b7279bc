"""Helpers shared by the readers: opening (gzip or plain) text, parsing times, building frames."""

from __future__ import annotations

import gzip
import io
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from darec.config import DataConfig
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

DEFAULT_MAX_MB = DataConfig.max_decompressed_mb
"""How far a ``.gz`` file may expand when no config says (``data.max_decompressed_mb``)."""

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


def _too_large(path: Path, max_mb: int) -> DataError:
    return DataError(
        f"expands to more than {max_mb} MB when decompressed (data.max_decompressed_mb = "
        f"{max_mb}); raise data.max_decompressed_mb if the data is really that large",
        path=path,
    )


class _Bounded(io.RawIOBase):
    """A decompressed stream that raises :class:`DataError` once more than ``max_mb`` MB came
    out of it, so that a small file cannot expand to all the memory (a "gzip bomb")."""

    def __init__(self, stream: gzip.GzipFile, path: Path, max_mb: int) -> None:
        self._stream, self._path, self._max_mb = stream, path, max_mb
        self._left = max_mb << 20

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        self._left -= len(data)
        if self._left < 0:
            raise _too_large(self._path, self._max_mb)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()


def _read_bytes(path: Path, max_mb: int) -> bytes:
    """The file's bytes, decompressed (at most ``max_mb`` MB) when the name ends in ``.gz``."""
    if not path.name.endswith(".gz"):
        return path.read_bytes()
    chunks, left = [], max_mb << 20
    with gzip.open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            left -= len(chunk)
            if left < 0:
                raise _too_large(path, max_mb)
            chunks.append(chunk)
    return b"".join(chunks)


def read_text(path: Path, max_mb: int = DEFAULT_MAX_MB) -> str:
    """The whole file as text: gzip-compressed when the name ends in ``.gz`` (streamed, and at
    most ``max_mb`` MB once decompressed), UTF-8 either way.

    A file that is not valid gzip, expands beyond ``max_mb`` or is not UTF-8 raises
    :class:`DataError` naming the file (and the line of the first undecodable byte).
    """
    try:
        raw = _read_bytes(path, max_mb)
    except FileNotFoundError:
        raise DataError("file does not exist", path=path) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"expected a gzip-compressed file ({exc})", path=path) from None
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc.strerror or exc})", path=path) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"expected UTF-8 text, got byte {raw[exc.start]:#04x}", path=path, line=line
        ) from None


def iter_lines(path: Path, max_mb: int = DEFAULT_MAX_MB) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline), streamed; gzip when the name ends in
    ``.gz`` (at most ``max_mb`` MB once decompressed). Unreadable gzip, too much of it or
    non-UTF-8 text raises :class:`DataError` at the line."""
    number = 0
    try:
        if path.name.endswith(".gz"):
            bounded = io.BufferedReader(_Bounded(gzip.open(path, "rb"), path, max_mb), 1 << 20)
            handle: IO[str] = io.TextIOWrapper(bounded, encoding="utf-8", newline="")
        else:
            handle = open(path, encoding="utf-8", newline="")
        with handle:
            for number, line in enumerate(handle, start=1):
                yield number, line.rstrip("\r\n")
    except FileNotFoundError:
        raise DataError("file does not exist", path=path) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"expected UTF-8 text ({exc.reason})", path=path, line=number + 1) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"expected a gzip-compressed file ({exc})", path=path) from None
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc.strerror or exc})", path=path) from None


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
