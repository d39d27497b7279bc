"""DARec: LLM-based sequential recommendation with honest full-ranking evaluation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("darec")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
