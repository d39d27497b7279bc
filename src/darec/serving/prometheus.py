"""Request counts and latencies of the HTTP server, written in the Prometheus text format."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping

__all__ = ["BUCKETS", "RequestMetrics"]

# latency histogram buckets (seconds): sub-millisecond ID models up to slow LLM cold starts
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class RequestMetrics:
    """Thread-safe counters: requests by method, endpoint (the route template, never the raw
    path, so ids do not explode the label set) and status, and a latency histogram per
    endpoint."""

    def __init__(self, buckets: tuple[float, ...] = BUCKETS, prefix: str = "darec") -> None:
        self.buckets = buckets
        self.prefix = prefix
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._hist: dict[str, list[int]] = {}  # per endpoint: one count per bucket (not cumulative)
        self._sum: dict[str, float] = {}
        self._total: dict[str, int] = {}

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        key = (method, endpoint, str(status))
        slot = bisect.bisect_left(self.buckets, seconds)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            hist = self._hist.setdefault(endpoint, [0] * (len(self.buckets) + 1))
            hist[slot] += 1
            self._sum[endpoint] = self._sum.get(endpoint, 0.0) + seconds
            self._total[endpoint] = self._total.get(endpoint, 0) + 1

    def render(self, gauges: Mapping[str, tuple[str, float]] | None = None) -> str:
        """The exposition text; ``gauges`` adds ``name -> (help, value)`` lines."""
        p = self.prefix
        lines = [
            f"# HELP {p}_requests_total HTTP requests by method, endpoint and status.",
            f"# TYPE {p}_requests_total counter",
        ]
        with self._lock:
            for (method, endpoint, status), n in sorted(self._counts.items()):
                labels = f'method="{method}",endpoint="{_label(endpoint)}",status="{status}"'
                lines.append(f"{p}_requests_total{{{labels}}} {n}")
            lines += [
                f"# HELP {p}_request_duration_seconds Time to answer a request, by endpoint.",
                f"# TYPE {p}_request_duration_seconds histogram",
            ]
            for endpoint, hist in sorted(self._hist.items()):
                name = f'endpoint="{_label(endpoint)}"'
                running = 0
                for bound, n in zip(self.buckets, hist, strict=False):
                    running += n
                    lines.append(
                        f'{p}_request_duration_seconds_bucket{{{name},le="{bound}"}} {running}'
                    )
                total = self._total[endpoint]
                lines.append(f'{p}_request_duration_seconds_bucket{{{name},le="+Inf"}} {total}')
                lines.append(
                    f"{p}_request_duration_seconds_sum{{{name}}} {self._sum[endpoint]:.6f}"
                )
                lines.append(f"{p}_request_duration_seconds_count{{{name}}} {total}")
        for name, (help_text, value) in sorted((gauges or {}).items()):
            lines += [f"# HELP {p}_{name} {help_text}", f"# TYPE {p}_{name} gauge"]
            lines.append(f"{p}_{name} {value:g}")
        return "\n".join(lines) + "\n"
