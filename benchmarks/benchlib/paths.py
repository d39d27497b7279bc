"""Where the benchmarks find their data and write their results."""

from __future__ import annotations

import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root."""
RESULTS_DIR = ROOT / "benchmarks" / "results"
"""The recorded results (JSON); ``--quick`` runs never write here."""
DOC = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
SHARED_DATA = ROOT.parent / "shared" / "data"
"""Benchmark data shared between checkouts (not in the repository)."""
BEAUTY = SHARED_DATA / "amazon-beauty"
QUICK_RESULTS = Path(tempfile.gettempdir()) / "darec-bench-quick"
"""Where a ``--quick`` run's record goes unless the command names a file."""
