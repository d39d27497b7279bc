"""Device names: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``, resolved with clear errors.

The lowest layer that knows about hardware: models, the trainer and serving all resolve a
device name here, so none of them imports another for it."""

from __future__ import annotations

import re

import torch

from darec.errors import DarecError

__all__ = ["pick_device"]


def pick_device(name: str, what: str = "train.device") -> str:
    """A device name (``what`` names where it came from, for errors) resolved: ``auto`` is CUDA
    when available, else the CPU."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise DarecError(f"{what}={name!r}: expected cpu, cuda, cuda:N or auto")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DarecError(f"{what}={name!r} but no CUDA device is available; use 'cpu'")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise DarecError(
                f"{what}={name!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return name
