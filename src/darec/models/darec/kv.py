"""Two tiny stand-ins for a transformers ``Cache``, so the backbone's own attention can

- record each layer's keys/values while items are encoded (:class:`CaptureKV`), and
- put precomputed item keys/values in front of the stream tokens' own (:class:`PrefixKV`).

A decoder layer's attention calls ``cache.update(key, value, layer_idx, ...)`` with the new
tokens' keys/values (after RoPE) and attends over what it returns; nothing else of the cache
interface is used when the layers are driven one by one.

Shapes: W = T + 2 is the number of slots of one item, ``[CF, w_1..w_T, ALIGN]`` (see layout.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["CaptureKV", "PrefixKV", "StreamKV", "gather_steps"]

KV = tuple[torch.Tensor, torch.Tensor]


class CaptureKV:
    """Returns keys/values unchanged and records them per layer; after :meth:`seal`,
    ``layers[idx] = (k, v)`` over all rows.

    Rows may arrive in chunks (``rows``, in order; see DARec._upper_layers); a sealed record
    ignores further updates, such as the recomputation of a checkpointed chunk in the backward
    pass."""

    def __init__(self) -> None:
        self.parts: dict[int, list[KV]] = {}
        self.layers: dict[int, KV] = {}
        self.sealed = False

    def update(
        self,
        key: torch.Tensor,
        value: torch.Tensor,
        layer_idx: int,
        *args: Any,
        rows: slice | None = None,
        **kwargs: Any,
    ) -> KV:
        if not self.sealed:
            if rows is None or not rows.start:
                self.parts[layer_idx] = []
            self.parts[layer_idx].append((key, value))
        return key, value

    def seal(self) -> CaptureKV:
        for idx, parts in self.parts.items():
            if len(parts) == 1:
                self.layers[idx] = parts[0]
            else:
                self.layers[idx] = (
                    torch.cat([k for k, _ in parts]),
                    torch.cat([v for _, v in parts]),
                )
        self.parts.clear()
        self.sealed = True
        return self


class PrefixKV:
    """Prepends the keys/values of each history step's item to a layer's keys/values.

    ``item_kv(idx) -> (K, V)``, each (U, H_kv, W, head_dim), holds layer ``idx``'s item
    keys/values; ``index`` (B, L) the row of every step's item in them. A layer's prefix (B,
    H_kv, L * W, head_dim) is gathered when that layer runs, for the rows it runs (``rows``,
    when the batch runs in chunks), so one layer's prefix is held at a time, not every layer's.

    With ``keep`` the prefixes and the new tokens' keys/values are kept: ``prefix[idx]`` and
    ``kept[idx]`` (whole batches only)."""

    def __init__(
        self, item_kv: Callable[[int], KV], index: torch.Tensor, keep: bool = False
    ) -> None:
        self.item_kv, self.index = item_kv, index
        self.keep = keep
        self.prefix: dict[int, KV] = {}
        self.kept: dict[int, KV] = {}

    def update(
        self,
        key: torch.Tensor,
        value: torch.Tensor,
        layer_idx: int,
        *args: Any,
        rows: slice | None = None,
        **kwargs: Any,
    ) -> KV:
        ck, cv = self.item_kv(layer_idx)
        index = self.index if rows is None else self.index[rows]
        pk, pv = gather_steps(ck, index), gather_steps(cv, index)
        if self.keep:
            if rows is not None:
                raise ValueError("PrefixKV(keep=True) needs the whole batch in one pass")
            self.prefix[layer_idx] = (pk, pv)
            self.kept[layer_idx] = (key, value)
        return torch.cat([pk, key], dim=2), torch.cat([pv, value], dim=2)


class _Tape:
    """An append-only key or value buffer (1, H, capacity, d) that stream states share.

    ``written`` is how far any state has written. A state whose own length equals it appends in
    place; one that branched from an earlier point copies its part first, so what another state
    has already read is never overwritten."""

    def __init__(self, data: torch.Tensor, written: int) -> None:
        self.data, self.written = data, written

    @classmethod
    def of(cls, tokens: torch.Tensor, room: int = 0) -> _Tape:
        """A tape holding ``tokens`` (1, H, m, d), with space for ``room`` more."""
        if not room:
            return cls(tokens, tokens.shape[2])
        b, heads, m, dim = tokens.shape
        data = tokens.new_empty(b, heads, m + room, dim)
        data[:, :, :m] = tokens
        return cls(data, m)

    def append(self, length: int, tokens: torch.Tensor) -> _Tape:
        """The tape holding this tape's first ``length`` tokens then ``tokens`` (1, H, m, d):
        this one (written in place) when nobody wrote past ``length`` and it has room."""
        end = length + tokens.shape[2]
        tape = self
        if self.written != length or end > self.data.shape[2]:
            b, heads, _, dim = self.data.shape
            data = self.data.new_empty(b, heads, max(2 * end, 64), dim)
            data[:, :, :length] = self.data[:, :, :length]
            tape = _Tape(data, length)
        tape.data[:, :, length:end] = tokens
        tape.written = end
        return tape


class StreamKV:
    """One streamed user's keys/values per layer: the valid slots of its items (gathered from
    the catalog cache) and its stream tokens so far, in one append-only buffer per layer.

    A new step's stream tokens attend to everything before them and to themselves (causally
    when a step has several), so only valid keys are kept and their order does not matter
    (positions are already in the keys through RoPE). Appending costs a copy of the new tokens
    only; :meth:`extend` returns a new state and leaves the old one usable (e.g. to branch)."""

    def __init__(self, tapes: dict[int, tuple[_Tape, _Tape]], length: int) -> None:
        self.tapes = tapes
        self.length = length  # keys before the step this object runs
        self.step_tokens = 0  # stream tokens of this step, appended by update()

    @classmethod
    def from_prefix(
        cls, cache: PrefixKV, item_valid: torch.Tensor, stream_valid: torch.Tensor, room: int = 0
    ) -> StreamKV:
        """From the cache of a whole-history pass run with ``keep=True``; ``item_valid``
        (t * W,) and ``stream_valid`` (t * S,) say which of its item and stream keys count.
        ``room``: keys the buffers have space for beyond those, so that the first steps append
        in place (a fresh buffer costs page faults as well as the copy: ~0.15 ms a layer's
        keys or values on the serving run)."""
        tapes, length = {}, 0
        for idx, (pk, pv) in cache.prefix.items():
            sk, sv = cache.kept[idx]
            k = torch.cat([pk[:, :, item_valid], sk[:, :, stream_valid]], dim=2)
            v = torch.cat([pv[:, :, item_valid], sv[:, :, stream_valid]], dim=2)
            tapes[idx], length = (_Tape.of(k, room), _Tape.of(v, room)), k.shape[2]
        return cls(tapes, length)

    def extend(
        self, item_kv: Callable[[int], KV], item: torch.Tensor, slot_valid: torch.Tensor
    ) -> StreamKV:
        """Add item ``item``'s valid slots: ``item_kv(idx)[.][item]`` where ``slot_valid`` (W,)."""
        tapes, added = {}, 0
        slots = slot_valid.nonzero().flatten()  # once, not per layer
        for idx, (tk, tv) in self.tapes.items():
            ck, cv = item_kv(idx)  # (N + 1, H, W, d)
            k = ck[item].index_select(1, slots)[None]
            v = cv[item].index_select(1, slots)[None]
            tapes[idx] = (tk.append(self.length, k), tv.append(self.length, v))
            added = k.shape[2]
        return StreamKV(tapes, self.length + added)

    def mask(self, per_step: int) -> torch.Tensor:
        """(1, 1, S, keys) mask of a new step's S stream tokens: every kept key, and their own
        keys causally. (Even when it is all true it is passed: without a mask transformers
        picks SDPA's grouped-query mode, several times slower on the CPU for one query.)"""
        device = next(iter(self.tapes.values()))[0].data.device if self.tapes else None
        own = torch.ones(per_step, per_step, dtype=torch.bool, device=device).tril()
        seen = torch.ones(per_step, self.length, dtype=torch.bool, device=device)
        return torch.cat([seen, own], dim=1)[None, None]

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> KV:
        tk, tv = self.tapes[layer_idx]
        tk, tv = tk.append(self.length, key), tv.append(self.length, value)
        self.tapes[layer_idx] = (tk, tv)
        self.step_tokens = key.shape[2]
        end = self.length + key.shape[2]
        return tk.data[:, :, :end], tv.data[:, :, :end]

    def advanced(self) -> StreamKV:
        """The state after this step: its stream tokens count as keys of the next one."""
        return StreamKV(dict(self.tapes), self.length + self.step_tokens)


def gather_steps(kv: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Item keys or values (U, H, W, d) laid out per history step: (B, H, L * W, d).

    ``index`` (B, L) holds, for every step, the row of its item in ``kv``.
    """
    b, length = index.shape
    _, heads, num_slots, dim = kv.shape  # num_slots = W = T + 2
    out = kv[index]  # (B, L, H, W, d)
    return out.permute(0, 2, 1, 3, 4).reshape(b, heads, length * num_slots, dim)
