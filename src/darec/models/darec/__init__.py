"""DARec, the LLM-based recommender: layout and masks, key/value plumbing, tasks, the model."""

from darec.models.darec.model import DARec

__all__ = ["DARec"]
