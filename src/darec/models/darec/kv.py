"""Two tiny stand-ins for a transformers ``Cache``, so the backbone's own attention can

- record each layer's keys/values while items are encoded (:class:`CaptureKV`), and
- put precomputed item keys/values in front of the stream tokens' own (:class:`PrefixKV`).

A decoder layer's attention calls ``cache.update(key, value, layer_idx, ...)`` with the new
tokens' keys/values (after RoPE) and attends over what it returns; nothing else of the cache
interface is used when the layers are driven one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["CaptureKV", "PrefixKV", "StreamKV", "gather_steps"]

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
    """Prepends ``prefix[idx] = (k, v)``, each (B, H_kv, P, head_dim), to a layer's keys/values.

    With ``keep`` the new tokens' keys/values are kept too: ``kept[idx] = (k, v)``."""

    def __init__(self, prefix: dict[int, KV], keep: bool = False) -> None:
        self.prefix = prefix
        self.keep = keep
        self.kept: dict[int, KV] = {}

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> KV:
        if self.keep:
            self.kept[layer_idx] = (key, value)
        pk, pv = self.prefix[layer_idx]
        return torch.cat([pk, key], dim=2), torch.cat([pv, value], dim=2)


class StreamKV:
    """One streamed user's keys/values per layer: its items' slots (gathered from the catalog
    cache) and its stream tokens so far. A new step's stream tokens attend to
    ``[item slots, earlier stream tokens, themselves]``; :meth:`update` appends their keys/values.

    :meth:`extend` returns a new object, so an earlier state stays usable (e.g. to branch)."""

    def __init__(self, items: dict[int, KV], item_valid: torch.Tensor, stream: dict[int, KV]):
        self.items = items  # idx -> (1, H, t * W, d)
        self.item_valid = item_valid  # (t * W,) bool
        self.stream = stream  # idx -> (1, H, S * t, d)
        # stream tokens before the step this object runs (update() appends to ``stream``)
        self.past = next(iter(stream.values()))[0].shape[2] if stream else 0

    @classmethod
    def from_prefix(cls, cache: PrefixKV, item_valid: torch.Tensor) -> StreamKV:
        """From the cache of a whole-history pass run with ``keep=True``."""
        return cls(dict(cache.prefix), item_valid, dict(cache.kept))

    def extend(
        self, item_kv: Callable[[int], KV], item: torch.Tensor, slot_valid: torch.Tensor
    ) -> StreamKV:
        """Add item ``item``'s slots, whose keys/values are ``item_kv(idx)[.][item]`` and whose
        validity is ``slot_valid`` (W,)."""
        items = {}
        for idx, (k, v) in self.items.items():
            ck, cv = item_kv(idx)  # (N + 1, H, W, d)
            items[idx] = (
                torch.cat([k, ck[item][None]], dim=2),
                torch.cat([v, cv[item][None]], dim=2),
            )
        return StreamKV(items, torch.cat([self.item_valid, slot_valid]), dict(self.stream))

    def mask(self, per_step: int) -> torch.Tensor:
        """(1, 1, S, keys) mask of a new step's S stream tokens."""
        device = self.item_valid.device
        own = torch.ones(per_step, per_step, dtype=torch.bool, device=device).tril()
        return torch.cat(
            [
                self.item_valid.expand(per_step, -1),
                torch.ones(per_step, self.past, dtype=torch.bool, device=device),
                own,
            ],
            dim=1,
        )[None, None]

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> KV:
        sk, sv = self.stream[layer_idx]
        sk, sv = torch.cat([sk, key], dim=2), torch.cat([sv, value], dim=2)
        self.stream[layer_idx] = (sk, sv)
        ik, iv = self.items[layer_idx]
        return torch.cat([ik, sk], dim=2), torch.cat([iv, sv], dim=2)


def gather_steps(kv: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Item keys or values (U, H, W, d) laid out per history step: (B, H, L * W, d).

    ``index`` (B, L) holds, for every step, the row of its item in ``kv``.
    """
    b, length = index.shape
    _, heads, width, dim = kv.shape
    out = kv[index]  # (B, L, H, W, d)
    return out.permute(0, 2, 1, 3, 4).reshape(b, heads, length * width, dim)
