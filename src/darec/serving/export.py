"""Writing recommendation tables (``darec recommend --all-users -o FILE``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from darec.errors import DarecError

__all__ = ["write_table", "check_output", "FORMATS"]

FORMATS = (".csv", ".jsonl", ".parquet")


def check_output(path: Path) -> str:
    """The table format of ``path`` by its suffix; raise a clear error for any other."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DarecError(f"{path}: expected a file ending in {', '.join(FORMATS)}")
    return suffix


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` by the suffix of ``path`` (.csv, .jsonl or .parquet), atomically."""
    suffix = check_output(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if suffix == ".csv":
            table.to_csv(tmp, index=False)
        elif suffix == ".jsonl":
            table.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            try:
                table.to_parquet(tmp, index=False)
            except ImportError as exc:
                raise DarecError(
                    f"{path}: writing parquet needs pyarrow (pip install pyarrow); "
                    "or write .csv / .jsonl"
                ) from exc
        tmp.replace(path)
    except OSError as exc:
        raise DarecError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
