"""RecBole atomic files: ``NAME.inter`` (interactions) and optionally ``NAME.item`` (attributes).

Both are tab-separated text with a header of ``name:type`` fields, e.g.
``user_id:token<TAB>item_id:token<TAB>timestamp:float``. Types are ``token``, ``token_seq``,
``float`` and ``float_seq``. The user, item and time columns are ``cfg.user_column``,
``cfg.item_column`` and ``cfg.time_column`` (RecBole's defaults ``user_id``, ``item_id``,
``timestamp``); the time column is optional (file order is used without it). Every ``token``,
``token_seq`` and ``float`` column of the item file except the id becomes an attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from darec.config import DataConfig
from darec.data.readers._common import (
    DEFAULT_MAX_MB,
    check_ids,
    configured_item_file,
    interactions_frame,
    only_file,
    parse_floats,
    parse_times,
    read_text,
)
from darec.data.types import RawData
from darec.errors import DataError

__all__ = [
    "AtomicTable",
    "read_table",
    "read_item_attributes",
    "read_atomic",
    "atomic_files",
    "read",
    "source_files",
]

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
ATTRIBUTE_TYPES = ("token", "token_seq", "float")


@dataclass
class AtomicTable:
    """One parsed atomic file: column values as strings, with the line number of every row."""

    path: Path
    types: dict[str, str]
    """Column name (without ``:type``) -> type, in header order."""
    columns: dict[str, tuple[str, ...]]
    lines: list[int]
    """1-based line number of each row (blank lines are skipped)."""

    def require(self, name: str, kind: str, key: str = "") -> tuple[str, ...]:
        """Values of a required column, or ``DataError`` naming the columns the file has (and
        the config ``key`` that names the column, when given)."""
        if name not in self.columns:
            present = ", ".join(f"{n}:{t}" for n, t in self.types.items())
            hint = f" (set {key} to one of these)" if key else ""
            raise DataError(
                f"expected a {kind} column {name!r} in the header; the file has: {present}{hint}",
                path=self.path,
                line=1,
            )
        return self.columns[name]


def read_table(path: Path, max_mb: int = DEFAULT_MAX_MB) -> AtomicTable:
    """Parse an atomic file, checking the header and the field count of every line (a ``.gz``
    file may expand to ``max_mb`` MB)."""
    text = read_text(path, max_mb)
    if not text.strip():
        raise DataError(
            "expected a header line of name:type fields (e.g. user_id:token), got an empty file",
            path=path,
            line=1,
        )
    lines = text.split("\n")
    header = lines[0].rstrip("\r").lstrip("\ufeff")
    types: dict[str, str] = {}
    for field_ in header.split("\t"):
        name, sep, kind = field_.strip().rpartition(":")
        if not sep or not name or kind not in FIELD_TYPES:
            raise DataError(
                f"expected header fields like name:type with type one of "
                f"{', '.join(FIELD_TYPES)}, got {field_!r}",
                path=path,
                line=1,
            )
        if name in types:
            raise DataError(f"expected unique column names, got {name!r} twice", path=path, line=1)
        types[name] = kind

    width = len(types)
    rows: list[list[str]] = []
    numbers: list[int] = []
    for index in range(1, len(lines)):
        line = lines[index]
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) != width:
            raise DataError(
                f"expected {width} tab-separated fields like the header, got {len(fields)}",
                path=path,
                line=index + 1,
            )
        rows.append(fields)
        numbers.append(index + 1)
    values = list(zip(*rows, strict=True)) if rows else [() for _ in types]
    columns = dict(zip(types, values, strict=True))
    return AtomicTable(path=path, types=types, columns=columns, lines=numbers)


def atomic_files(cfg: DataConfig) -> tuple[Path, Path | None]:
    """The ``.inter`` file and the item file (or None) that ``cfg`` points at.

    ``cfg.path`` is a ``.inter`` file or a folder holding ``FOLDER.inter`` (or a single
    ``*.inter``). The item file is ``cfg.item_path`` if set, else ``NAME.item`` beside the
    ``.inter`` file when it exists.
    """
    path = Path(cfg.path).expanduser()
    if path.is_dir():
        inter = path / f"{path.name}.inter"
        if not inter.is_file():
            inter = only_file(
                path, lambda p: p.suffix == ".inter", f"{path.name}.inter or a single .inter file"
            )
    elif path.is_file():
        inter = path
    else:
        raise DataError("data path does not exist", path=path)
    item = configured_item_file(cfg.item_path)
    if item is not None:
        return inter, item
    item_file = inter.with_suffix(".item")
    return inter, item_file if item_file.is_file() else None


def read_item_attributes(
    path: Path, id_column: str, max_mb: int = DEFAULT_MAX_MB, key: str = "data.item_id_column"
) -> dict[str, dict[str, str]]:
    """Item id -> {attribute: value} from an atomic item file (empty values are left out);
    a missing ``id_column`` names the config ``key`` that chooses it."""
    table = read_table(path, max_mb)
    ids = table.require(id_column, "item id", key)
    kept = [
        name for name, kind in table.types.items() if name != id_column and kind in ATTRIBUTE_TYPES
    ]
    for name in kept:
        if table.types[name] == "float":
            present = [(v, n) for v, n in zip(table.columns[name], table.lines, strict=True) if v]
            parse_floats([v for v, _ in present], [n for _, n in present], path, name)
    catalog: dict[str, dict[str, str]] = {}
    for row, item in enumerate(ids):
        if item in catalog:
            continue  # the first row of a repeated id wins
        catalog[item] = {
            name: table.columns[name][row].strip() for name in kept if table.columns[name][row]
        }
    return catalog


def read_atomic(
    inter: Path,
    item: Path | None,
    user_column: str,
    item_column: str,
    time_column: str,
    item_id_column: str = "",
    max_mb: int = DEFAULT_MAX_MB,
) -> RawData:
    """Read an interaction file and an optional item file (see the module docstring); the item
    file's id column is ``item_id_column`` (empty: ``item_column``)."""
    table = read_table(inter, max_mb)
    users = table.require(user_column, "user id", "data.user_column")
    items = table.require(item_column, "item id", "data.item_column")
    check_ids(users, table.lines, inter, user_column)
    check_ids(items, table.lines, inter, item_column)
    if not table.lines:
        raise DataError("expected at least one interaction after the header, got none", path=inter)
    if time_column in table.columns or time_column != DataConfig.time_column:
        # a time column named explicitly must exist; the default may be absent (file order)
        time_values = (
            table.require(time_column, "time", "data.time_column") if time_column else None
        )
    else:
        time_values = None
    times = parse_times(time_values, table.lines, inter, time_column)
    catalog: dict[str, dict[str, str]] = {}
    if item is not None:
        key = "data.item_id_column" if item_id_column else "data.item_id_column (or item_column)"
        catalog = read_item_attributes(item, item_id_column or item_column, max_mb, key)
    raw = interactions_frame(users, items, times)
    return RawData(raw, catalog, source=str(inter), item_source="" if item is None else str(item))


def source_files(cfg: DataConfig) -> list[Path]:
    """Every file :func:`read` will read for ``cfg``, in a fixed order."""
    inter, item = atomic_files(cfg)
    return [inter] if item is None else [inter, item]


def read(cfg: DataConfig) -> RawData:
    """Read the RecBole atomic files ``cfg`` points at."""
    inter, item = atomic_files(cfg)
    return read_atomic(
        inter,
        item,
        cfg.user_column,
        cfg.item_column,
        cfg.time_column,
        cfg.item_id_column,
        cfg.max_decompressed_mb,
    )
