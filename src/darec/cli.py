"""The ``darec`` command line: thin wrappers that parse, call the library and print."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from darec.config import Config, apply_overrides, load_config
from darec.errors import DarecError, DataWarning

if TYPE_CHECKING:
    from darec.data.cold import ColdSplit
    from darec.run.compare import Comparison
    from darec.serving.recommend import Recommender

app = typer.Typer(
    help="DARec: LLM-based sequential recommendation with honest full-ranking evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
catalog_app = typer.Typer(help="Add items to a trained run.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
config_app = typer.Typer(help="Show the configuration and its reference.", no_args_is_help=True)
app.add_typer(config_app, name="config")
search_app = typer.Typer(
    help="Bayesian search over per-layer adapter architectures (docs/search.md).",
    invoke_without_command=True,
)
app.add_typer(search_app, name="search")
# data (ids, titles, paths, values in error messages) is printed as it is: no Rich markup
# ("[/red]" in an item id), no emoji codes (":100:" in "file.csv:100:"), no highlighting
console = Console(markup=False, emoji=False, highlight=False)
err = Console(stderr=True, markup=False, emoji=False, highlight=False)


def _print_version(value: bool) -> None:
    if value:
        import darec

        print(f"darec {darec.__version__}")
        raise typer.Exit()


@contextmanager
def _warnings_shown() -> Iterator[None]:
    """While a command runs, what the library warns the user about (:class:`DataWarning`:
    the time column it chose, data that changed) is printed as ``warning: ...`` lines, each
    time, instead of Python's warning format."""

    with warnings.catch_warnings():
        others = warnings.showwarning  # every other warning as Python shows it

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if issubclass(category, DataWarning):
                err.print(Text.assemble(("warning:", "bold yellow"), f" {message}"))
            else:
                others(message, category, filename, lineno, file, line)

        warnings.simplefilter("always", DataWarning)
        warnings.showwarning = show
        yield


@app.callback()
def _logging(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also log debug lines.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Log lines of darec's own modules (e.g. the dtype chosen) go to standard error."""
    from rich.logging import RichHandler

    ctx.with_resource(_warnings_shown())  # ends with the command

    logger = logging.getLogger("darec")
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        logger.addHandler(RichHandler(console=err, show_time=False, show_path=False))
        logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


SHOWN_METRICS = ("HR@10", "NDCG@10", "MRR@10", "HR@20", "NDCG@20")
SHOWN_COMPARED = ("NDCG@10", "HR@10")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config value: section.key=value (repeatable)."),
]
DataOpt = Annotated[
    str | None, typer.Option("--data", "-d", help="Data file or folder (sets data.path).")
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        help="cpu, cuda, cuda:N or auto (CUDA when present); the run may have trained elsewhere.",
    ),
]
QuantizeOpt = Annotated[
    str,
    typer.Option(
        "--quantize",
        help="none, or int8: a streamed event reads int8 copies of the language model's "
        "weights (CPU, darec; ~1.5x faster per event, scores move slightly; docs/serving.md).",
    ),
]
ItemFileOpt = Annotated[
    str | None,
    typer.Option(
        "--item-file", help="Item file to read instead of the run's (sets data.item_path)."
    ),
]
AllowChangedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-changed-data",
        help="Go on (with a warning) when the data differs from what the run was trained on.",
    ),
]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", "-f", help="auto, atomic, csv, movielens or amazon (data.format)."),
]


def _fail(exc: BaseException) -> None:
    err.print(Text.assemble(("error:", "bold red"), f" {exc}"))
    raise typer.Exit(2)


def _overrides(sets: list[str] | None, **fields: str | None) -> list[str]:
    """``--set`` strings, after those of the options that name a key (``--data`` and such)."""
    return [f"{k}={v}" for k, v in fields.items() if v is not None] + list(sets or [])


def _config(config: Path | None, sets: list[str] | None, **fields: str | None) -> Config:
    return load_config(config, _overrides(sets, **fields))


class _Progress:
    """Rich progress bar driven by the trainer's callbacks."""

    def __init__(self, progress: Progress, label: str) -> None:
        self.progress, self.label = progress, label
        self.task: TaskID | None = None
        self.best: float | None = None
        self.step, self.steps = 0, 0  # position inside the current epoch

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        self.step, self.steps = 0, steps
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(f"{self.label} epoch {epoch + 1}", total=steps, loss="")

    def on_step(self, epoch: int, step: int, loss: float) -> None:
        self.step = step + 1
        if self.task is not None:
            self.progress.update(self.task, completed=step + 1, loss=f"loss {loss:.4f}")

    def on_validation(self, epoch: int, metrics: dict[str, float], improved: bool) -> None:
        mark = Text("*", style="green") if improved else Text(" ")
        shown = "  ".join(f"{k} {metrics[k]:.4f}" for k in ("HR@10", "NDCG@10") if k in metrics)
        where = f"epoch {epoch:3d}"
        if 0 < self.step < self.steps:  # a mid-epoch validation (train.eval_every_steps)
            where += f" step {self.step}/{self.steps}"
        self.progress.console.print(
            Text.assemble(f"{self.label} {where}  valid {shown} ", mark), markup=False
        )


def _progress() -> Progress:
    """The training progress bar; off when standard output is not a terminal (a log file gets
    the plain validation lines only, no redrawn bars)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def _metrics_table(title: str, rows: list[tuple[str, dict[str, float]]]) -> Table:
    table = Table(title=title)
    table.add_column("model")
    for name in SHOWN_METRICS:
        table.add_column(name, justify="right")
    for label, metrics in rows:
        table.add_row(label, *(f"{metrics.get(m, float('nan')):.4f}" for m in SHOWN_METRICS))
    return table


@app.command()
def train(
    config: ConfigOpt = None,
    data: DataOpt = None,
    fmt: FormatOpt = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name.")] = None,
    sets: SetOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder.")] = Path("runs/run"),
    resume: Annotated[bool, typer.Option(help="Continue the run in --output.")] = False,
) -> None:
    """Train a model, select it on validation NDCG@10, evaluate the test split once.

    Started by `torchrun --nproc_per_node N -m darec.cli train ...`, it trains data-parallel on N
    processes (docs/distributed.md); rank 0 writes the run folder and prints."""
    from darec.config import apply_overrides
    from darec.experiment import run_experiment
    from darec.run import RunFolder
    from darec.training.distributed import is_main_process, shutdown

    try:
        fields = {"data.path": data, "data.format": fmt, "model.name": model}
        if resume and config is None and (output / "config.json").exists():
            # the run's own config, with what is given now on top (checked when restoring)
            cfg = apply_overrides(RunFolder.open(output).config, _overrides(sets, **fields))
        else:
            cfg = _config(config, sets, **fields)
        main = is_main_process()
        with _progress() as progress:
            callback = _Progress(progress, cfg.model.name) if main else None
            try:
                result, record = run_experiment(cfg, output, callback, resume=resume)
            finally:
                shutdown()  # leave the process group of a torchrun start, if any
    except DarecError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        if (output / "checkpoints" / "pointers.json").exists():
            err.print(f"interrupted; continue with: darec train ... --output {output} --resume")
        else:
            err.print("interrupted before the first checkpoint; nothing to resume: run the same")
            err.print("command again (without --resume)")
        raise typer.Exit(130) from None
    if not main:
        return  # rank 0 prints for all
    console.print(
        f"{record.model} on {record.dataset}: best epoch {result.best_epoch} of {result.epochs} "
        f"({result.stopped}), {result.train_seconds:.0f}s; run folder {output}"
    )
    for note in result.notes:
        err.print(Text.assemble(("warning:", "bold yellow"), f" {note}"))
    console.print(_metrics_table("test (full ranking)", [(record.model, result.test)]))


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="Run folder written by `darec train`.")],
    plot: Annotated[
        Path | None, typer.Option("--plot", help="PNG file for the curves (RUN/curves.png).")
    ] = None,
) -> None:
    """A run's training log: loss and validation per epoch, and a plot of both curves."""
    from darec.run import RunFolder
    from darec.training.log import plot_log, read_log

    try:
        folder = RunFolder.open(run)
        records = read_log(folder.path / "log.jsonl")
        if not records:
            raise DarecError(
                f"{folder.path / 'log.jsonl'} is missing or empty (runs trained before the log "
                "existed have none)"
            )
        metric = folder.config.eval.select_metric
        target = plot or folder.path / "curves.png"
        plot_log(records, target, metric)
    except DarecError as exc:
        _fail(exc)
    table = Table(title=f"{run}: training log")
    for col in ("epoch", "steps", "loss", "lr", f"valid {metric}", "minutes"):
        table.add_column(col, justify="right")
    valid = {r["epoch"]: r for r in records if r.get("event") == "valid"}
    for r in records:
        if r.get("event") != "epoch":
            continue
        v = valid.get(r["epoch"], {})
        table.add_row(
            str(r["epoch"]),
            f"{r['steps']}/{r['of_steps']}",
            f"{r['loss']:.4f}",
            f"{r['lr']:.2e}",
            f"{v[metric]:.4f}" if metric in v else "",
            f"{r['seconds'] / 60:.1f}",
        )
    console.print(table)
    console.print(f"curves: {target}")


@app.command()
def compare(
    runs: Annotated[
        list[Path], typer.Argument(help="Run folders written by `darec train` (finished or not).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Runs side by side: model, data, seed, valid and test NDCG@10/HR@10, epochs, why training
    stopped, train minutes, and the settings that differ between the runs."""
    from darec.run.compare import compare_runs

    try:
        result = compare_runs(runs)
    except DarecError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(result.to_json()))
        return
    console.print(_compare_table(result))
    if len(runs) < 2:
        return
    if not result.differences:
        console.print("the runs have the same settings (apart from model and seed)")
        return
    console.print("settings that differ:")
    for key, values in result.differences.items():
        console.print(f"  {key}: " + " | ".join(_setting(v) for v in values))


def _setting(value: Any) -> str:
    """A config value as a TOML file or ``--set`` writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_setting(v) for v in value)
    return str(value)


def _compare_table(result: Comparison) -> Table:
    """One column per run, one row per value (narrow terminals fit several runs)."""
    runs = result.runs
    table = Table(title="runs side by side (seen kept: test with seen items as candidates)")
    table.add_column("", no_wrap=True)
    for r in runs:
        table.add_column(Text(r.run), justify="right", overflow="fold")  # no markup in a path

    def metric(part: str, name: str) -> list[str]:
        return [f"{getattr(r, part)[name]:.4f}" if name in getattr(r, part) else "-" for r in runs]

    rows: list[tuple[str, list[str]]] = [
        ("model", [r.model for r in runs]),
        ("dataset", [r.dataset for r in runs]),
        ("seed", [str(r.seed) for r in runs]),
    ]
    parts = [("valid", "valid"), ("test", "test")]
    if any(r.test_seen_kept for r in runs):  # recorded by runs since both protocols were
        parts.append(("seen kept", "test_seen_kept"))
    rows += [(f"{label} {m}", metric(part, m)) for label, part in parts for m in SHOWN_COMPARED]
    rows += [
        (
            "best / epochs",
            ["-" if r.epochs is None else f"{r.best_epoch}/{r.epochs}" for r in runs],
        ),
        ("stopped", [r.stopped for r in runs]),
        (
            "train minutes",
            ["-" if r.train_seconds is None else f"{r.train_seconds / 60:.1f}" for r in runs],
        ),
    ]
    for label, values in rows:
        table.add_row(label, *(Text(v) for v in values))  # values from the files: no markup
    return table


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder written by `darec train`.")],
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    include_history: Annotated[
        bool, typer.Option(help="Rank history items too (default: excluded).")
    ] = False,
    data: DataOpt = None,
    item_file: ItemFileOpt = None,
    allow_changed_data: AllowChangedOpt = False,
    device: DeviceOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
    by_popularity: Annotated[
        bool,
        typer.Option(
            "--by-popularity",
            help="Also the metrics of the users whose target is in the head, torso or tail "
            "third of the items by training count.",
        ),
    ] = False,
) -> None:
    """Evaluate a trained run on the valid or test split with full ranking."""
    from darec.data.split import leave_one_out
    from darec.devices import pick_device
    from darec.evaluation.evaluator import evaluate as run_eval
    from darec.evaluation.popularity import item_counts, metrics_by_group, popularity_groups
    from darec.run import RunFolder
    from darec.serving.inference_cache import load_for_inference

    try:
        if split not in ("valid", "test"):
            raise DarecError(f"--split must be 'valid' or 'test', got {split!r}")
        on = pick_device(device, "--device")
        cfg, model, _ = load_for_inference(run, on)  # DARec: with its catalog cache
        dataset = RunFolder.open(run).load_data(data, item_file, allow_changed_data)
        eval_cfg = dataclasses.replace(cfg.eval, exclude_history=not include_history)
        parts = leave_one_out(dataset)
        cases = getattr(parts, split)
        result = run_eval(model, cases, eval_cfg, cfg.model.max_seq_len, on)
    except DarecError as exc:
        _fail(exc)
    groups: dict[str, dict[str, float]] = {}
    if by_popularity:
        counts = item_counts(parts.train, dataset.num_items)
        ks = tuple(sorted({*cfg.eval.ks, 10}))
        groups = metrics_by_group(result.ranks, cases.targets, popularity_groups(counts), ks)
    if as_json:
        record = {
            "split": split,
            "users": result.num_users,
            "exclude_history": result.exclude_history,
        }
        print(json.dumps(record | result.metrics | ({"by_popularity": groups} if groups else {})))
        return
    title = (
        f"{split}: {result.num_users} users, full ranking, history "
        f"{'excluded' if result.exclude_history else 'included'}"
    )
    rows = [(cfg.model.name, result.metrics)]
    rows += [(f"  {name} ({int(m['users'])} users)", m) for name, m in groups.items()]
    console.print(_metrics_table(title, rows))


@app.command()
def recommend(
    run: Annotated[Path, typer.Argument(help="Run folder written by `darec train`.")],
    user: Annotated[str | None, typer.Option(help="A user id of the training data.")] = None,
    items: Annotated[
        str | None, typer.Option(help="Comma-separated item ids, oldest first (a new user).")
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="How many items.")] = 10,
    exclude: Annotated[str, typer.Option(help="Comma-separated item ids to leave out.")] = "",
    include_history: Annotated[bool, typer.Option(help="Allow already seen items.")] = False,
    data: DataOpt = None,
    item_file: ItemFileOpt = None,
    allow_changed_data: AllowChangedOpt = False,
    device: DeviceOpt = "auto",
    quantize: QuantizeOpt = "none",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    all_users: Annotated[
        bool, typer.Option("--all-users", help="Every user of the run's data, in batches.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="With --all-users: write .csv, .jsonl or .parquet here."
        ),
    ] = None,
    stream: Annotated[
        bool,
        typer.Option(
            help="Then read one item id per line from standard input and recommend again after "
            "each (DARec runs only the new step)."
        ),
    ] = False,
) -> None:
    """Top-k items for a known user, or for a given item history."""
    from darec.devices import pick_device
    from darec.serving.export import check_output, write_table
    from darec.serving.recommend import Recommendation, Recommender

    try:
        given = (user is not None) + (items is not None) + all_users
        if given > 1 or (given == 0 and not stream):  # --stream may start from nothing
            raise DarecError("give exactly one of --user, --items or --all-users")
        if all_users and output is None:
            raise DarecError("--all-users writes a file: give --output recs.csv (or .parquet)")
        if output is not None and not all_users:
            raise DarecError("--output goes with --all-users")
        if output is not None:
            check_output(output)  # before any work
        on = pick_device(device, "--device")
        rec = Recommender(run, data, on, item_file, allow_changed_data, quantize)
        if all_users:
            assert output is not None
            table = rec.recommend_batch(k=k, exclude_history=not include_history)
            write_table(table, output)
            console.print(
                f"wrote {len(table)} rows for {table['user'].nunique()} users to {output}"
            )
            return
        banned = [e for e in exclude.split(",") if e]
        if stream:
            _stream(rec, user, items, k, banned, not include_history, as_json)
            return
        if user is not None:
            recs = rec.for_user(user, k, banned, not include_history)
        else:
            history = [i for i in (items or "").split(",") if i]
            recs = rec.for_history(history, k, banned, not include_history)
    except DarecError as exc:
        _fail(exc)
    if as_json:
        for r in recs:
            print(json.dumps(dataclasses.asdict(r)))
        return
    recs = rec.with_titles(recs)
    if user is not None:  # what the recommendations follow
        recent = rec.with_titles([Recommendation(i, 0.0, 0) for i in rec.history_of(user)[-5:]])
        shown = "; ".join(f"{r.item} ({r.title})" if r.title else r.item for r in recent)
        console.print(f"user {user}, most recent last: {shown}")
    titled = any(r.title for r in recs)
    table = Table(title=f"top {k} for {'user ' + user if user else 'the given history'}")
    for col in ("rank", "item", "score", *(["title"] if titled else [])):
        table.add_column(col)
    for r in recs:
        table.add_row(str(r.rank), r.item, f"{r.score:.4f}", *([r.title or ""] if titled else []))
    console.print(table)


def _stream(
    rec: Recommender,
    user: str | None,
    items: str | None,
    k: int,
    banned: list[str],
    exclude_history: bool,
    as_json: bool,
) -> None:
    """``recommend --stream``: top-k after the start and after every item read from stdin."""
    history = [i for i in (items or "").split(",") if i]
    session = rec.session(history, user)

    def show(after: str) -> None:
        recs = session.top(k, banned, exclude_history)
        if as_json:
            print(json.dumps({"after": after, "items": [dataclasses.asdict(r) for r in recs]}))
        else:
            console.print(f"after {after}: " + ", ".join(r.item for r in recs))

    if user:
        show(user)
    else:
        show("the given history" if history else "nothing")
    for line in sys.stdin:
        item = line.strip()
        if not item:
            continue
        try:
            session.add(item)
        except DarecError as exc:  # e.g. an unknown item id: say so and keep the session
            print(f"error: {exc}", file=sys.stderr)
            continue
        show(item)


@app.command()
def serve(
    run: Annotated[Path, typer.Argument(help="Run folder written by `darec train`.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="Name of an environment variable holding the API key (X-API-Key)."),
    ] = None,
    insecure: Annotated[
        bool, typer.Option(help="Allow a non-loopback --host without an API key.")
    ] = False,
    threads: Annotated[
        int,
        typer.Option(
            help="torch intra-op threads; 0 keeps torch's default (every core). 1 is fastest for "
            "the ID models (SASRec, ...) on a small or busy machine."
        ),
    ] = 0,
    event_threads: Annotated[
        int,
        typer.Option(
            help="torch threads for one streamed event (POST /users/{user}/events); 0: as "
            "--threads. One was fastest for DARec's one-token steps on 2 CPU cores."
        ),
    ] = 1,
    data: DataOpt = None,
    allow_changed_data: AllowChangedOpt = False,
    device: DeviceOpt = "auto",
    quantize: QuantizeOpt = "none",
) -> None:
    """Serve a trained run over HTTP (docs/serving.md): recommendations, streamed events, item
    lookup, /health, /metrics; the OpenAPI schema at /openapi.json and /docs."""
    import os

    from darec.devices import pick_device
    from darec.serving.http import create_app, is_loopback
    from darec.serving.recommend import Recommender

    try:
        api_key = None
        if api_key_env is not None:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise DarecError(
                    f"--api-key-env {api_key_env}: that environment variable is unset or empty"
                )
        if not is_loopback(host) and api_key is None:
            if not insecure:
                raise DarecError(
                    f"--host {host} accepts connections from other machines: give an API key "
                    "with --api-key-env NAME, or --insecure to serve without one"
                )
            err.print(
                Text.assemble(
                    ("warning:", "bold yellow"),
                    f" serving on {host} without an API key (--insecure)",
                )
            )
        if threads < 0:
            raise DarecError(f"--threads must be >= 0, got {threads}")
        if threads:
            import torch

            torch.set_num_threads(threads)
        on = pick_device(device, "--device")
        rec = Recommender(run, data, on, allow_changed_data=allow_changed_data, quantize=quantize)
        server_app = create_app(rec, api_key=api_key, event_threads=event_threads)
    except DarecError as exc:
        _fail(exc)
    import uvicorn

    err.print(f"serving {run} ({rec.cfg.model.name}) on http://{host}:{port} (API docs at /docs)")
    uvicorn.run(server_app, host=host, port=port, log_level="warning")


@catalog_app.command("add")
def catalog_add(
    run: Annotated[Path, typer.Argument(help="Run folder written by `darec train`.")],
    items_file: Annotated[
        Path,
        typer.Argument(help="New items: a RecBole .item file, a CSV/TSV or Amazon metadata."),
    ],
    id_column: Annotated[
        str | None,
        typer.Option(
            help="Item id column (default: the run's data.item_id_column, else data.item_column)."
        ),
    ] = None,
    data: DataOpt = None,
) -> None:
    """Add new items to a trained run from their text alone (content, sasrec-text, darec): then
    `recommend` and `evaluate` rank them with the rest, without retraining."""
    from darec.serving.catalog import add_items

    try:
        added = add_items(run, items_file, id_column, data)
    except DarecError as exc:
        _fail(exc)
    shown = ", ".join(added[:5]) + (", ..." if len(added) > 5 else "")
    console.print(f"added {len(added)} item(s) to {run}: {shown}")


@data_app.command("info")
def data_info(
    path: Annotated[
        str | None, typer.Argument(help="Data file or folder (default ML-100K).")
    ] = None,
    fmt: FormatOpt = None,
    config: ConfigOpt = None,
    sets: SetOpt = None,
) -> None:
    """Users, items, interactions, sequence lengths and density after preprocessing."""
    from darec.data.info import dataset_stats
    from darec.run import load_data

    try:
        cfg = _config(config, sets, **{"data.path": path, "data.format": fmt})
        ds = load_data(cfg)
        stats = dataset_stats(ds)
    except DarecError as exc:
        _fail(exc)
    table = Table(title=f"dataset {ds.name} (k-core {cfg.data.user_min}/{cfg.data.item_min})")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in _flatten(stats):
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    console.print(table)


def _flatten(stats: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in stats.items():
        if isinstance(value, dict):
            out += _flatten(value, f"{prefix}{key} ")
        else:
            out.append((prefix + key, value))
    return out


@config_app.command("defaults")
def config_defaults() -> None:
    """Print the default configuration as TOML (a starting point for --config)."""
    from darec.config_docs import default_toml

    print(default_toml(), end="")


@config_app.command("reference")
def config_reference() -> None:
    """Print the configuration reference (docs/configuration.md) as markdown."""
    from darec.config_docs import reference_markdown

    print(reference_markdown(), end="")


StudyOpt = Annotated[str | None, typer.Option("--study", "-n", help="Study name.")]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        help="Study storage: sqlite:///FILE, any SQLAlchemy URL (postgresql://...), or "
        "journal:FILE. Default: sqlite in the search folder."
    ),
]
SearchOutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Search folder (trials, report). Default: runs/search/NAME."),
]


def _search_place(
    study: str | None, storage: str | None, out: Path | None
) -> tuple[str, str, Path]:
    if not study:
        raise DarecError("give the study name with --study NAME")
    folder = out or Path("runs/search") / study
    return study, storage or f"sqlite:///{(folder / 'study.db').resolve()}", folder


def _print_best(study: Any) -> None:
    from darec.search import summarize

    summary = summarize(study)
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary.states.items()))
    console.print(f"study {summary.study}: {states} ({summary.rejected} rejected by a budget)")
    table = Table(title="Pareto front" if len(summary.objectives) > 1 else "best trial")
    for col in ("trial", f"valid {summary.metric}", "step s", "adapter params", "layout"):
        table.add_column(col)
    for t in summary.best[:10]:
        table.add_row(
            str(t.number),
            f"{t.values[0]:.4f}",
            f"{t.user_attrs.get('step_seconds', float('nan')):.3f}",
            str(t.user_attrs.get("adapter_params", "")),
            str(t.user_attrs.get("layout", "")),
        )
    console.print(table)


def _retrain(study: Any, output: Path, trial: int | None, resume: bool) -> None:
    from darec.search import retrain

    with _progress() as progress:
        result, record, chosen = retrain(
            study, output, trial, callback=_Progress(progress, "retrain"), resume=resume
        )
    console.print(
        f"trial {chosen.number} ({chosen.user_attrs.get('layout')}) retrained: best epoch "
        f"{result.best_epoch} of {result.epochs}, {result.train_seconds:.0f}s; run folder {output}"
    )
    console.print(_metrics_table("test (full ranking)", [(record.model, result.test)]))


@search_app.callback()
def search(
    ctx: typer.Context,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    trials: Annotated[
        int | None,
        typer.Option(
            help="Finished trials the study should have in total, over all its workers "
            "(search.trials)."
        ),
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes on this machine.")] = 1,
    config: ConfigOpt = None,
    data: DataOpt = None,
    sets: SetOpt = None,
    out: SearchOutOpt = None,
    report: Annotated[bool, typer.Option(help="Write the report when the search ends.")] = True,
    retrain: Annotated[
        bool, typer.Option(help="Then retrain the best layout with the full budget.")
    ] = False,
) -> None:
    """Create or resume study NAME and run trials until it has --trials of them. The same
    command on another machine (same --storage) adds workers to the study. Exits non-zero when
    a worker failed and trials are missing; a failed worker of a study that has its trials is a
    warning."""
    if ctx.invoked_subcommand is not None:
        return
    import optuna

    from darec.search import run_search, write_report

    # the workers log one line per trial that names them ("[host:pid/w0] trial 12 ..."),
    # instead of Optuna's own lines, which do not
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        name, url, folder = _search_place(study, storage, out)
        fields = {"data.path": data, "search.trials": None if trials is None else str(trials)}
        cfg = _config(config, sets, **fields)
        result = run_search(cfg, name, url, folder, workers)
        _print_best(result)
        if report:
            console.print(f"report: {write_report(result, folder)}")
        if retrain:
            _retrain(result, folder / "best", None, resume=False)
    except DarecError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        err.print("interrupted; run the same command again to resume the study")
        raise typer.Exit(130) from None


@search_app.command("report")
def search_report(
    study: StudyOpt = None, storage: StorageOpt = None, out: SearchOutOpt = None
) -> None:
    """Write the search report (markdown summary and figures) into the search folder."""
    from darec.search import load_study, open_storage, write_report

    try:
        name, url, folder = _search_place(study, storage, out)
        result = load_study(name, open_storage(url))
        _print_best(result)
        console.print(f"report: {write_report(result, folder)}")
    except DarecError as exc:
        _fail(exc)


@search_app.command("retrain")
def search_retrain(
    study: StudyOpt = None,
    storage: StorageOpt = None,
    out: SearchOutOpt = None,
    trial: Annotated[
        int | None,
        typer.Option(help="Trial to retrain (e.g. a Pareto point); default: the best."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Run folder. Default: the search folder's best/.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted retraining.")] = False,
) -> None:
    """Retrain a trial's layout with the full training budget, test it once, and save a run
    folder that `darec evaluate` and `darec recommend` take."""
    from darec.search import load_study, open_storage

    try:
        name, url, folder = _search_place(study, storage, out)
        result = load_study(name, open_storage(url))
        _retrain(result, output or folder / "best", trial, resume)
    except DarecError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        err.print("interrupted; continue with: darec search retrain ... --resume")
        raise typer.Exit(130) from None


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the runs.")] = Path(
        "runs/demo"
    ),
    models: Annotated[str, typer.Option(help="Comma-separated models to compare.")] = (
        "pop,sasrec,darec"
    ),
    cold: Annotated[
        float,
        typer.Option(
            help="Hold this share of the items (e.g. 0.1) out of training and show how each "
            "model ranks them: content, content-cf, sasrec-text and darec add them from their "
            "titles and genres, ID models cannot."
        ),
    ] = 0.0,
    sets: SetOpt = None,
) -> None:
    """Train and compare models on MovieLens-100K (shipped in the recbole wheel), print a table."""
    from darec.data.cold import hold_out_items
    from darec.experiment import DEMO_MODELS, demo_config, run_cold_experiment, run_experiment
    from darec.models.registry import MODELS
    from darec.run import load_data

    rows: list[tuple[str, dict[str, float]]] = []
    cold_rows: list[tuple[str, dict[str, dict[str, float]], bool]] = []
    held_out: ColdSplit | None = None
    suffix = "-cold" if cold else ""
    try:
        names = [m for m in models.split(",") if m]
        for name in names:
            if name not in DEMO_MODELS:
                raise DarecError(f"unknown demo model {name!r}; valid: {', '.join(DEMO_MODELS)}")
        for i, name in enumerate(names):
            extra = []
            if name == "darec" and "sasrec" in names[:i]:  # reuse the SASRec just trained
                cf = output / f"sasrec{suffix}"
                extra = [f"darec.cf_checkpoint={cf}", "darec.cf_frozen=true"]
            cfg = apply_overrides(demo_config(name, extra=extra), list(sets or []))
            run_dir = output / f"{name}{suffix}"
            resume = (run_dir / "checkpoints" / "pointers.json").exists()
            if cold:
                if held_out is None:  # one draw for every model
                    held_out = hold_out_items(load_data(cfg), cold, cfg.train.seed)
                with _progress() as progress:
                    result, metrics = run_cold_experiment(
                        cfg, held_out, run_dir, _Progress(progress, name), resume
                    )
                adds = MODELS[cfg.model.name].adds_items_from_text
                cold_rows.append((f"{name} ({result.train_seconds:.0f}s)", metrics, adds))
                console.print(
                    Text.assemble(
                        (name, "bold"),
                        f": best epoch {result.best_epoch}/{result.epochs}, test NDCG@10 cold "
                        f"{metrics['cold']['NDCG@10']:.4f}, warm {metrics['warm']['NDCG@10']:.4f}",
                    )
                )
                continue
            with _progress() as progress:
                result, record = run_experiment(cfg, run_dir, _Progress(progress, name), resume)
            console.print(
                Text.assemble(
                    (name, "bold"),
                    f": best epoch {result.best_epoch}/{result.epochs}, "
                    f"{result.train_seconds:.0f}s, test NDCG@10 {result.test['NDCG@10']:.4f}",
                )
            )
            label = f"{name} ({record.train_seconds:.0f}s)"
            if result.best_epoch == 0 and cfg.train.validate_first and result.epochs:
                # no epoch beat the validated start: these are its starting model's numbers
                label += ", kept its start"
                err.print(
                    f"{name}: no training epoch beat its validated start (epoch 0), so the "
                    "selected checkpoint is the model it started from (for DARec: its CF model)"
                )
            rows.append((label, result.test))
    except DarecError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        err.print(f"interrupted; run the same command again to resume from {output}")
        raise typer.Exit(130) from None
    if held_out is not None:
        console.print(_cold_table(held_out, cold_rows))
        return
    console.print(
        _metrics_table(
            "MovieLens-100K, leave-one-out, test split, full ranking (history excluded)", rows
        )
    )


def _cold_table(
    data: ColdSplit, rows: list[tuple[str, dict[str, dict[str, float]], bool]]
) -> Table:
    """``demo --cold``: test metrics on held-out (cold) and trained (warm) targets."""
    cold_cases = int(data.cold_target.sum())
    table = Table(
        title=f"MovieLens-100K, {len(data.cold_ids)} items held out of training: test cases "
        f"with a held-out target ({cold_cases}) and the others ({len(data.test) - cold_cases})"
    )
    table.add_column("model")
    for part in ("cold", "warm"):
        for metric in ("HR@10", "NDCG@10"):
            table.add_column(f"{part} {metric}", justify="right")
    for label, metrics, adds in rows:
        cold = [f"{metrics['cold'][m]:.4f}" if adds else "cannot" for m in ("HR@10", "NDCG@10")]
        warm = [f"{metrics['warm'][m]:.4f}" for m in ("HR@10", "NDCG@10")]
        table.add_row(label, *cold, *warm)
    return table


def main() -> None:  # pragma: no cover - entry point for `python -m darec`
    app(prog_name="darec")


if __name__ == "__main__":  # pragma: no cover
    main()
