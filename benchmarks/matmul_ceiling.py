"""Matrix-multiply ceilings of this machine in fp32 and bf16 (GFLOP/s), at DARec's shapes.

Times ``F.linear`` on SmolLM2-sized operands (13,312 tokens x 576 -> 1,536 and back, 576 ->
576) and one large square product, best of 5 after a warm-up, with ``--threads`` threads.
Writes ``benchmarks/results/matmul_ceiling.json``.

    python benchmarks/matmul_ceiling.py --threads 2
    python benchmarks/matmul_ceiling.py --quick --out /tmp/m.json   # one small shape
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from benchlib.machine import QUICK_SHAPES, SHAPES, cpu_bf16_flags, gflops
from benchlib.paths import RESULTS_DIR
from benchlib.records import results_path, write_json

RESULTS = RESULTS_DIR / "matmul_ceiling.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help=f"default: {RESULTS}")
    parser.add_argument("--quick", action="store_true", help="smoke run: one small shape")
    args = parser.parse_args()
    out_path = results_path(args.out, RESULTS, args.quick)
    torch.set_num_threads(args.threads)
    rows = [
        {"shape": list(shape), "dtype": name, "gflops": round(gflops(*shape, dtype), 1)}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
        for shape in (QUICK_SHAPES if args.quick else SHAPES)
    ]
    out = {"threads": args.threads, "cpu_bf16_flags": cpu_bf16_flags(), "torch": torch.__version__}
    out["results"] = rows
    write_json(out_path, out)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
