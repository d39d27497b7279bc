"""Does torch.compile pay for DARec's training step? Eager against compiled, compile time counted.

    python benchmarks/compile_bench.py            # Beauty titles, the demo's 8-layer backbone

Each mode runs in its own process (a fresh compile cache; ``TORCHINDUCTOR_CACHE_DIR`` points
to a new temporary folder) on the same batches: the demo's layout (adapters in the top two of 8
layers), bf16, 4 sequences of 50 items drawn by Beauty's item popularity. Writes
``benchmarks/results/compile.json``: per-step seconds of each mode, the first (compiling) step,
the steady-state speed-up and the number of steps after which compiling has paid for itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "compile.json"


def one(mode: str, steps: int) -> list[float]:
    from throughput import BEAUTY, Bench, fill_frozen_cache

    torch.set_num_threads(2)
    args = argparse.Namespace(data=str(BEAUTY) if BEAUTY.exists() else "", layers=8, item_tokens=32)
    bench = Bench(args)
    batches = [bench.batch(seed, 4, 50) for seed in range(steps)]
    extra = {"compile": "inductor"} if mode == "compiled" else {}
    cfg = bench.config("bf16", adapters="none*6,serial:16*2", **extra)
    model = bench.model(cfg)
    fill_frozen_cache(model, batches)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    times = []
    for b in batches:
        start = time.perf_counter()
        loss = model.loss(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(round(time.perf_counter() - start, 3))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.steps)))
        return
    out: dict = {"steps": args.steps, "torch": torch.__version__}
    for mode in ("eager", "compiled"):
        with tempfile.TemporaryDirectory() as cache:
            env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": cache}
            cmd = [sys.executable, __file__, "--steps", str(args.steps), "--one", mode]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    eager = statistics.median(out["eager"][1:])
    compiled = statistics.median(out["compiled"][1:])
    extra = out["compiled"][0] - out["eager"][0]
    out["steady_speedup"] = round(eager / compiled, 3)
    saved = eager - compiled
    out["break_even_steps"] = round(extra / saved) if saved > 0 else None
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
