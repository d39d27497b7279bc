"""The explicit registry of adapter architectures: layout type name -> :class:`Architecture`."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from darec.models.adapters.base import Architecture, LayerDims, Slot, SlotTarget
from darec.models.adapters.bottleneck import (
    BottleneckConfig,
    count_bottleneck,
    install_parallel,
    install_serial,
)
from darec.models.adapters.peft_slots import (
    IA3SlotConfig,
    LoraSlotConfig,
    count_ia3,
    count_lora,
    install_ia3,
    install_lora,
)

__all__ = ["NoAdapterConfig", "ARCHITECTURES"]


@dataclass(frozen=True)
class NoAdapterConfig:
    """No adapter: the slot is the backbone's own sublayer."""


def _install_none(
    model: nn.Module, targets: list[SlotTarget], dropout: float
) -> dict[tuple[int, Slot], nn.Module]:
    return {}


def _count_none(slot: Slot, size: int, dims: LayerDims) -> int:
    return 0


_ALL = (
    Architecture(
        name="none",
        help="no adapter",
        sized=False,
        config_cls=NoAdapterConfig,
        install=_install_none,
        count=_count_none,
    ),
    Architecture(
        name="serial",
        help="bottleneck on the sublayer output: y + up(relu(down(y)))",
        sized=True,
        config_cls=BottleneckConfig,
        install=install_serial,
        count=count_bottleneck,
    ),
    Architecture(
        name="parallel",
        help="bottleneck beside the sublayer: y + up(relu(down(x))), x its input",
        sized=True,
        config_cls=BottleneckConfig,
        install=install_parallel,
        count=count_bottleneck,
    ),
    Architecture(
        name="lora",
        help="LoRA (peft) on q/k/v/o (attn slot) or gate/up/down (mlp slot), alpha = 2 r",
        sized=True,
        config_cls=LoraSlotConfig,
        install=install_lora,
        count=count_lora,
        in_backbone=True,
    ),
    Architecture(
        name="ia3",
        help="IA3 (peft): scales the k and v outputs (attn slot) or the down_proj input (mlp)",
        sized=False,
        config_cls=IA3SlotConfig,
        install=install_ia3,
        count=count_ia3,
        in_backbone=True,
    ),
)

ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in _ALL}
"""Every adapter type a layout may name."""
