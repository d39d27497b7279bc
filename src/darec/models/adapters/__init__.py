"""Adapters for a frozen LLaMA-family decoder: two slots per layer, one registry of types.

Each decoder layer has two slots, ``attn`` (after self-attention) and ``mlp`` (after the MLP),
the Houlsby positions. A slot holds one architecture from :data:`ARCHITECTURES`:

    none       nothing
    serial     bottleneck r on the sublayer output: y + up(relu(down(y)))
    parallel   bottleneck r beside the sublayer: y + up(relu(down(x))), x its (normed) input
    lora       LoRA rank r (peft) on q/k/v/o (attn) or gate/up/down (mlp); alpha = 2 r
    ia3        IA3 scales (peft) on the k and v outputs (attn) or the down_proj input (mlp)

Every adapter starts as the identity (zero up / zero B / unit scales) and computes in fp32 on an
upcast input, so a bf16 backbone keeps fp32 adapter weights, gradients and optimizer state.

A layout (:data:`AdapterLayout`) is plain data, one :class:`LayerAdapters` per layer, with a
text form (``parse_layout`` / ``format_layout``) that a search can write and a report can print::

    layout = parse_layout("none/none*6,serial:16/lora:8*2", num_layers=8)
    adapters = attach_adapters(backbone, layout, dropout=0.1)   # backbone is frozen now
    owner.adapters = adapters                                   # stable state-dict names
"""

from darec.models.adapters.attach import Adapters, attach_adapters, count_adapter_parameters
from darec.models.adapters.base import SLOTS, Architecture, LayerDims, Slot, SlotTarget
from darec.models.adapters.bottleneck import Bottleneck, BottleneckConfig
from darec.models.adapters.layout import (
    AdapterLayout,
    LayerAdapters,
    SlotSpec,
    first_adapted_layer,
    format_layout,
    parse_layout,
)
from darec.models.adapters.peft_slots import IA3SlotConfig, LoraSlotConfig
from darec.models.adapters.registry import ARCHITECTURES, NoAdapterConfig

__all__ = [
    "ARCHITECTURES",
    "SLOTS",
    "AdapterLayout",
    "Adapters",
    "Architecture",
    "Bottleneck",
    "BottleneckConfig",
    "IA3SlotConfig",
    "LayerAdapters",
    "LayerDims",
    "LoraSlotConfig",
    "NoAdapterConfig",
    "Slot",
    "SlotSpec",
    "SlotTarget",
    "attach_adapters",
    "count_adapter_parameters",
    "first_adapted_layer",
    "format_layout",
    "parse_layout",
]
