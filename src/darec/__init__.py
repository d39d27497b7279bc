"""DARec: LLM-based sequential recommendation with honest full-ranking evaluation.

``darec.load(run_dir)`` gives a :class:`~darec.serving.recommend.Recommender` for a trained run
folder (docs/api.md); the rest of the package is imported only when used, so ``import darec``
stays light."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from darec.serving.recommend import Recommender

try:
    __version__ = version("darec")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "load"]


def load(run_dir: str | Path, device: str = "auto", data: str | None = None) -> Recommender:
    """A trained run folder ready to recommend on ``device`` (cpu, cuda, cuda:N or auto);
    ``data`` overrides where the run's data is now (needed for known users and titles)."""
    from darec.serving.recommend import Recommender

    return Recommender(run_dir, data, device)
