"""Two tiny stand-ins for a transformers ``Cache``, so the backbone's own attention can

- record each layer's keys/values while items are encoded (:class:`CaptureKV`), and
- put precomputed item keys/values in front of the stream tokens' own (:class:`PrefixKV`).

A decoder layer's attention calls ``cache.update(key, value, layer_idx, ...)`` with the new
tokens' keys/values (after RoPE) and attends over what it returns; nothing else of the cache
interface is used when the layers are driven one by one.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["CaptureKV", "PrefixKV", "gather_steps"]

KV = tuple[torch.Tensor, torch.Tensor]


class CaptureKV:
    """Returns keys/values unchanged and keeps them per layer: ``layers[idx] = (k, v)``."""

    def __init__(self) -> None:
        self.layers: dict[int, KV] = {}

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> KV:
        self.layers[layer_idx] = (key, value)
        return key, value


class PrefixKV:
    """Prepends ``prefix[idx] = (k, v)``, each (B, H_kv, P, head_dim), to a layer's keys/values."""

    def __init__(self, prefix: dict[int, KV]) -> None:
        self.prefix = prefix

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> KV:
        pk, pv = self.prefix[layer_idx]
        return torch.cat([pk, key], dim=2), torch.cat([pv, value], dim=2)


def gather_steps(kv: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Item keys or values (U, H, W, d) laid out per history step: (B, H, L * W, d).

    ``index`` (B, L) holds, for every step, the row of its item in ``kv``.
    """
    b, length = index.shape
    _, heads, width, dim = kv.shape
    out = kv[index]  # (B, L, H, W, d)
    return out.permute(0, 2, 1, 3, 4).reshape(b, heads, length * width, dim)
