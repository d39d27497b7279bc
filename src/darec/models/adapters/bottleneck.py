"""Serial and parallel bottleneck adapters (Houlsby positions), attached with forward hooks.

A bottleneck maps D -> r -> D: ``up(dropout(relu(down(v))))`` with ``up`` zero-initialised, so a
freshly attached adapter adds exactly zero and the backbone's output is unchanged.

    serial:    y <- y + adapter(y)     (y: sublayer output)
    parallel:  y <- y + adapter(x)     (x: sublayer input, the normed hidden state)

The adapter computes in fp32 on the upcast input and the result is cast back to the hidden dtype,
so with a bf16 backbone the adapter's weights, gradients and optimizer state stay fp32.

The adapter runs as a forward hook on the sublayer module (``layer.self_attn`` / ``layer.mlp``)
rather than a wrapper: the backbone keeps its own forward code, module classes and state-dict
names, and the hook fires however the layer is called (whole model or one layer at a time). The
hook is a bound method of the adapter module, so ``copy.deepcopy`` of a container that holds both
backbone and adapters rewires the copy's hooks to the copied adapters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from darec.errors import ConfigError
from darec.models.adapters.base import LayerDims, Slot, SlotTarget

__all__ = [
    "BottleneckConfig",
    "Bottleneck",
    "install_serial",
    "install_parallel",
    "count_bottleneck",
]

SUBLAYER_NAMES: dict[Slot, str] = {"attn": "self_attn", "mlp": "mlp"}


@dataclass(frozen=True)
class BottleneckConfig:
    """A bottleneck adapter D -> size -> D with a ReLU, dropout and a zero-initialised up layer."""

    size: int
    """Bottleneck width r (>= 1)."""
    dropout: float = 0.0
    """Dropout between the activation and the up projection, in [0, 1)."""
    parallel: bool = False
    """False: serial, reads the sublayer output; True: parallel, reads the sublayer input."""

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"bottleneck adapter size must be >= 1, got {self.size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"adapter dropout must be in [0, 1), got {self.dropout}")


class Bottleneck(nn.Module):
    """``up(dropout(relu(down(v))))`` in fp32; added to a sublayer output by :meth:`hook`."""

    def __init__(self, hidden: int, config: BottleneckConfig, device: torch.device | None = None):
        super().__init__()
        self.config = config
        kw: dict[str, Any] = {"device": device, "dtype": torch.float32}
        self.down = nn.Linear(hidden, config.size, **kw)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(config.dropout)
        self.up = nn.Linear(config.size, hidden, **kw)
        # Zero up-projection: the adapter starts as the identity of its sublayer.
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """The adapter's contribution for input ``v`` (B, L, D), in ``v``'s dtype."""
        z = self.act(self.down(v.float()))  # (B, L, r) fp32
        return self.up(self.dropout(z)).to(v.dtype)  # (B, L, D)

    def hook(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> Any:
        """Forward hook (``with_kwargs=True``) on a sublayer: add the adapter to its output.

        ``LlamaAttention`` returns ``(attn_output, attn_weights)`` and is called with keyword
        arguments; ``LlamaMLP`` returns a tensor and is called positionally."""
        y = output[0] if isinstance(output, tuple) else output  # (B, L, D)
        if self.config.parallel:
            x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            y = y + self(x)
        else:
            y = y + self(y)
        return (y, *output[1:]) if isinstance(output, tuple) else y

    def extra_repr(self) -> str:
        return "parallel" if self.config.parallel else "serial"


def _install(
    model: nn.Module, targets: list[SlotTarget], dropout: float, parallel: bool
) -> dict[tuple[int, Slot], nn.Module]:
    config: Any = model.config
    hidden = int(config.hidden_size)
    layers: nn.ModuleList = model.layers  # type: ignore[assignment]
    out: dict[tuple[int, Slot], nn.Module] = {}
    for t in targets:
        sublayer: nn.Module = getattr(layers[t.layer], SUBLAYER_NAMES[t.slot])
        device = next(sublayer.parameters()).device
        adapter = Bottleneck(hidden, BottleneckConfig(t.size, dropout, parallel), device)
        sublayer.register_forward_hook(adapter.hook, with_kwargs=True)
        out[(t.layer, t.slot)] = adapter
    return out


def install_serial(
    model: nn.Module, targets: list[SlotTarget], dropout: float
) -> dict[tuple[int, Slot], nn.Module]:
    """Serial bottlenecks on the given slots: ``y + adapter(y)``."""
    return _install(model, targets, dropout, parallel=False)


def install_parallel(
    model: nn.Module, targets: list[SlotTarget], dropout: float
) -> dict[tuple[int, Slot], nn.Module]:
    """Parallel bottlenecks on the given slots: ``y + adapter(x)``, x the sublayer input."""
    return _install(model, targets, dropout, parallel=True)


def count_bottleneck(slot: Slot, size: int, dims: LayerDims) -> int:
    """Weights and biases of down (D -> r) and up (r -> D); the same in both slots."""
    return 2 * dims.hidden * size + size + dims.hidden
