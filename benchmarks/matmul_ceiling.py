"""Matrix-multiply ceilings of this machine in fp32 and bf16 (GFLOP/s), at DARec's shapes.

Times ``F.linear`` on SmolLM2-sized operands (13,312 tokens x 576 -> 1,536 and back, 576 ->
576) and one large square product, best of 5 after a warm-up, with ``--threads`` threads.
Writes ``benchmarks/results/matmul_ceiling.json``.

    python benchmarks/matmul_ceiling.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

RESULTS = Path(__file__).resolve().parent / "results" / "matmul_ceiling.json"
SHAPES = [(13312, 576, 1536), (13312, 1536, 576), (13312, 576, 576), (4096, 4096, 4096)]


def gflops(m: int, k: int, n: int, dtype: torch.dtype, repeats: int = 5) -> float:
    a, w = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
    F.linear(a, w)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        F.linear(a, w)
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        line = next((x for x in cpuinfo.read_text().splitlines() if x.startswith("flags")), "")
        flags = " ".join(f for f in line.split() if "bf16" in f or f.startswith("amx"))
    rows = [
        {"shape": list(shape), "dtype": name, "gflops": round(gflops(*shape, dtype), 1)}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
        for shape in SHAPES
    ]
    out = {"threads": args.threads, "cpu_bf16_flags": flags, "torch": torch.__version__}
    out["results"] = rows
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
