"""DARec: LLM-based sequential recommendation with honest full-ranking evaluation.

``darec.load(run_dir)`` gives a :class:`~darec.serving.recommend.Recommender` for a trained run
folder (docs/api.md); the rest of the package is imported only when used, so ``import darec``
stays light."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from darec.serving.recommend import Recommender

try:
    __version__ = version("darec")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "load"]


def load(
    run_dir: str | Path,
    device: str | torch.device = "auto",
    data: str | None = None,
    item_file: str | None = None,
    allow_changed_data: bool = False,
    quantize: str = "none",
) -> Recommender:
    """A trained run folder ready to recommend on ``device`` (cpu, cuda, cuda:N or auto);
    ``data`` and ``item_file`` override where the run's data and item file are now (needed for
    known users and titles). Data that changed since training raises
    :class:`~darec.errors.DataError` when first read, unless ``allow_changed_data`` (a
    :class:`~darec.errors.DataWarning` then). ``quantize="int8"`` (CPU, DARec) makes a streamed
    event read int8 copies of the language model's weights: about 1.5x faster, scores move
    slightly (docs/serving.md)."""
    from darec.serving.recommend import Recommender

    return Recommender(run_dir, data, device, item_file, allow_changed_data, quantize)
