"""The training log of a run folder: ``log.jsonl``, one JSON object a line.

``{"event": "epoch", ...}`` after every epoch (mean training loss, learning rate, steps, seconds
of training so far) and ``{"event": "valid", ...}`` after every validation (its metrics). Every
line carries the global ``step`` it was written at, so a resumed run first drops the lines of
the steps it is about to redo (those after its last checkpoint) and the log reads as one run;
the epoch it resumes in is logged with the steps run after the resume (``steps`` of
``of_steps``).
``darec report RUN`` prints it and plots the curves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["TrainingLog", "read_log", "plot_log"]


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl`` (an empty list if there is none); a line cut by a crash
    (the last one, not valid JSON) is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class TrainingLog:
    """Appends records to ``path`` (flushed at once: a crash loses nothing written)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, allow_nan=True) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop the records written after global step ``step`` (a resume redoes those steps)."""
        kept = [r for r in read_log(self.path) if int(r.get("step", 0)) <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        tmp.replace(self.path)


def plot_log(records: list[dict[str, Any]], path: Path, metric: str = "NDCG@10") -> None:
    """Two panels against the epoch: the mean training loss, and validation ``metric``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r for r in records if r.get("event") == "epoch"]
    valid = [r for r in records if r.get("event") == "valid" and metric in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot([r["epoch"] for r in epochs], [r["loss"] for r in epochs], marker=".")
    left.set(xlabel="epoch", ylabel="training loss (mean over the epoch)")
    right.plot([r["epoch"] for r in valid], [r[metric] for r in valid], marker=".")
    right.set(xlabel="epoch", ylabel=f"validation {metric}")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
