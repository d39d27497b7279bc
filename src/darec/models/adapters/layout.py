"""Adapter layouts as plain data, and their text form.

A layout gives every decoder layer one adapter spec per slot. Text grammar (whitespace ignored,
types case-insensitive)::

    layout := entry ("," entry)*
    entry  := layer ["*" N]             N >= 1 consecutive layers
    layer  := spec "/" spec | spec      attn slot / mlp slot; one spec means both slots
    spec   := type [":" size]           size >= 1 for serial, parallel, lora; none and ia3 take
                                        no size (writing one is an error, not silently ignored)

A layout of one entry without ``*`` applies to every layer: ``serial:16`` is DARec_base, a serial
bottleneck of width 16 in both slots of every layer. Otherwise the entries must add up to the
backbone's layer count: ``none*6,serial:16/lora:8*2`` is an 8-layer layout.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from darec.errors import ConfigError
from darec.models.adapters.base import Slot
from darec.models.adapters.registry import ARCHITECTURES

__all__ = [
    "SlotSpec",
    "LayerAdapters",
    "AdapterLayout",
    "parse_layout",
    "format_layout",
    "first_adapted_layer",
]


def _valid_types() -> str:
    return ", ".join(ARCHITECTURES)


@dataclass(frozen=True)
class SlotSpec:
    """The adapter of one slot: a registered type and its size (0 for unsized types)."""

    kind: str
    size: int = 0

    def __post_init__(self) -> None:
        arch = ARCHITECTURES.get(self.kind)
        if arch is None:
            raise ConfigError(f"unknown adapter type {self.kind!r}; valid types: {_valid_types()}")
        if arch.sized and self.size < 1:
            raise ConfigError(
                f"adapter type {self.kind!r} needs a size >= 1 (as in '{self.kind}:16'), "
                f"got {self.size}"
            )
        if not arch.sized and self.size != 0:
            raise ConfigError(f"adapter type {self.kind!r} takes no size, got {self.size}")

    def __str__(self) -> str:
        return f"{self.kind}:{self.size}" if self.size else self.kind


@dataclass(frozen=True)
class LayerAdapters:
    """The adapters of one decoder layer: after attention and after the MLP."""

    attn: SlotSpec
    mlp: SlotSpec

    def slots(self) -> tuple[tuple[Slot, SlotSpec], tuple[Slot, SlotSpec]]:
        return (("attn", self.attn), ("mlp", self.mlp))

    @property
    def adapted(self) -> bool:
        """True when either slot holds an adapter."""
        return self.attn.kind != "none" or self.mlp.kind != "none"

    def __str__(self) -> str:
        return str(self.attn) if self.attn == self.mlp else f"{self.attn}/{self.mlp}"


AdapterLayout = tuple[LayerAdapters, ...]
"""One :class:`LayerAdapters` per decoder layer, in layer order."""


class _EntryError(Exception):
    """A problem inside one entry; :func:`parse_layout` adds where it is."""


def _positive_int(text: str, what: str) -> int:
    """``text`` as an integer >= 1; ``what`` names it in the error."""
    try:
        value = int(text)
    except ValueError:
        raise _EntryError(f"{what} is {text.strip()!r}, not an integer") from None
    if value < 1:
        raise _EntryError(f"{what} must be >= 1, got {value}")
    return value


def _parse_spec(token: str) -> SlotSpec:
    kind, sep, size_text = token.partition(":")
    kind = kind.strip().lower()
    if not kind:
        raise _EntryError(f"missing adapter type; valid types: {_valid_types()}")
    arch = ARCHITECTURES.get(kind)
    if arch is None:
        raise _EntryError(f"unknown adapter type {kind!r}; valid types: {_valid_types()}")
    if not arch.sized:
        if sep:
            raise _EntryError(f"adapter type {kind!r} takes no size; write {kind!r}")
        return SlotSpec(kind)
    if not sep:
        raise _EntryError(f"adapter type {kind!r} needs a size, as in '{kind}:16'")
    return SlotSpec(kind, _positive_int(size_text, f"size of {kind!r}"))


def _parse_layer(body: str) -> LayerAdapters:
    parts = body.split("/")
    if len(parts) == 1:
        spec = _parse_spec(parts[0])
        return LayerAdapters(spec, spec)
    if len(parts) == 2:
        return LayerAdapters(_parse_spec(parts[0]), _parse_spec(parts[1]))
    raise _EntryError("expected 'attn_spec/mlp_spec' with a single '/'")


def _parse_entry(entry: str) -> tuple[LayerAdapters, int]:
    body, star, count_text = entry.partition("*")
    count = _positive_int(count_text, "repeat") if star else 1
    return _parse_layer(body), count


def parse_layout(text: str, num_layers: int) -> AdapterLayout:
    """Parse a layout string (grammar in the module docstring) for a backbone of ``num_layers``.

    Raises :class:`ConfigError` naming the offending entry and the valid types, or both counts
    when the entries do not add up to ``num_layers``."""
    if num_layers < 1:
        raise ConfigError(f"an adapter layout needs at least one layer, got {num_layers}")
    entries = [e.strip() for e in text.split(",")]
    layout: list[LayerAdapters] = []
    for entry in entries:
        try:
            layer, count = _parse_entry(entry)
        except _EntryError as e:
            where = f"{text!r}" if len(entries) == 1 else f"entry {entry!r} of {text!r}"
            raise ConfigError(f"adapter layout {where}: {e}") from None
        layout.extend([layer] * count)
    if len(entries) == 1 and "*" not in entries[0]:
        return tuple(layout) * num_layers
    if len(layout) != num_layers:
        raise ConfigError(
            f"adapter layout {text!r} describes {len(layout)} layers, but the backbone has "
            f"{num_layers}; give one entry per layer (with '*N' repeats) or a single entry "
            "for every layer"
        )
    return tuple(layout)


def format_layout(layout: AdapterLayout) -> str:
    """The compact text of ``layout``: runs of equal layers as ``*N``, a uniform layout as one
    entry. ``parse_layout(format_layout(x), len(x)) == x``."""
    if not layout:
        raise ConfigError("an adapter layout needs at least one layer, got an empty layout")
    runs = [(layer, len(list(group))) for layer, group in itertools.groupby(layout)]
    if len(runs) == 1:
        return str(runs[0][0])
    return ",".join(str(layer) if n == 1 else f"{layer}*{n}" for layer, n in runs)


def first_adapted_layer(layout: AdapterLayout) -> int | None:
    """Index of the first layer with an adapter in either slot; None when there is none.

    Layers below it are the frozen backbone alone, so their outputs can be cached."""
    return next((i for i, layer in enumerate(layout) if layer.adapted), None)
