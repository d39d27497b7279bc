"""Where the project's caches live (never inside the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from darec.errors import ConfigError

__all__ = ["cache_dir"]


def cache_dir(configured: str = "") -> Path:
    """The cache folder: ``configured`` if set, else ``$DAREC_CACHE_DIR``, else the user cache."""
    chosen = configured or os.environ.get("DAREC_CACHE_DIR", "")
    path = Path(chosen).expanduser() if chosen else Path(platformdirs.user_cache_dir("darec"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        source = (
            "the cache_dir config key"
            if configured
            else "$DAREC_CACHE_DIR"
            if chosen
            else "the user cache folder"
        )
        raise ConfigError(
            f"cannot create the cache folder {path} ({source}): {exc.strerror or exc}; set "
            "cache_dir (or $DAREC_CACHE_DIR) to a writable folder"
        ) from exc
    return path
