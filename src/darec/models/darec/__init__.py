"""DARec, the LLM-based recommender: layout and masks (layout), key/value plumbing (kv), tasks
(losses), the module (model), and what it needs to train and serve (runtime, catalog)."""

from darec.models.darec.model import DARecModel
from darec.models.darec.runtime import DARec

__all__ = ["DARec", "DARecModel"]
