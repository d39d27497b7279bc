"""Item sentences: each item's attributes as a short key-value text, tokenized for the backbone.

``title: OPI Nail Lacquer; brand: OPI; category: nail polish`` is truncated by tokens (never by
characters) to ``item_max_tokens``. Items without text get an empty row: DARec still represents
them by their collaborative token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from darec.errors import ConfigError, DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["check_fields", "item_sentence", "mean_word_states", "tokenize_catalog"]

_BATCH = 1024
"""Sentences per tokenizer call: large enough for the fast tokenizer's batching to pay off."""


def item_sentence(attributes: dict[str, str], fields: Sequence[str] = ()) -> str:
    """Key-value text of an item's ``fields`` in the given order (empty: all, in dict order).

    Missing and empty values are skipped, whitespace is collapsed, and ``_`` in a field name
    becomes a space (``release_year: 1995`` reads ``release year: 1995``).
    """
    keys = list(fields) if fields else list(attributes)
    parts = []
    for key in keys:
        value = " ".join(str(attributes.get(key, "")).split())
        if value:
            parts.append(f"{' '.join(key.replace('_', ' ').split())}: {value}")
    return "; ".join(parts)


def mean_word_states(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, D) float32 mean of each right-padded row of ``states`` (B, T, D) over its first
    ``lengths`` (B,) positions; rows of length 0 are zero."""
    valid = torch.arange(states.shape[1], device=states.device)[None] < lengths[:, None]
    total = (states.float() * valid[..., None]).sum(1)
    return total / lengths.clamp(min=1)[:, None].to(total.dtype)


def check_fields(catalog: list[dict[str, str]], fields: Sequence[str]) -> None:
    """Raise ConfigError naming the first of ``fields`` that no item of ``catalog`` has."""
    available: set[str] = set()
    for attributes in catalog:
        available.update(attributes)
    unknown = [f for f in fields if f not in available]
    if unknown:
        names = ", ".join(sorted(available)) or "none (the catalog has no item attributes)"
        raise ConfigError(
            f"item text field {unknown[0]!r} is not an attribute of any item; available: {names}"
        )


def tokenize_catalog(
    catalog: list[dict[str, str]],
    tokenizer: PreTrainedTokenizerBase,
    fields: Sequence[str],
    max_tokens: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of every item sentence, right-padded with 0, and their lengths.

    ``catalog[i]`` holds the attributes of internal item i; ``catalog[0]`` is padding. Returns
    ``tokens`` (N + 1, T) int64 and ``lengths`` (N + 1,) int64, where T <= ``max_tokens`` is the
    longest length actually used (0 if no item has text). Rows of items without text (and row 0)
    have length 0. No BOS/EOS tokens are added: the DARec layout adds its own special tokens.
    """
    if not catalog:
        raise DataError("the item catalog is empty; expected catalog[0] = {} (padding) and items")
    if max_tokens < 1:
        raise ConfigError(f"text.max_tokens = {max_tokens}; expected a positive number of tokens")
    check_fields(catalog, fields)
    sentences = [item_sentence(attributes, fields) for attributes in catalog]
    sentences[0] = ""  # padding never has text, whatever the caller put there
    with_text = [i for i, s in enumerate(sentences) if s]
    ids: list[list[int]] = []
    for start in range(0, len(with_text), _BATCH):
        batch = [sentences[i] for i in with_text[start : start + _BATCH]]
        encoded = tokenizer(
            batch, add_special_tokens=False, truncation=True, max_length=max_tokens
        )["input_ids"]
        # slicing again guards against tokenizers that ignore max_length for some inputs
        ids.extend(list(row[:max_tokens]) for row in encoded)
    lengths = np.zeros(len(catalog), dtype=np.int64)  # (N + 1,)
    lengths[with_text] = [len(row) for row in ids]
    tokens = np.zeros((len(catalog), int(lengths.max())), dtype=np.int64)  # (N + 1, T)
    for i, row in zip(with_text, ids, strict=True):
        tokens[i, : len(row)] = row
    return torch.from_numpy(tokens), torch.from_numpy(lengths)
