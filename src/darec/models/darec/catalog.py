"""The catalog cache: every item's keys/values and scoring vector, computed once for inference.

With context masking an item's token states depend on nothing but the item (docs/design.md,
"Item-local positions"). So after training, every item's
``[CF, words, ALIGN]`` slots are encoded once and their keys/values at each layer from the entry
layer up are kept; a user then costs only its stream (SEQ) tokens, which attend to the gathered
keys/values of its history, and the whole catalog is scored with one matrix product against
:attr:`CatalogKV.vectors`.

The cache is saved beside a checkpoint as safetensors (see :mod:`darec.serving.inference_cache`).
Its size is ``layers x (N + 1) x W x kv_heads x head_dim x 2`` values in the backbone dtype
(W = T + 2 slots per item, T word columns; see layout.py); ``darec.catalog_cache_mb`` bounds it
(past the bound only the vectors are cached).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from darec.errors import CheckpointError

__all__ = ["CatalogKV"]


@dataclass
class CatalogKV:
    """Keys and values (L_c, N + 1, H_kv, W, d) of the cached layers and vectors (N + 1, R).

    ``keys``/``values`` are None when only the scoring vectors are cached; ``first_layer`` is the
    index of the first cached decoder layer (the entry layer of the trainable tokens)."""

    vectors: torch.Tensor
    first_layer: int
    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None

    @property
    def has_kv(self) -> bool:
        return self.keys is not None and self.values is not None

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (N + 1, H_kv, W, d) of decoder layer ``index``."""
        assert self.keys is not None and self.values is not None
        return self.keys[index - self.first_layer], self.values[index - self.first_layer]

    @property
    def nbytes(self) -> int:
        parts = [self.vectors, self.keys, self.values]
        return sum(t.numel() * t.element_size() for t in parts if t is not None)

    def to(self, device: torch.device) -> CatalogKV:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return CatalogKV(
            self.vectors.to(device), self.first_layer, move(self.keys), move(self.values)
        )

    def save(self, path: Path, fingerprint: str) -> None:
        """Write atomically (a temporary file renamed into place)."""
        tensors = {"vectors": self.vectors.contiguous()}
        if self.keys is not None and self.values is not None:
            tensors |= {"keys": self.keys.contiguous(), "values": self.values.contiguous()}
        meta = {"first_layer": str(self.first_layer), "fingerprint": fingerprint}
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> CatalogKV:
        """Read a saved cache; raise :class:`CheckpointError` if it belongs to other weights."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if meta.get("fingerprint") != fingerprint:
            raise CheckpointError(
                f"{path} was computed from other weights (fingerprint "
                f"{meta.get('fingerprint')!r}, expected {fingerprint!r})"
            )
        tensors = load_file(str(path))
        return cls(
            tensors["vectors"],
            int(meta["first_layer"]),
            tensors.get("keys"),
            tensors.get("values"),
        )
