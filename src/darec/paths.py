"""Where the project's caches live (never inside the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["cache_dir"]


def cache_dir(configured: str = "") -> Path:
    """The cache folder: ``configured`` if set, else ``$DAREC_CACHE_DIR``, else the user cache."""
    chosen = configured or os.environ.get("DAREC_CACHE_DIR", "")
    path = Path(chosen).expanduser() if chosen else Path(platformdirs.user_cache_dir("darec"))
    path.mkdir(parents=True, exist_ok=True)
    return path
