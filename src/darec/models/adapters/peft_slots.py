"""LoRA and IA3 slots, injected with peft (imported lazily: only layouts that use them need it).

One ``inject_adapter_in_model`` call per architecture covers every slot of that kind, with exact
module names (``layers.3.self_attn.q_proj``) and, for LoRA, ``rank_pattern``/``alpha_pattern``
for the per-layer ranks. LoRA and IA3 never wrap the same projection (a slot holds one
architecture, and the IA3 projections of a slot belong to that slot), so both live in one model
under the adapter name ``default``.

Two things that ``inject_adapter_in_model`` does differently from ``get_peft_model``, handled here:

* it creates the adapter weights in the base layer's dtype (bf16 for a bf16 backbone) and does not
  upcast them; :func:`peft.tuners.tuners_utils.cast_adapter_dtype` does, as ``get_peft_model``
  would. peft's layers then compute the adapter in fp32 (LoRA casts its input to the fp32 weight
  dtype, IA3 multiplies by the fp32 scale) and cast the result back to the base output dtype;
* it stores its config on the model as ``model.peft_config``; a second injection (IA3 after LoRA)
  would warn and overwrite that ``default`` entry, so it is removed: the adapter layout is the
  record of what was attached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from torch import nn

from darec.errors import ConfigError
from darec.models.adapters.base import LayerDims, Slot, SlotTarget

__all__ = [
    "LoraSlotConfig",
    "IA3SlotConfig",
    "LORA_PROJECTIONS",
    "IA3_PROJECTIONS",
    "ADAPTER_NAME",
    "install_lora",
    "install_ia3",
    "count_lora",
    "count_ia3",
    "peft_parameters",
]

ADAPTER_NAME = "default"
"""peft adapter name; appears in parameter names (``q_proj.lora_A.default.weight``)."""

LORA_PROJECTIONS: dict[Slot, tuple[str, ...]] = {
    "attn": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
    "mlp": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
}
"""Projections (relative to a decoder layer) that a LoRA slot adapts."""

IA3_PROJECTIONS: dict[Slot, tuple[str, ...]] = {
    "attn": ("self_attn.k_proj", "self_attn.v_proj"),
    "mlp": ("mlp.down_proj",),
}
"""Projections that an IA3 slot scales: outputs of k and v; the input of down_proj."""


@dataclass(frozen=True)
class LoraSlotConfig:
    """LoRA of rank r on every projection of a slot: ``W x + (alpha / r) B A dropout(x)``."""

    rank: int
    """Rank r of the update B A (>= 1)."""
    dropout: float = 0.0
    """Dropout on the input of A, in [0, 1)."""
    alpha: int | None = None
    """Scale numerator; None means 2 r, so the update is scaled by 2 at every rank."""

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ConfigError(f"LoRA rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"adapter dropout must be in [0, 1), got {self.dropout}")
        if self.alpha is not None and self.alpha <= 0:
            raise ConfigError(f"LoRA alpha must be > 0, got {self.alpha}")

    @property
    def lora_alpha(self) -> int:
        return 2 * self.rank if self.alpha is None else self.alpha


@dataclass(frozen=True)
class IA3SlotConfig:
    """IA3: learned per-channel scales, initialised to ones. It has no size and no dropout."""


def _module_name(layer: int, projection: str) -> str:
    return f"layers.{layer}.{projection}"


def _inject(peft_config: Any, model: nn.Module) -> None:
    from peft import inject_adapter_in_model
    from peft.tuners.tuners_utils import cast_adapter_dtype

    inject_adapter_in_model(peft_config, model, adapter_name=ADAPTER_NAME)
    cast_adapter_dtype(model, adapter_name=ADAPTER_NAME)  # bf16 adapter weights -> fp32
    vars(model).pop("peft_config", None)


def install_lora(
    model: nn.Module, targets: list[SlotTarget], dropout: float
) -> dict[tuple[int, Slot], nn.Module]:
    """LoRA on the q/k/v/o (attn) or gate/up/down (mlp) projections of each target slot."""
    from peft import LoraConfig

    names: list[str] = []
    ranks: dict[str, int] = {}
    alphas: dict[str, int] = {}
    for t in targets:
        cfg = LoraSlotConfig(rank=t.size, dropout=dropout)
        for projection in LORA_PROJECTIONS[t.slot]:
            name = _module_name(t.layer, projection)
            names.append(name)
            # peft matches pattern keys as regexes against the end of module names.
            ranks[re.escape(name)] = cfg.rank
            alphas[re.escape(name)] = cfg.lora_alpha
    first = LoraSlotConfig(rank=targets[0].size)
    lora = LoraConfig(
        r=first.rank,
        lora_alpha=first.lora_alpha,
        lora_dropout=dropout,
        target_modules=names,
        rank_pattern=ranks,
        alpha_pattern=alphas,
        bias="none",
    )
    _inject(lora, model)
    return {}


def install_ia3(
    model: nn.Module, targets: list[SlotTarget], dropout: float
) -> dict[tuple[int, Slot], nn.Module]:
    """IA3 scales on each target slot (``dropout`` is ignored: IA3 has none)."""
    from peft import IA3Config

    names = [_module_name(t.layer, p) for t in targets for p in IA3_PROJECTIONS[t.slot]]
    # Feed-forward modules are scaled on their input (down_proj), the others on their output.
    feedforward = [_module_name(t.layer, "mlp.down_proj") for t in targets if t.slot == "mlp"]
    ia3 = IA3Config(target_modules=names, feedforward_modules=feedforward, init_ia3_weights=True)
    _inject(ia3, model)
    return {}


def count_lora(slot: Slot, size: int, dims: LayerDims) -> int:
    """A (in -> r) and B (r -> out) for each projection of the slot; peft adds no biases."""
    d, q, kv, inter = dims.hidden, dims.q_out, dims.kv_out, dims.intermediate
    if slot == "attn":
        return size * ((d + q) + 2 * (d + kv) + (q + d))
    return size * 3 * (d + inter)


def count_ia3(slot: Slot, size: int, dims: LayerDims) -> int:
    """One scale per output channel of k and v, or per input channel of down_proj."""
    return 2 * dims.kv_out if slot == "attn" else dims.intermediate


def peft_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The adapter parameters of every peft layer in ``model``, by their names in ``model``."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    out: dict[str, nn.Parameter] = {}
    for prefix, module in model.named_modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        for attr in module.adapter_layer_names:
            container = getattr(module, attr, None)
            if isinstance(container, nn.Module):
                for name, p in container.named_parameters():
                    out[f"{prefix}.{attr}.{name}"] = p
    return out
