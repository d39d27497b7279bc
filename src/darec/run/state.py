"""The trainer's progress: what a checkpoint's ``state.json`` carries under ``"trainer"``.

:meth:`TrainerState.to_dict` writes the same JSON object as the dict the trainer kept before this
class existed (same keys, same order, same values), and :meth:`TrainerState.from_dict` reads the
ones written by every earlier version: ``best_step`` and ``saves`` came later and may be absent.
A key it does not know is refused, since resuming would silently drop what it meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from darec.errors import CheckpointError

__all__ = ["TrainerState"]

# present in every checkpoint ever written; the other fields may be missing from older ones
_REQUIRED = (
    "epoch",
    "step_in_epoch",
    "global_step",
    "best_metric",
    "best_epoch",
    "bad_evals",
    "elapsed",
    "history",
    "stopped",
)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# what each key of a checkpoint's trainer state may hold, and how an error says so
_TYPES: dict[str, Any] = {
    "epoch": _count,
    "step_in_epoch": _count,
    "global_step": _count,
    "best_metric": lambda v: v is None or _number(v),
    "best_epoch": _count,
    "best_step": lambda v: v is None or _count(v),
    "bad_evals": _count,
    "elapsed": lambda v: _number(v) and v >= 0,
    "history": lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v),
    "stopped": lambda v: v is None or isinstance(v, str),
    "saves": _count,
}
_EXPECTED = {key: "an integer >= 0" for key in _TYPES} | {
    "best_metric": "a number or null",
    "best_step": "an integer >= 0 or null",
    "elapsed": "a number >= 0",
    "history": "a list of objects",
    "stopped": "a string or null",
}


@dataclass
class TrainerState:
    """Where training stands; enough (with weights, optimizer and RNG) to resume exactly."""

    epoch: int = 0
    """Completed epochs (a partial one cut by the time limit counts)."""
    step_in_epoch: int = 0
    """Completed steps of the current epoch."""
    global_step: int = 0
    best_metric: float | None = None
    """Best validation ``eval.select_metric`` so far; ``None`` before the first validation."""
    best_epoch: int = 0
    best_step: int | None = 0
    """Global step of the best validation; ``None`` for runs saved before it was recorded."""
    bad_evals: int = 0
    """Validations in a row without improvement (for ``train.patience``)."""
    elapsed: float = 0.0
    """Training seconds over every session of the run (what the time limit counts)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """One record per validation: epoch, step, metrics (and ``partial_epoch`` when true)."""
    stopped: str | None = None
    """Why training ended (``early_stopping``, ``time_limit``); ``None`` while it goes on."""
    saves: int = 0
    """Checkpoints written so far (part of each checkpoint's folder name)."""

    def best_metrics(self) -> dict[str, float]:
        """The metrics of the selected (best) validation; the last one's if it is not in the
        history (runs saved before ``best_step`` existed match on the epoch alone); empty
        before any validation."""
        best = next(
            (
                h
                for h in reversed(self.history)
                if h["epoch"] == self.best_epoch
                and (self.best_step is None or h["step"] == self.best_step)
            ),
            self.history[-1] if self.history else {},
        )
        return {k: v for k, v in best.items() if "@" in k}

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored in checkpoints (``best_step`` left out when unknown, as the
        older runs it comes from wrote it)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.best_step is None:
            del out["best_step"]
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = "trainer state") -> TrainerState:
        """Read what :meth:`to_dict` wrote (``source`` names it in errors)."""
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(
                f"{source}: unknown trainer state key(s) {unknown} (written by a newer darec?); "
                f"expected only {sorted(known)}"
            )
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise CheckpointError(f"{source}: trainer state lacks {missing}; is it truncated?")
        for key, value in data.items():
            if not _TYPES[key](value):
                raise CheckpointError(
                    f"{source}: trainer state {key!r} should be {_EXPECTED[key]}, got {value!r}; "
                    "was the file edited?"
                )
        # absent best_step: the run predates it, and its best validation is found by epoch alone
        return cls(**{"best_step": None, **data})
