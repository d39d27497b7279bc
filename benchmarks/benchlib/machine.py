"""Facts about the machine a benchmark runs on."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import torch
import torch.nn.functional as F

SHAPES = [(13312, 576, 1536), (13312, 1536, 576), (13312, 576, 576), (4096, 4096, 4096)]
"""Matmul shapes (tokens, in, out): SmolLM2's MLP and attention projections over a DARec
batch's 13,312 tokens, and one large square product."""
QUICK_SHAPES = [(256, 64, 128)]
"""One small shape, for ``--quick`` runs."""


def rss_mb() -> float:
    """Peak resident memory of this process so far (max RSS), in MB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (``model name`` in ``cpuinfo``), else the platform's processor
    string (may be empty)."""
    import platform

    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def cpu_bf16_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's bf16 and AMX feature flags (e.g. ``avx512_bf16 amx_bf16 amx_tile``), space
    separated; empty where there are none or ``cpuinfo`` does not exist (not Linux)."""
    if not cpuinfo.exists():
        return ""
    line = next((x for x in cpuinfo.read_text().splitlines() if x.startswith("flags")), "")
    return " ".join(f for f in line.split() if "bf16" in f or f.startswith("amx"))


def gflops(m: int, k: int, n: int, dtype: torch.dtype, repeats: int = 5) -> float:
    """GFLOP/s of ``F.linear`` on (m, k) x (n, k) operands: the best of ``repeats`` timed calls
    after a warm-up call."""
    a, w = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
    F.linear(a, w)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        F.linear(a, w)
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9
