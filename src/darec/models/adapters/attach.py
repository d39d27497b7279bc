"""Install an adapter layout on a frozen LLaMA-family decoder, and count its parameters."""

from __future__ import annotations

from torch import nn

from darec.errors import ConfigError
from darec.models.adapters.base import SLOTS, LayerDims, Slot, SlotTarget
from darec.models.adapters.bottleneck import Bottleneck
from darec.models.adapters.layout import AdapterLayout, format_layout
from darec.models.adapters.peft_slots import peft_parameters
from darec.models.adapters.registry import ARCHITECTURES

__all__ = ["Adapters", "attach_adapters", "count_adapter_parameters"]


class Adapters(nn.Module):
    """The adapters that :func:`attach_adapters` installed on a backbone.

    Holds the bottleneck modules, so an owner that registers this module as a submodule gets them
    under stable names: ``layers.{i}.{attn|mlp}.down.weight`` (and ``.bias``, ``up.*``); layers
    and slots without a bottleneck have no entry. LoRA and IA3 parameters live inside the
    backbone's peft-wrapped projections; their names relative to the backbone are listed in
    :attr:`peft_parameter_names` (``layers.{i}.self_attn.q_proj.lora_A.default.weight``,
    ``layers.{i}.mlp.down_proj.ia3_l.default``).
    """

    def __init__(self, layout: AdapterLayout):
        super().__init__()
        self.layout = layout
        self.layers = nn.ModuleList(nn.ModuleDict() for _ in layout)
        self.peft_parameter_names: tuple[str, ...] = ()

    def extra_repr(self) -> str:
        return f"layout={format_layout(self.layout)!r}"


def _has_adapters(model: nn.Module) -> bool:
    for module in model.modules():
        if type(module).__module__.startswith("peft."):
            return True
        hooks = module._forward_hooks.values()
        if any(isinstance(getattr(h, "__self__", None), Bottleneck) for h in hooks):
            return True
    return False


def attach_adapters(model: nn.Module, layout: AdapterLayout, dropout: float = 0.0) -> Adapters:
    """Install ``layout`` on ``model.layers`` in place and freeze everything but the adapters.

    ``model`` is a LLaMA-family decoder with a ``layers`` ModuleList and a ``config`` (e.g.
    transformers' ``LlamaModel``). Cast it to its compute dtype and device *before* attaching:
    adapters are created fp32 on the layers' device, and casting the model afterwards would cast
    the peft adapter weights too. Every adapter starts as the identity, so the model's output is
    unchanged until the adapters are trained. Afterwards exactly the adapter parameters (those of
    the returned module and the peft ones inside ``model``) require grad; the backbone's weights
    are untouched. ``dropout`` applies inside bottleneck adapters and to LoRA inputs (IA3 has
    none); bottleneck dropout follows the returned module's train/eval mode, LoRA dropout the
    backbone's.

    The adapters run inside the backbone's own forward code (forward hooks on ``self_attn`` and
    ``mlp``, peft layers in the projections), so they apply however the layers are called,
    including one at a time with explicit masks. Attach once per model.
    """
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(
            "attach_adapters expects a decoder with a `layers` ModuleList (e.g. transformers' "
            f"LlamaModel), got {type(model).__name__}"
        )
    if len(layout) != len(layers):
        raise ConfigError(
            f"adapter layout {format_layout(layout)!r} has {len(layout)} layers, but the "
            f"backbone has {len(layers)}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"adapter dropout must be in [0, 1), got {dropout}")
    if _has_adapters(model):
        raise RuntimeError("this model already has adapters; attach a layout to a fresh backbone")

    targets: dict[str, list[SlotTarget]] = {}
    for i, layer in enumerate(layout):
        for slot, spec in layer.slots():
            targets.setdefault(spec.kind, []).append(SlotTarget(i, slot, spec.size))
    installed: dict[tuple[int, Slot], nn.Module] = {}
    for kind, kind_targets in targets.items():
        installed.update(ARCHITECTURES[kind].install(model, kind_targets, dropout))

    adapters = Adapters(layout)
    adapters.train(model.training)  # dropout follows the backbone's mode until the owner sets it
    for i, held in enumerate(adapters.layers):
        assert isinstance(held, nn.ModuleDict)
        for slot in SLOTS:  # insertion order fixes the state-dict order
            if (i, slot) in installed:
                held[slot] = installed[(i, slot)]

    # peft freezes the base model on its first injection but may leave other parameters as they
    # were; make the rule explicit: the backbone is frozen, the adapters train.
    uses_peft = any(ARCHITECTURES[kind].in_backbone for kind in targets)
    in_backbone = peft_parameters(model) if uses_peft else {}
    model.requires_grad_(False)
    for p in in_backbone.values():
        p.requires_grad_(True)
    adapters.peft_parameter_names = tuple(in_backbone)
    return adapters


def count_adapter_parameters(layout: AdapterLayout, dims: LayerDims) -> int:
    """Trainable parameters that ``layout`` adds to layers of widths ``dims`` (no model needed).

    ``LayerDims.from_config(model.config)`` gives the widths of a transformers LLaMA."""
    return sum(
        ARCHITECTURES[spec.kind].count(slot, spec.size, dims)
        for layer in layout
        for slot, spec in layer.slots()
    )
