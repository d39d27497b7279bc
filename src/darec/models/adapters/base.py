"""Shared vocabulary of the adapter package: slots, targets, layer sizes and the registry record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

__all__ = ["SLOTS", "Slot", "SlotTarget", "LayerDims", "Architecture"]

Slot = Literal["attn", "mlp"]
SLOTS: tuple[Slot, ...] = ("attn", "mlp")
"""The two adapter slots of a decoder layer: after self-attention and after the MLP."""


@dataclass(frozen=True)
class SlotTarget:
    """One slot of one decoder layer that receives an adapter of a given size (0: unsized)."""

    layer: int
    slot: Slot
    size: int


@dataclass(frozen=True)
class LayerDims:
    """Widths of a LLaMA-family decoder layer, enough to count adapter parameters."""

    hidden: int
    """Hidden size D (input and output of both sublayers)."""
    intermediate: int
    """MLP width (output of gate_proj and up_proj)."""
    q_out: int
    """Output width of q_proj (attention heads x head_dim), also the input width of o_proj."""
    kv_out: int
    """Output width of k_proj and v_proj (key/value heads x head_dim)."""

    @classmethod
    def from_config(cls, config: Any) -> LayerDims:
        """Read the widths from a transformers ``LlamaConfig`` (or a config with the same names)."""
        head_dim = getattr(config, "head_dim", None) or (
            config.hidden_size // config.num_attention_heads
        )
        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        return cls(
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            q_out=config.num_attention_heads * head_dim,
            kv_out=kv_heads * head_dim,
        )


InstallFn = Callable[[nn.Module, list[SlotTarget], float], dict[tuple[int, Slot], nn.Module]]
"""Install one architecture on the given slots of ``model.layers``; dropout is the third argument.
Returns the modules that hold parameters outside the backbone, keyed by (layer, slot)."""

CountFn = Callable[[Slot, int, LayerDims], int]
"""Parameters that one slot of the given size adds to a layer of the given widths."""


@dataclass(frozen=True)
class Architecture:
    """A registry entry: how to validate, install and count one adapter architecture."""

    name: str
    help: str
    sized: bool
    """True when a layout entry must give a size (``serial:16``); False when it must not."""
    config_cls: type
    """Config dataclass of one slot (validated in its ``__post_init__``)."""
    install: InstallFn
    count: CountFn
    in_backbone: bool = False
    """True when the parameters live inside the backbone's (peft-wrapped) projections rather
    than in the module that :func:`attach_adapters` returns."""
