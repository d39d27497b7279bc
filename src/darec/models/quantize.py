"""Int8 weight-only copies of the Linear layers a model runs on every request (CPU serving).

A streamed event runs one token through DARec's upper LLM layers: a matrix-vector product per
weight, where the time goes into reading the weights. Reading them as int8 (one scale per
output row) instead of bf16 halves that: on 2 AVX512 cores a 576x1536 product takes 0.026 ms
against 0.066 ms. For more rows the int8 kernel loses (0.099 against 0.084 ms at 8 rows), so a
call with more than ``max_rows`` rows (a whole history, a batch export) keeps the exact weight.

Scores move by the rounding of the weights (per-row absmax scaling); the serving benchmark
records how often the top-10 still agrees (``benchmarks/serving.py``). Nothing is written: the
checkpoint and the catalog cache stay those of the exact weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from darec.errors import ConfigError
from darec.models.base import SequentialRecommender

__all__ = ["QUANTIZE_MODES", "Int8RowsLinear", "quantize_for_serving"]

QUANTIZE_MODES = ("none", "int8")
MAX_ROWS = 4  # the int8 kernel's break-even was 6-8 rows on the machine above


class Int8RowsLinear(nn.Module):
    """A Linear layer that also keeps its weight in int8 with one scale per output row: a call
    of at most ``max_rows`` rows reads that copy, any other call the exact ``weight``. The
    layer's parameters are the original ones (same names, same objects), so state dicts and
    everything that watches the parameters see no change."""

    def __init__(self, linear: nn.Linear, max_rows: int = MAX_ROWS) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.max_rows = max_rows
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny) / 127
        qweight = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.qweight: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("qweight", qweight, persistent=False)
        self.register_buffer("scale", scale.to(linear.weight.dtype), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // max(1, x.shape[-1])
        exact = rows > self.max_rows or x.dtype != self.scale.dtype
        if exact or (torch.is_grad_enabled() and self.weight.requires_grad):
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(rows, self.in_features)
        y = torch._weight_int8pack_mm(flat, self.qweight, self.scale)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, int8 up to {self.max_rows} rows"


def _backbone_linears(layer: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, attribute, Linear) for the backbone's own Linear layers in ``layer``: not the
    adapters' (LoRA keeps its matrices in ``lora_*`` containers; a wrapped weight is the
    wrapper's ``base_layer``, which is the backbone's)."""
    found = []
    for name, module in layer.named_modules():
        if any(part.startswith("lora_") for part in name.split(".")):
            continue
        for attr, child in module.named_children():
            if type(child) is nn.Linear and not attr.startswith("lora_"):
                found.append((module, attr, child))
    return found


def quantize_for_serving(model: SequentialRecommender, mode: str, max_rows: int = MAX_ROWS) -> int:
    """Give the Linear layers of ``model.per_request_layers()`` an int8 copy of their weights
    (``mode`` int8; none: nothing). Call it after the inference cache is attached. Returns how
    many Linear layers changed; raises :class:`ConfigError` for a mode, model or device it
    does not apply to."""
    if mode not in QUANTIZE_MODES:
        raise ConfigError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {mode!r}")
    if mode == "none":
        return 0
    if model.device.type != "cpu":
        raise ConfigError(
            f"quantize {mode} is for serving on the CPU (the device here is {model.device}); "
            "a GPU reads the weights fast enough: serve with quantize none"
        )
    layers = model.per_request_layers()
    if not layers:
        raise ConfigError(
            f"quantize {mode} applies to models that run a language model for every request "
            f"(darec); {model.cfg.name} has none"
        )
    changed = 0
    for layer in layers:
        for parent, attr, linear in _backbone_linears(layer):
            setattr(parent, attr, Int8RowsLinear(linear, max_rows))
            changed += 1
    return changed
