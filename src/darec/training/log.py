"""The training log of a run folder: ``log.jsonl``, one JSON object a line.

``{"event": "epoch", ...}`` after every epoch (mean training loss, learning rate, steps, seconds
of training so far) and ``{"event": "valid", ...}`` after every validation (its metrics). Every
line carries the global ``step`` it was written at, so a resumed run first drops the lines of
the steps it is about to redo (those after its last checkpoint) and the log reads as one run;
the epoch it resumes in is logged with the steps run after the resume (``steps`` of
``of_steps``).
``darec report RUN`` prints it and plots the curves.

With ``train.tensorboard`` the same records also go to TensorBoard event files under
``RUN/tensorboard/``: each number of a record is a scalar ``train/<key>`` (epoch records) or
``valid/<key>`` (validations) at its global step. A resumed run opens a new event file there and
hides the events after its checkpoint's step (TensorBoard's ``purge_step``), as it drops those
lines of ``log.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from darec.errors import DarecError

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["TrainingLog", "read_log", "plot_log", "TENSORBOARD_TAGS"]

TENSORBOARD_TAGS = {"epoch": "train", "valid": "valid"}
"""Log event -> the TensorBoard tag prefix of its values."""


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


def _summary_writer_class() -> type[SummaryWriter]:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DarecError(
            "train.tensorboard = true needs the tensorboard package, which is not installed: "
            "pip install 'darec[tensorboard]' (or set train.tensorboard = false)"
        ) from None
    return SummaryWriter


class TrainingLog:
    """Appends records to ``path`` (flushed at once: a crash loses nothing written), and to
    TensorBoard event files in ``tensorboard`` when given (call :meth:`close` at the end)."""

    def __init__(self, path: Path, tensorboard: Path | None = None) -> None:
        self.path = path
        self.tensorboard = tensorboard
        # checked now, so a missing package is reported before any training
        self._writer_class = None if tensorboard is None else _summary_writer_class()
        self._writer: SummaryWriter | None = None
        self._purge_from: int | None = None

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, allow_nan=True) + "\n")
        if self._writer_class is not None:
            self._write_tensorboard(record)

    def _write_tensorboard(self, record: dict[str, Any]) -> None:
        prefix = TENSORBOARD_TAGS.get(str(record.get("event")))
        if prefix is None or self._writer_class is None:
            return
        if self._writer is None:  # opened at the first record (after a resume's truncation)
            self._writer = self._writer_class(str(self.tensorboard), purge_step=self._purge_from)
        step = int(record.get("step", 0))
        for key, value in record.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and key not in ("event", "step"):
                self._writer.add_scalar(f"{prefix}/{key}", value, step)
        self._writer.flush()  # as log.jsonl: a crash loses nothing written

    def close(self) -> None:
        """Close the TensorBoard event file, if one is open."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def truncate_after(self, step: int) -> None:
        """Drop the records written after global step ``step`` (a resume redoes those steps)."""
        kept = [r for r in read_log(self.path) if int(r.get("step", 0)) <= step]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        tmp.replace(self.path)
        self.close()
        self._purge_from = step + 1  # TensorBoard hides the events from this step on


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
