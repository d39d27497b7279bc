"""CSV and TSV interaction files, with an optional CSV of item attributes.

The user, item and time columns are named by ``cfg.user_column``, ``cfg.item_column`` and
``cfg.time_column``. Without a time column the file order is the time order: that happens when
``cfg.time_column`` is empty, or is the default ``timestamp`` and the file has no such column (a
time column named explicitly must exist). Times are numbers or ISO 8601 dates. The delimiter is
``cfg.delimiter`` (``\\t`` may be written as a backslash and a ``t``); a ``.tsv`` file with the
default ``,`` is read tab-separated. ``.gz`` files are decompressed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from darec.config import DataConfig
from darec.data.readers._common import (
    check_ids,
    configured_item_file,
    interactions_frame,
    parse_times,
    read_text,
)
from darec.data.types import RawData
from darec.errors import DataError

__all__ = ["CsvTable", "read_csv_table", "read", "read_items", "source_files"]

_DEFAULT_DELIMITER = DataConfig.delimiter
_DEFAULT_TIME_COLUMN = DataConfig.time_column


@dataclass
class CsvTable:
    """A parsed CSV file: column values as strings and the first line number of every row."""

    path: Path
    header: list[str]
    columns: dict[str, tuple[str, ...]]
    lines: list[int]

    def require(self, name: str, role: str) -> tuple[str, ...]:
        """Values of a column, or ``DataError`` naming the missing column and those present."""
        if name not in self.columns:
            raise DataError(
                f"expected a {role} column {name!r}; the header has: {', '.join(self.header)} "
                f"(set data.{role.replace(' ', '_')}_column to one of these)",
                path=self.path,
                line=1,
            )
        return self.columns[name]


def delimiter_for(path: Path, configured: str) -> str:
    """The field delimiter: tab for ``.tsv`` files unless one other than ``,`` was configured."""
    delimiter = "\t" if configured == "\\t" else configured
    if len(delimiter) != 1:
        raise DataError(f"data.delimiter must be one character, got {configured!r}", path=path)
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".tsv") and delimiter == _DEFAULT_DELIMITER:
        return "\t"
    return delimiter


def read_csv_table(path: Path, delimiter: str) -> CsvTable:
    """Parse a delimited file with a header row (quoted fields may span lines)."""
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise DataError(
            "expected a header row naming the columns, got an empty file", path=path, line=1
        ) from None
    if header:
        header[0] = header[0].lstrip("\ufeff")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(
            f"expected distinct column names in the header, got {', '.join(repeated)} twice",
            path=path,
            line=1,
        )
    width = len(header)
    rows: list[list[str]] = []
    numbers: list[int] = []
    start = reader.line_num + 1
    try:
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                start = reader.line_num + 1
                continue  # blank line
            if len(fields) != width:
                raise DataError(
                    f"expected {width} fields like the header ({delimiter!r}-separated), "
                    f"got {len(fields)}",
                    path=path,
                    line=start,
                )
            rows.append(fields)
            numbers.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"expected well-formed CSV: {exc}", path=path, line=start) from None
    values = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    return CsvTable(path, header, dict(zip(header, values, strict=True)), numbers)


def read_items(path: Path, delimiter: str, id_column: str) -> dict[str, dict[str, str]]:
    """Item id -> attributes: every column except the id (empty values are left out)."""
    table = read_csv_table(path, delimiter_for(path, delimiter))
    ids = table.require(id_column, "item")
    names = [name for name in table.header if name != id_column]
    catalog: dict[str, dict[str, str]] = {}
    for row, item in enumerate(ids):
        item = item.strip()
        if item and item not in catalog:  # the first row of a repeated id wins
            catalog[item] = {
                n: table.columns[n][row].strip() for n in names if table.columns[n][row].strip()
            }
    return catalog


def _files(cfg: DataConfig) -> tuple[Path, Path | None]:
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DataError("expected a CSV/TSV file; it does not exist", path=path)
    return path, configured_item_file(cfg.item_path)


def source_files(cfg: DataConfig) -> list[Path]:
    """Every file :func:`read` will read for ``cfg``, in a fixed order."""
    path, item = _files(cfg)
    return [path] if item is None else [path, item]


def read(cfg: DataConfig) -> RawData:
    """Read the interactions (and item attributes) that ``cfg`` points at."""
    path, item_path = _files(cfg)
    table = read_csv_table(path, delimiter_for(path, cfg.delimiter))
    users = tuple(v.strip() for v in table.require(cfg.user_column, "user"))
    items = tuple(v.strip() for v in table.require(cfg.item_column, "item"))
    check_ids(users, table.lines, path, cfg.user_column)
    check_ids(items, table.lines, path, cfg.item_column)
    if not table.lines:
        raise DataError("expected at least one interaction after the header, got none", path=path)
    time_values: tuple[str, ...] | None = None
    if cfg.time_column:
        if cfg.time_column in table.columns or cfg.time_column != _DEFAULT_TIME_COLUMN:
            time_values = table.require(cfg.time_column, "time")
    times = parse_times(time_values, table.lines, path, cfg.time_column)
    catalog = read_items(item_path, cfg.delimiter, cfg.item_column) if item_path else {}
    return RawData(interactions_frame(users, items, times), catalog, source=str(path))
