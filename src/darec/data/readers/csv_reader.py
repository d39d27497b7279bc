"""CSV and TSV interaction files, with an optional CSV of item attributes.

The user, item and time columns are named by ``cfg.user_column``, ``cfg.item_column`` and
``cfg.time_column``; the item file's id column by ``cfg.item_id_column`` (empty: the same name as
``cfg.item_column``). A time column named explicitly must exist. When the default ``timestamp``
is absent, a column named like a time (:data:`TIME_NAMES`, any case, or ending in ``_time``,
``_date``, ...) is used instead, and a note says so; without one, or with ``cfg.time_column``
empty, the file order is the time order (a note says so, louder when a user's rows are not
together in the file, since then the order is likely not by time). Times are numbers or ISO 8601
dates. The delimiter is ``cfg.delimiter`` (``\\t`` may be written as a backslash and a ``t``); a
``.tsv`` file with the default ``,`` is read tab-separated. ``.gz`` files are decompressed (at
most ``cfg.max_decompressed_mb``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from darec.config import DataConfig
from darec.data.readers._common import (
    DEFAULT_MAX_MB,
    check_ids,
    configured_item_file,
    interactions_frame,
    parse_times,
    read_text,
)
from darec.data.types import RawData
from darec.errors import DataError

__all__ = ["CsvTable", "TIME_NAMES", "read_csv_table", "read", "read_items", "source_files"]

_DEFAULT_DELIMITER = DataConfig.delimiter
_DEFAULT_TIME_COLUMN = DataConfig.time_column

TIME_NAMES = (
    "timestamp",
    "time",
    "ts",
    "datetime",
    "date",
    "date_time",
    "time_stamp",
    "unix_time",
    "unixtime",
    "unix_timestamp",
    "event_time",
    "event_timestamp",
    "created_at",
)
"""Column names (any case) taken as the time column when ``data.time_column`` is the default
and absent, in order of preference; after them, a name ending in one of :data:`_TIME_ENDINGS`."""
_TIME_ENDINGS = ("_time", "_timestamp", "_ts", "_date", "_datetime", "_at")


@dataclass
class CsvTable:
    """A parsed CSV file: column values as strings and the first line number of every row."""

    path: Path
    header: list[str]
    columns: dict[str, tuple[str, ...]]
    lines: list[int]

    def require(self, name: str, role: str, key: str = "") -> tuple[str, ...]:
        """Values of a column, or ``DataError`` naming the missing column, those present and
        the config ``key`` that names it (default ``data.<role>_column``)."""
        if name not in self.columns:
            key = key or f"data.{role.replace(' ', '_')}_column"
            raise DataError(
                f"expected a {role} column {name!r}; the header has: {', '.join(self.header)} "
                f"(set {key} to one of these)",
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


def read_csv_table(path: Path, delimiter: str, max_mb: int = DEFAULT_MAX_MB) -> CsvTable:
    """Parse a delimited file with a header row (quoted fields may span lines; a ``.gz`` file
    may expand to ``max_mb`` MB)."""
    text = read_text(path, max_mb)
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


def read_items(
    path: Path,
    delimiter: str,
    id_column: str,
    max_mb: int = DEFAULT_MAX_MB,
    key: str = "data.item_id_column",
) -> dict[str, dict[str, str]]:
    """Item id -> attributes: every column except the id (empty values are left out); a
    missing ``id_column`` names the config ``key`` (or option) that chooses it."""
    table = read_csv_table(path, delimiter_for(path, delimiter), max_mb)
    ids = table.require(id_column, "item id", key)
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


def likely_time_column(header: list[str], exclude: tuple[str, ...]) -> str | None:
    """The column of ``header`` (other than ``exclude``) named most like a time, or None."""
    names = [n for n in header if n not in exclude]
    lowered = {n.lower().replace(" ", "_").replace("-", "_"): n for n in reversed(names)}
    for wanted in TIME_NAMES:
        if wanted in lowered:
            return lowered[wanted]
    for name in names:
        if name.lower().replace(" ", "_").replace("-", "_").endswith(_TIME_ENDINGS):
            return name
    return None


def _scattered_user(users: tuple[str, ...], lines: list[int]) -> str | None:
    """A user whose rows are not together in the file ("u3, at lines 2 and 9"), or None."""
    seen: dict[str, int] = {}
    previous = None
    for user, line in zip(users, lines, strict=True):
        if user != previous:
            if user in seen:
                return f"{user!r} at lines {seen[user]} and {line}, with other users between"
            seen[user] = line
            previous = user
    return None


def _time_values(cfg: DataConfig, table: CsvTable) -> tuple[str, tuple[str, ...] | None, list[str]]:
    """The time column to read (or "" and None for the file order) and the notes to give."""
    configured = cfg.time_column
    if not configured:
        return "", None, []  # the file order, chosen on purpose
    if configured in table.columns or configured != _DEFAULT_TIME_COLUMN:
        return configured, table.require(configured, "time"), []
    where = f"{table.path.name}: data.time_column {configured!r} is not in the header"
    chosen = likely_time_column(table.header, (cfg.user_column, cfg.item_column))
    if chosen is not None:
        note = (
            f"{where}; reading the times from column {chosen!r} instead (set data.time_column "
            'to another column, or to "" to use the file order)'
        )
        return chosen, table.columns[chosen], [note]
    note = (
        f"{where} ({', '.join(table.header)}) and no column is named like a time, so each "
        "user's interactions are taken in FILE ORDER"
    )
    scattered = _scattered_user(
        tuple(v.strip() for v in table.columns[cfg.user_column]), table.lines
    )
    if scattered is not None:
        note += (
            f"; the rows of a user are not together (user {scattered}), so the file is "
            "probably not sorted by time: set data.time_column to the column that holds times"
        )
    else:
        note += '; set data.time_column to the column that holds times, or to "" to say so'
    return "", None, [note]


def read(cfg: DataConfig) -> RawData:
    """Read the interactions (and item attributes) that ``cfg`` points at."""
    path, item_path = _files(cfg)
    table = read_csv_table(path, delimiter_for(path, cfg.delimiter), cfg.max_decompressed_mb)
    users = tuple(v.strip() for v in table.require(cfg.user_column, "user"))
    items = tuple(v.strip() for v in table.require(cfg.item_column, "item"))
    check_ids(users, table.lines, path, cfg.user_column)
    check_ids(items, table.lines, path, cfg.item_column)
    if not table.lines:
        raise DataError("expected at least one interaction after the header, got none", path=path)
    column, time_values, notes = _time_values(cfg, table)
    try:
        times = parse_times(time_values, table.lines, path, column)
    except DataError as exc:
        if column == cfg.time_column:
            raise
        raise DataError(
            f"{exc} (column {column!r} was taken for the time column, data.time_column "
            f"{cfg.time_column!r} being absent; set data.time_column to the column that holds "
            'times, or to "" to use the file order)'
        ) from None
    catalog: dict[str, dict[str, str]] = {}
    if item_path is not None:
        id_column = cfg.item_id_column or cfg.item_column
        key = (
            "data.item_id_column" if cfg.item_id_column else "data.item_id_column (or item_column)"
        )
        catalog = read_items(item_path, cfg.delimiter, id_column, cfg.max_decompressed_mb, key)
    frame = interactions_frame(users, items, times)
    item_source = "" if item_path is None else str(item_path)
    return RawData(frame, catalog, str(path), item_source=item_source, notes=notes)
