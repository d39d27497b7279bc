"""Does torch.compile pay for DARec's training step? Eager against compiled, compile time counted.

    python benchmarks/compile_bench.py            # Beauty titles, the demo's 8-layer backbone
    python benchmarks/compile_bench.py --quick --out /tmp/c.json   # smoke run: tiny, eager

Each mode runs in its own process (a fresh compile cache; ``TORCHINDUCTOR_CACHE_DIR`` points
to a new temporary folder) on the same batches: the demo's layout (adapters in the top two of 8
layers), bf16, 4 sequences of 50 items drawn by Beauty's item popularity. Writes
``benchmarks/results/compile.json``: per-step seconds of each mode, the first (compiling) step,
the steady-state speed-up and the number of steps after which compiling has paid for itself.
The quick mode compiles with the ``eager`` backend (dynamo alone: no C++ compiler, seconds not
minutes) on the tiny data and LLM, two steps per mode.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from typing import Any

import torch
from benchlib.darec_steps import Bench, adamw, fill_frozen_cache, train_step
from benchlib.paths import BEAUTY, RESULTS_DIR
from benchlib.quick import add_quick_args, with_quick_sets
from benchlib.records import add_child_args, child_json, child_main, results_path, write_json

RESULTS = RESULTS_DIR / "compile.json"


def one(mode: str, steps: int, backend: str, sets: list[str]) -> list[float]:
    """Child process: seconds of each of ``steps`` training steps, the first one included."""
    torch.set_num_threads(2)
    args = argparse.Namespace(data=str(BEAUTY) if BEAUTY.exists() else "", layers=8, item_tokens=32)
    bench = Bench(args, sets)
    batches = [bench.batch(seed, 4, bench.length) for seed in range(steps)]
    extra = {"compile": backend} if mode == "compiled" else {}
    cfg = bench.config("bf16", adapters="none*6,serial:16*2", **extra)
    model = bench.model(cfg)
    fill_frozen_cache(model, batches)
    opt = adamw(model)
    model.train()
    return [round(train_step(model, opt, b), 3) for b in batches]


def measure(steps: int, backend: str, sets: list[str]) -> dict[str, Any]:
    """Both modes, each in its own child process with a fresh compile cache."""
    out: dict[str, Any] = {"steps": steps, "torch": torch.__version__}
    for mode in ("eager", "compiled"):
        with tempfile.TemporaryDirectory() as cache:
            env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": cache}
            cmd = [sys.executable, __file__, "--steps", str(steps), "--backend", backend]
            cmd += [f"--set={s}" for s in sets]
            out[mode] = child_json([*cmd, "--one", mode], env)
    eager = statistics.median(out["eager"][1:])
    compiled = statistics.median(out["compiled"][1:])
    extra = out["compiled"][0] - out["eager"][0]
    out["steady_speedup"] = round(eager / compiled, 3)
    saved = eager - compiled
    out["break_even_steps"] = round(extra / saved) if saved > 0 else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    add_quick_args(parser, RESULTS, "tiny data and LLM, 2 steps, eager backend")
    add_child_args(parser)
    args = parser.parse_args()
    if child_main(args, lambda: one(args.one, args.steps, args.backend, args.set)):
        return
    out_path = results_path(args.out, RESULTS, args.quick)
    steps, backend = (2, "eager") if args.quick else (args.steps, args.backend)
    out = with_quick_sets(args.quick, lambda sets: measure(steps, backend, sets))
    write_json(out_path, out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
