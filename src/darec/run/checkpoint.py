"""Checkpoints: safetensors for tensors, JSON for everything else, atomic writes, no pickle.

A run folder looks like::

    run/
      config.json        the full Config
      ids.json           external user and item ids (index = internal id)
      data.json          the data files read and the counts after filtering (fingerprint.py)
      metrics.json       final valid/test metrics, seed, versions, commit
      checkpoints/
        pointers.json    {"last": "step-00001234-0041", "best": "step-00000980-0033"}
        step-00001234-0041/   model.safetensors, optimizer.safetensors, state.json

Each checkpoint folder gets a new name (global step and a save counter), is written and fsynced
under a temporary name and renamed into place; the pointer file is replaced atomically afterwards
and only then are unreferenced folders removed, so a crash at any moment leaves the previous
checkpoint usable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

import darec
from darec.errors import CheckpointError
from darec.run.state import TrainerState

__all__ = [
    "atomic_write_json",
    "read_json",
    "provenance",
    "CheckpointState",
    "save_checkpoint",
    "load_checkpoint",
    "read_trainer_state",
    "checkpoint_path",
    "optimizer_to_flat",
    "optimizer_from_flat",
]


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, sort_keys=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """A run file's JSON; missing, unreadable, non-UTF-8 or invalid JSON is a CheckpointError."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except UnicodeDecodeError as exc:
        raise CheckpointError(
            f"{path} is not valid JSON: byte {exc.start} is not UTF-8; was the file damaged?"
        ) from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read: {exc.strerror or exc}") from None


def provenance() -> dict[str, str]:
    """Package version, git commit of the source tree (``+dirty`` if the package's source has
    uncommitted changes), torch and Python versions."""
    commit = "unknown"
    src = Path(darec.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5
        )
        if out.returncode == 0:
            commit = out.stdout.strip()
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                cwd=src,
                capture_output=True,
                text=True,
                timeout=5,
            )
            if dirty.stdout.strip():
                commit += "+dirty"  # the source differs from the commit
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "darec": darec.__version__,
        "commit": commit,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }


# ------------------------------------------------------------------------- optimizer state


def optimizer_to_flat(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into tensors and JSON-able structure."""
    tensors: dict[str, torch.Tensor] = {}
    per_param: dict[str, dict[str, Any]] = {}
    for idx, slots in state["state"].items():
        plain: dict[str, Any] = {}
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{name}"] = value.detach().contiguous()
                plain[name] = {"tensor": f"{idx}.{name}"}
            else:
                plain[name] = value
        per_param[str(idx)] = plain
    groups = [
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
        for g in state["param_groups"]
    ]
    return tensors, {"state": per_param, "param_groups": groups}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for idx, slots in meta["state"].items():
        state[int(idx)] = {
            name: tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v
            for name, v in slots.items()
        }
    groups = [
        {k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


# ------------------------------------------------------------------------------ checkpoints


@dataclass
class CheckpointState:
    """Everything needed to continue training exactly where it stopped."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    scheduler: dict[str, Any] | None
    rng: torch.Tensor
    trainer: TrainerState
    """Epoch, step inside the epoch, global step, best metric, patience counter..."""
    cuda_rng: torch.Tensor | None = None
    """The CUDA generator's state when training on a GPU (dropout and sampling draw from it)."""


def _pointers(run_dir: Path) -> dict[str, str]:
    path = run_dir / "checkpoints" / "pointers.json"
    return read_json(path) if path.exists() else {}


def checkpoint_path(run_dir: Path, which: str = "best") -> Path:
    """Folder of the ``best`` or ``last`` checkpoint of a run."""
    pointers = _pointers(run_dir)
    if which not in pointers:
        raise CheckpointError(
            f"{run_dir} has no {which!r} checkpoint (expected {run_dir}/checkpoints/pointers.json "
            "naming one; was the run trained with `darec train`?)"
        )
    return run_dir / "checkpoints" / pointers[which]


def save_checkpoint(run_dir: Path, name: str, state: CheckpointState, is_best: bool) -> Path:
    """Write checkpoint ``name`` atomically and make it ``last`` (and ``best`` if ``is_best``)."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    try:
        save_file(
            {k: v.detach().contiguous() for k, v in state.model.items()},
            str(tmp / "model.safetensors"),
        )
        extra: dict[str, Any] = {"trainer": state.trainer.to_dict(), "scheduler": state.scheduler}
        opt_tensors: dict[str, torch.Tensor] = {"rng.torch": state.rng}
        if state.cuda_rng is not None:
            opt_tensors["rng.cuda"] = state.cuda_rng
        if state.optimizer is not None:
            flat, meta = optimizer_to_flat(state.optimizer)
            opt_tensors.update({f"optim.{k}": v for k, v in flat.items()})
            extra["optimizer"] = meta
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(
            json.dumps(extra, indent=2, allow_nan=False), encoding="utf-8"
        )
        for written in tmp.iterdir():
            with open(written, "rb") as fh:
                os.fsync(fh.fileno())
        final = root / name
        if final.exists():
            if name in _pointers(run_dir).values():
                raise CheckpointError(f"{final} exists and is in use; checkpoint names must be new")
            shutil.rmtree(final)  # left by a crash before its pointer was written
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointers = _pointers(run_dir)
    pointers["last"] = name
    if is_best or "best" not in pointers:
        pointers["best"] = name
    atomic_write_json(root / "pointers.json", pointers)
    keep = {pointers["last"], pointers["best"]}
    for old in root.iterdir():
        if old.is_dir() and old.name not in keep and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)
    return root / name


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a missing or damaged file is a CheckpointError."""
    if not path.exists():
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error type for damaged files
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({exc}): the checkpoint is damaged; "
            "evaluate the run's other checkpoint or train again"
        ) from None


def _read_state_json(folder: Path) -> tuple[dict[str, Any], TrainerState]:
    """A checkpoint's ``state.json`` and the trainer's progress in it."""
    path = folder / "state.json"
    extra = read_json(path)
    if not isinstance(extra, dict) or "trainer" not in extra:
        raise CheckpointError(f"{path} has no 'trainer' entry")
    return extra, TrainerState.from_dict(extra["trainer"], source=str(path))


def read_trainer_state(folder: Path) -> TrainerState:
    """The trainer's progress saved in a checkpoint folder, without reading any tensor."""
    return _read_state_json(folder)[1]


def load_checkpoint(folder: Path, with_training_state: bool = True) -> CheckpointState:
    """Read a checkpoint folder written by :func:`save_checkpoint`."""
    model = _read_tensors(folder / "model.safetensors")
    if not with_training_state:
        return CheckpointState(model, None, None, torch.empty(0, dtype=torch.uint8), TrainerState())
    extra, trainer = _read_state_json(folder)
    tensors = _read_tensors(folder / "optimizer.safetensors")
    if "rng.torch" not in tensors:
        raise CheckpointError(f"{folder / 'optimizer.safetensors'} has no 'rng.torch' tensor")
    optimizer = None
    if "optimizer" in extra:
        flat = {k[len("optim.") :]: v for k, v in tensors.items() if k.startswith("optim.")}
        try:
            optimizer = optimizer_from_flat(flat, extra["optimizer"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(
                f"{folder}: the optimizer state in state.json and optimizer.safetensors do "
                f"not match ({type(exc).__name__}: {exc})"
            ) from None
    return CheckpointState(
        model=model,
        optimizer=optimizer,
        scheduler=extra.get("scheduler"),
        rng=tensors["rng.torch"],
        trainer=trainer,
        cuda_rng=tensors.get("rng.cuda"),
    )
