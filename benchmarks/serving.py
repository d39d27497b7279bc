"""`darec serve` under load on loopback: latency percentiles and requests/s; write results.

For each run the server is started as its own process (``darec serve RUN`` on a free loopback
port) and driven by 1, 8 and 32 concurrent clients (threads, one keep-alive
``http.client`` connection each, a bounded number of requests and seconds per level) on two
endpoints:

- ``POST /recommend {"user": ..., "k": 10}``: a known user after their whole history;
- ``POST /users/{user}/events {"item": ..., "k": 10}``: one streamed event and the new top-10,
  for users whose stream was started beforehand (DARec: one step against cached keys/values).

Then the batch export of every user is timed as a user runs it: ``darec recommend RUN
--all-users -o recs.csv`` (k=10) as its own process, loading included (the SASRec run; the
DARec run too with ``--darec-export``, ~22 minutes on Amazon Beauty on 2 cores). Errors (any
status but 200, or a failed connection) are counted, never hidden.

With ``--darec-int8`` the DARec run is served a second time with ``--quantize int8`` (small
calls read int8 weights), and the two are compared in this process on the same streamed
events: top-10 agreement, the largest score change, test NDCG@10 and each one's time per
event; ``--agreement-run`` adds that comparison on other (trained) DARec runs. With
``--lean-comparison`` the same comparison runs between DARec's lean inference forward (the
default) and transformers' own decoder layers (``darec.lean_inference=false``).

    python benchmarks/serving.py --sasrec-run runs/beauty-sasrec --darec-run runs/beauty-darec \
        --darec-int8 --darec-export
    python benchmarks/serving.py --quick     # ML-100K SASRec trained in a temp folder, < 1 min

Records go to ``benchmarks/results/serving.json`` (``--quick``: a temporary file, or
``--results``); top-level keys ``sasrec_p50_ms``, ``darec_p50_ms``, ``darec_stream_p50_ms``
(one client, the default exact server; the int8 server's in ``darec_stream_p50_ms_int8`` when
measured), ``darec_event_lean_speedup`` (with ``--lean-comparison``), ``errors`` (all levels,
both endpoints) and ``export_all_users_seconds`` (SASRec), then the machine (CPU model,
bf16/AMX flags, cores) and the per-level details.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from benchlib.machine import cpu_bf16_flags, cpu_model

import darec
from darec.run import RunFolder
from darec.run.checkpoint import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "serving.json"
EVENT_THREADS = 1
"""The DARec and SASRec servers' ``--event-threads`` (darec serve's default)."""
CLIENTS = (1, 8, 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``darec serve RUN`` in a child process on a free loopback port, stopped on exit."""

    def __init__(
        self,
        run: Path,
        device: str,
        threads: int,
        log: Path,
        quantize: str = "none",
        event_threads: int = 1,
    ) -> None:
        self.port = free_port()
        self.log = log.open("wb")
        env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
        command = [
            sys.executable, "-c", "from darec.cli import main; main()", "serve", str(run),
            "--port", str(self.port), "--device", device, "--threads", str(threads),
            "--quantize", quantize, "--event-threads", str(event_threads),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=self.log)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}; see its log")
            try:
                url = f"http://127.0.0.1:{self.port}/health"
                with urllib.request.urlopen(url, timeout=5) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not answer /health in 300 s") from None
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.log.close()


def drive(
    port: int, requests: list[tuple[str, dict]], clients: int, max_seconds: float
) -> dict[str, float | int]:
    """Send ``requests`` (path, JSON body) with ``clients`` threads, each on its own keep-alive
    connection, until all are sent or ``max_seconds`` have passed; latency percentiles in ms."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    cursor = iter(range(len(requests)))
    deadline = time.perf_counter() + max_seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json"}
        while time.perf_counter() < deadline:
            with lock:
                index = next(cursor, None)
            if index is None:
                break
            path, body = requests[index]
            start = time.perf_counter()
            try:
                conn.request("POST", path, json.dumps(body), headers)
                answer = conn.getresponse()
                answer.read()
                ok = answer.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            took = time.perf_counter() - start
            with lock:
                latencies.append(took)
                errors[0] += not ok
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99]) if len(ms) else (float("nan"),) * 3
    return {
        "clients": clients,
        "requests": len(ms),
        "errors": errors[0],
        "p50_ms": round(float(p50), 2),
        "p95_ms": round(float(p95), 2),
        "p99_ms": round(float(p99), 2),
        "requests_per_s": round(len(ms) / wall, 1),
        "seconds": round(wall, 2),
    }


def export_all_users(run: Path, device: str, folder: Path) -> dict[str, float | int]:
    """``darec recommend RUN --all-users`` (k=10) in its own process: wall seconds (loading
    the run and writing the CSV included) and rows written."""
    out = folder / f"recs-{run.name}.csv"
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    command = [
        sys.executable, "-c", "from darec.cli import main; main()", "recommend", str(run),
        "--all-users", "--output", str(out), "--k", "10", "--device", device,
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    with out.open(encoding="utf-8") as fh:
        rows = sum(1 for _ in fh) - 1  # the header
    out.unlink()
    return {"export_all_users_seconds": round(seconds, 2), "export_rows": rows}


def bench_run(
    run: Path,
    device: str,
    threads: int,
    per_client: int,
    floor: int,
    max_seconds: float,
    export: Path | None,
    quantize: str = "none",
) -> dict:
    """Both endpoints at every level of CLIENTS for one run; ``per_client * clients`` requests
    per level (at least ``floor``), each level cut at ``max_seconds``; then the export of every
    user into the folder ``export`` (None: no export). ``quantize``: the server's option."""
    folder = RunFolder.open(run)  # the ids only: the server loads the model
    users = list(folder.ids["user_ids"][1:])
    items = folder.item_ids[1:]
    rng = random.Random(0)
    record: dict = {"run": str(run), "model": folder.config.model.name, "server_threads": threads}
    record["server_event_threads"] = EVENT_THREADS
    record |= {"quantize": quantize, "items": len(items)}
    record |= {"users": len(users), "recommend": [], "stream": []}
    log = Path(tempfile.gettempdir()) / f"darec-serve-{os.getpid()}.log"
    with Server(run, device, threads, log, quantize, EVENT_THREADS) as server:
        for clients in CLIENTS:
            count = max(floor, per_client * clients)
            chosen = [rng.choice(users) for _ in range(count)]
            bodies = [("/recommend", {"user": u, "k": 10}) for u in chosen]
            record["recommend"].append(drive(server.port, bodies, clients, max_seconds))
        # streams: each user's first event starts their session (their whole history), so it
        # is sent beforehand; the measured events are the steps after it, a few per user
        for clients in CLIENTS:
            count = max(floor, per_client * clients)
            streamed = [f"bench-{clients}-{u}" for u in rng.sample(users, min(len(users), count))]
            start = [(f"/users/{u}/events", {"item": rng.choice(items), "k": 10}) for u in streamed]
            warm = drive(server.port, start, clients, max_seconds * 4)
            bodies = [
                (
                    f"/users/{streamed[i % len(streamed)]}/events",
                    {"item": rng.choice(items), "k": 10},
                )
                for i in range(count)
            ]
            level = drive(server.port, bodies, clients, max_seconds)
            level["start_errors"] = warm["errors"]
            level["start_p50_ms"] = warm["p50_ms"]
            record["stream"].append(level)
    if export is not None:
        record |= export_all_users(run, device, export)
    return record


VARIANTS = ("int8", "transformers")
"""What :func:`agreement` compares the default DARec with: its int8 serving copies
(``--quantize int8``), or transformers' own decoder layers instead of the lean inference forward
(``darec.lean_inference=false``, the reference the lean forward must equal)."""


def load_variant(run: Path, variant: str) -> darec.Recommender:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant == "int8":
        return darec.load(run, device="cpu", quantize="int8")
    rec = darec.load(run, device="cpu")
    rec.model.lean_inference = False  # type: ignore[assignment]
    return rec


def agreement(
    run: Path, users: int | None = None, variant: str = "int8"
) -> dict[str, float | int | str]:
    """The default (exact) DARec against ``variant`` (:data:`VARIANTS`) in this process, on the
    same streamed events. Each
    user (``users`` of them, a fixed draw; None: all) starts from their history less its last
    three items; the two before the test target are streamed (2 events), and after each both
    give their top-10. Reports how many of the ten agree, how often the lists are identical,
    the largest score change, the test NDCG@10 of each after the last event (full ranking,
    seen items excluded), and the p50 of one event (add + top-10) for each, timed alternately.
    A trained DARec may weigh its language-model term lightly, which hides the rounding in the
    scores; so the language model's own output state for each event (its final norm's output)
    is compared too: relative L2 error and cosine, the variant against exact."""
    exact = darec.load(run, device="cpu")
    other = load_variant(run, variant)
    states: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[..., None]:
        def hook(module: object, args: object, output: torch.Tensor) -> None:
            states[name] = output[0, -1].float()

        return hook

    for name, rec in (("exact", exact), (variant, other)):
        rec.model.llm.norm.register_forward_hook(keep(name))  # type: ignore[union-attr]
    errors, cosines = [], []
    ds = exact.dataset()
    chosen = list(ds.user_ids[1:])
    if users is not None and users < len(chosen):
        chosen = random.Random(1).sample(chosen, users)
    overlap, same, moved = [], 0, 0.0
    times: dict[str, list[float]] = {"exact": [], variant: []}
    gains: dict[str, list[float]] = {"exact": [], variant: []}
    for u in chosen:
        history = [exact.item_ids[i] for i in ds.sequence(ds.user_index(u))]
        start, events, target = history[:-3], history[-3:-1], history[-1]
        sessions = {"exact": exact.session(items=start), variant: other.session(items=start)}
        for item in events:
            tops = {}
            for name, session in sessions.items():
                began = time.perf_counter()
                session.add(item)
                tops[name] = session.top(10)
                times[name].append((time.perf_counter() - began) * 1000)
            a, b = tops["exact"], tops[variant]
            diff = (states[variant] - states["exact"]).norm() / states["exact"].norm()
            errors.append(float(diff))
            cosines.append(float(torch.cosine_similarity(states[variant], states["exact"], 0)))
            overlap.append(len({r.item for r in a} & {r.item for r in b}) / 10)
            same += [r.item for r in a] == [r.item for r in b]
            scores = {r.item: r.score for r in a}
            moved = max([moved] + [abs(r.score - scores[r.item]) for r in b if r.item in scores])
        for name, top in tops.items():  # after the last event: the test target's rank
            rank = next((r.rank for r in top if r.item == target), None)
            gains[name].append(0.0 if rank is None else 1 / float(np.log2(rank + 1)))
    return {
        "run": str(run),
        "variant": variant,
        "users": len(chosen),
        "events": len(overlap),
        "top10_overlap_mean": float(np.mean(overlap)),
        "top10_identical_share": same / len(overlap),
        "max_score_change": moved,
        "llm_state_relative_error_mean": float(np.mean(errors)),
        "llm_state_relative_error_max": float(np.max(errors)),
        "llm_state_cosine_min": float(np.min(cosines)),
        "test_ndcg10_exact": float(np.mean(gains["exact"])),
        f"test_ndcg10_{variant}": float(np.mean(gains[variant])),
        "exact_event_p50_ms": float(np.percentile(times["exact"], 50)),
        f"{variant}_event_p50_ms": float(np.percentile(times[variant], 50)),
    }


def quick_run(folder: Path) -> Path:
    """A small SASRec on MovieLens-100K (shipped in the recbole wheel), one epoch."""
    from darec.config import Config, apply_overrides
    from darec.experiment import run_experiment

    sets = [
        "data.format=movielens",
        f"cache_dir={folder / 'cache'}",
        "model.hidden_size=32",
        "model.max_seq_len=50",
        "train.epochs=1",
        "train.threads=1",
        "train.batch_size=512",
    ]
    run_experiment(apply_overrides(Config(), sets), folder / "run", test=False)
    return folder / "run"


def summary(records: dict[str, dict]) -> dict:
    def first(model: str, endpoint: str) -> float | None:
        record = records.get(model)
        return None if record is None else record[endpoint][0]["p50_ms"]

    errors = sum(
        level["errors"] + level.get("start_errors", 0)
        for record in records.values()
        for endpoint in ("recommend", "stream")
        for level in record[endpoint]
    )
    sasrec = records.get("sasrec")
    lean = (records.get("darec") or {}).get("lean_comparison")
    # DARec's streamed event as served by default (exact weights, the lean forward); the int8
    # server's beside it when measured
    return {
        "sasrec_p50_ms": first("sasrec", "recommend"),
        "darec_p50_ms": first("darec", "recommend"),
        "darec_stream_p50_ms": first("darec", "stream"),
        "darec_stream_quantize": "none",
        "darec_stream_p50_ms_exact": first("darec", "stream"),
        "darec_stream_p50_ms_int8": first("darec-int8", "stream"),
        "darec_int8_p50_ms": first("darec-int8", "recommend"),
        # in process, alternating on the same events: transformers' layers / the lean forward
        "darec_event_lean_speedup": (
            None
            if lean is None
            else round(lean["transformers_event_p50_ms"] / lean["exact_event_p50_ms"], 3)
        ),
        "errors": errors,
        "export_all_users_seconds": None if sasrec is None else sasrec["export_all_users_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sasrec-run", type=Path, help="a trained SASRec run folder")
    parser.add_argument("--darec-run", type=Path, help="a trained DARec run folder")
    parser.add_argument("--quick", action="store_true", help="ML-100K SASRec only, < 1 minute")
    parser.add_argument("--device", default="cpu", help="the server's device")
    parser.add_argument(
        "--sasrec-threads", type=int, default=1, help="the SASRec server's torch threads"
    )
    parser.add_argument(
        "--darec-threads", type=int, default=0, help="the DARec server's (0: all cores)"
    )
    parser.add_argument("--per-client", type=int, default=50, help="requests per client a level")
    parser.add_argument("--max-seconds", type=float, default=60, help="cut of one level")
    parser.add_argument(
        "--darec-export", action="store_true", help="time the DARec run's export too (slow)"
    )
    parser.add_argument(
        "--darec-int8",
        action="store_true",
        help="also serve the DARec run with --quantize int8 and compare it with the exact one",
    )
    parser.add_argument(
        "--agreement-run",
        type=Path,
        action="append",
        default=[],
        help="with --darec-int8: also compare exact and int8 on this (trained) DARec run",
    )
    parser.add_argument(
        "--lean-comparison",
        action="store_true",
        help="also compare the DARec run's lean inference forward with transformers' layers in "
        "this process (time per event and agreement)",
    )
    parser.add_argument("--results", type=Path, help="where to write (default: see above)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        runs: dict[str, Path] = {}
        if args.quick:
            runs["sasrec"] = quick_run(Path(scratch))
            per_client, floor, max_seconds = 5, 40, 8.0
            results = args.results or Path(tempfile.gettempdir()) / "darec-serving-quick.json"
        else:
            if args.sasrec_run is None or args.darec_run is None:
                parser.error("give --sasrec-run and --darec-run (or --quick)")
            runs = {"sasrec": args.sasrec_run, "darec": args.darec_run}
            if args.darec_int8:
                runs["darec-int8"] = args.darec_run
            per_client, floor, max_seconds = args.per_client, 200, args.max_seconds
            results = args.results or RESULTS
        threads = {"sasrec": args.sasrec_threads}
        threads |= {"darec": args.darec_threads, "darec-int8": args.darec_threads}
        exports = {"sasrec": True, "darec": args.darec_export, "darec-int8": False}
        records = {
            name: bench_run(
                run,
                args.device,
                threads[name],
                per_client,
                floor,
                max_seconds,
                Path(scratch) if exports[name] else None,
                "int8" if name == "darec-int8" else "none",
            )
            for name, run in runs.items()
        }
        if args.darec_int8:
            records["darec-int8"]["agreement"] = [
                agreement(run, 500) for run in [args.darec_run, *args.agreement_run]
            ]
        if args.lean_comparison and "darec" in records:
            records["darec"]["lean_comparison"] = agreement(args.darec_run, 500, "transformers")
    out = summary(records) | {
        "machine": {
            "cpu_model": cpu_model(),
            "cpu_bf16_amx_flags": cpu_bf16_flags(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "device": args.device,
        },
        "quick": args.quick,
        "runs": records,
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results, out)
    print(json.dumps(summary(records), indent=2))
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
