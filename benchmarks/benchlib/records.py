"""Benchmark records: JSON files, child runs stored one record at a time, and the blocks of
docs/results.md and README.md that the records are shown in."""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from darec.run.checkpoint import atomic_write_json

from .paths import DOC, QUICK_RESULTS, README, RESULTS_DIR

Record = dict[str, Any]


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` (its folder created), atomically."""
    atomic_write_json(path, obj)


def read_records(path: Path) -> list[Record]:
    """The list of records in ``path``; empty when the file does not exist yet."""
    return list(json.loads(path.read_text())) if path.exists() else []


def read_table(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; empty when the file does not exist yet."""
    return dict(json.loads(path.read_text())) if path.exists() else {}


def run_key(record: Record) -> Hashable:
    """What identifies a training run's record: its dataset, model and seed."""
    return record["dataset"], record["model"], record["seed"]


def run_and_store(
    cmd: list[str],
    existing: list[Record],
    results: Path,
    key: Callable[[Record], Hashable] = run_key,
) -> Record:
    """Run one benchmark child process, ``cmd`` + the path it writes its record to, so that
    each run's peak RSS is its own; put the record into ``existing`` (in place of one with the
    same ``key``) and save ``existing`` to ``results``. Returns the record.

    The file is read again just before it is written, so that two scripts training different
    runs side by side (e.g. one seed each) keep each other's records."""
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        subprocess.run([*cmd, tmp.name], check=True)
        record: Record = json.loads(Path(tmp.name).read_text())
    store_record(record, existing, results, key)
    return record


def store_record(
    record: Record,
    existing: list[Record],
    results: Path,
    key: Callable[[Record], Hashable] = run_key,
) -> None:
    """Put ``record`` into ``existing`` and ``results`` (merged with what the file holds now),
    in place of any record with the same ``key``."""
    merged = {key(r): r for r in [*existing, *read_records(results)]}
    merged[key(record)] = record
    existing[:] = list(merged.values())
    write_json(results, existing)


def child_json(cmd: list[str], env: dict[str, str] | None = None) -> Any:
    """Run a script's child process (its own peak memory, its own compile cache); the JSON
    that it prints last."""
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_main(args: argparse.Namespace, run: Callable[[], Any]) -> bool:
    """In a child process (``--one`` given, see ``add_child_args``): print ``run()`` as JSON
    for ``child_json`` and say so; otherwise False."""
    if not args.one:
        return False
    print(json.dumps(run()))
    return True


def replace_block(path: Path, name: str, body: str, default_head: str) -> None:
    """Put ``body`` between the ``<!-- name:begin -->`` and ``<!-- name:end -->`` markers of
    ``path`` (appended, markers and all, where they are missing; a missing file starts as
    ``default_head``)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body}\n{end}"
    text = path.read_text() if path.exists() else default_head
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text += "\n" + block + "\n"
    path.write_text(text)


def arguments(args: argparse.Namespace) -> dict[str, Any]:
    """A script's parsed arguments as JSON values (paths as strings), to store with a record."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def add_child_args(parser: argparse.ArgumentParser, **one: Any) -> None:
    """A script's hidden options for its own child processes: ``--one`` (what the child runs;
    ``one``: its argparse settings) and ``--set`` (overrides added to the child's config,
    repeatable: the quick mode's tiny setup among them)."""
    parser.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--one", help=argparse.SUPPRESS, **one)


def results_path(given: Path | None, default: Path, quick: bool) -> Path:
    """Where a script writes its record: ``given`` (``--out``/``--results``), else ``default``;
    in quick mode ``default``'s name in ``QUICK_RESULTS`` instead, and never a file of
    benchmarks/results (ValueError)."""
    if not quick:
        return given or default
    path = (given or QUICK_RESULTS / default.name).resolve()
    if path.is_relative_to(RESULTS_DIR.resolve()):
        raise ValueError(f"--quick never writes the recorded results, but was given {path}")
    return path


def markdown(records: list[Record]) -> str:
    """docs/results.md's table of training-run records (baselines, DARec, text signal)."""
    cols = ["HR@10", "NDCG@10", "MRR@10", "HR@20", "NDCG@20"]
    lines = [
        "| dataset | model | seed | "
        + " | ".join(f"test {c}" for c in cols)
        + " | valid NDCG@10 | epochs (why stopped) | train s | peak RSS MB |",
        "|" + "---|" * (len(cols) + 7),
    ]
    for r in records:
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['seed']} | "
            + " | ".join(f"{r['test'][c]:.4f}" for c in cols)
            + f" | {r['valid'].get('NDCG@10', float('nan')):.4f} | {r['epochs']} "
            f"({r.get('stopped', '')}) | "
            f"{r['train_seconds']:.0f} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def readme_table(records: list[Record]) -> str:
    """README.md's short table of training-run records."""
    lines = [
        "| dataset | model | test HR@10 | test NDCG@10 | test MRR@10 | epochs | train time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['test']['HR@10']:.4f} | "
            f"{r['test']['NDCG@10']:.4f} | {r['test']['MRR@10']:.4f} | {r['epochs']} | "
            f"{r['train_seconds'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def write_run_tables(records: list[Record], doc_block: str, readme_block: str) -> None:
    """The tables of training-run ``records``: the full one in docs/results.md's block
    ``doc_block``, the short one in README.md's ``readme_block``."""
    replace_block(DOC, doc_block, markdown(records), "# Results\n\n")
    replace_block(README, readme_block, readme_table(records), "")
