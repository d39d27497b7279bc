"""A lean inference forward for the LLM layers that run on every request.

A streamed event runs one or two tokens through DARec's upper decoder layers. At that size a
layer's time is mostly not arithmetic: transformers' layer call goes through its checkpointing
and deprecation wrappers, module hooks (the bottleneck adapters are forward hooks), one Linear
module per projection, dtype casts in RMSNorm and a no-op dropout. py-spy on the serving run put
the weight reads (``Linear.forward``) at a third of the worker's time.

:class:`LeanLayer` runs the same computation as a LLaMA-family decoder layer with its adapters,
for inference only (no grad, eval mode):

- q/k/v and gate/up are each one product over concatenated weights when those projections are
  plain Linear layers (or the int8 serving copies of :mod:`darec.models.quantize`), and plain
  projections read their weights in oneDNN's packed layout on the CPU (twice as fast for one
  row, the same bits in bf16); projections that peft wrapped (LoRA, IA3) are called as they
  are, so their adapters apply unchanged;
- the bottleneck adapters that a layer's forward hooks would add are called directly;
- grouped-query attention runs on the key/value heads (queries of a group stacked), so the
  keys and values of a long cached prefix are not repeated per query head.

The packed (or concatenated) weights are copies: about 7 MB per SmolLM2-135M layer in bf16, so
50 MB for the 7 upper layers of the serving run and 214 MB when all 30 run per request. A lean layer
checks before each call that its layer still has the same projection modules and weights
(same storage and version); :func:`lean_layer` rebuilds one that changed. A layer it does
not recognise (other sublayers, other hooks, a compiled layer) keeps transformers' forward.
Equal to transformers' layer up to float rounding; tests compare every adapter type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from darec.models.adapters.bottleneck import Bottleneck
from darec.models.quantize import Int8RowsLinear

__all__ = ["LeanLayer", "lean_layer"]

_LAYER_PARTS = {"self_attn", "mlp", "input_layernorm", "post_attention_layernorm"}
_ATTN_PARTS = {"q_proj", "k_proj", "v_proj", "o_proj"}
_MLP_PARTS = {"gate_proj", "up_proj", "down_proj", "act_fn"}


def _weight_key(module: Any) -> tuple[int, int, int]:
    """Which module, which storage and which version of its weight (any in-place update or move
    changes one)."""
    weight = module.weight
    return id(module), weight.data_ptr(), weight._version


_PACK = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None)
_PACKED_LINEAR = getattr(torch.ops.mkldnn, "_linear_pointwise", None)


class _Linear:
    """``x -> F.linear(x, weight, bias)``; with ``packed``, the same product over ``weight`` in
    oneDNN's blocked layout (a plain, picklable object rather than a closure)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, packed: bool) -> None:
        self.weight, self.bias, self.packed = weight, bias, packed

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed:
            assert _PACKED_LINEAR is not None
            return _PACKED_LINEAR(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


def _packed_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> _Linear | None:
    """``F.linear(x, weight, bias)`` over a copy of ``weight`` in oneDNN's blocked layout (what
    torch.compile's CPU backend uses for Linear layers), or None where that does not apply. On
    the 2-core CPU of docs/results.md a one-row product reads the packed bf16 weights about
    twice as fast (2.79 against 4.35 ms for a streamed event's 49 matrices), with the same
    bits."""
    if (
        _PACK is None
        or _PACKED_LINEAR is None
        or weight.device.type != "cpu"
        or weight.dtype not in (torch.bfloat16, torch.float32)
        or not torch.backends.mkldnn.is_available()
    ):
        return None
    try:
        packed = _PACK(weight, 1)
    except RuntimeError:  # a build or CPU without the kernel
        return None
    return _Linear(packed, bias, packed=True)


class _Projections:
    """Linear projections of one input. When every one is a plain Linear they run as one product
    over their concatenated weights (packed for oneDNN where it applies); when every one is an
    :class:`Int8RowsLinear`, as one such layer; otherwise (peft's LoRA and IA3 wrappers) one
    call each, so their adapters apply unchanged."""

    def __init__(self, modules: Sequence[Any]) -> None:
        self.modules: list[Any] = list(modules)
        self.key = [_weight_key(m) for m in self.modules]
        kinds = {type(m) for m in self.modules}
        self.fused: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.sizes: list[int] = []
        if kinds == {nn.Linear} or kinds == {Int8RowsLinear}:
            weights: list[torch.Tensor] = [m.weight for m in self.modules]
            biases: list[torch.Tensor | None] = [m.bias for m in self.modules]
            self.sizes = [int(w.shape[0]) for w in weights]
            with torch.no_grad():
                weight = torch.cat([w.detach() for w in weights])
                bias = None
                if any(b is not None for b in biases):
                    bias = torch.cat(
                        [
                            b.detach() if b is not None else w.new_zeros(w.shape[0])
                            for w, b in zip(weights, biases, strict=True)
                        ]
                    )
            if kinds == {nn.Linear}:
                self.fused = _packed_linear(weight, bias) or _Linear(weight, bias, packed=False)
            else:
                joined = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
                joined.weight = nn.Parameter(weight, requires_grad=False)
                if bias is not None:
                    joined.bias = nn.Parameter(bias, requires_grad=False)
                self.fused = Int8RowsLinear(joined, int(self.modules[0].max_rows)).forward

    def current(self, modules: Sequence[Any]) -> bool:
        return len(modules) == len(self.key) and all(
            _weight_key(m) == k for m, k in zip(modules, self.key, strict=True)
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The projections' outputs side by side (..., sum of their widths)."""
        if self.fused is not None:
            return self.fused(x)
        outs = [m(x) for m in self.modules]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)


def _bottleneck(sublayer: Any) -> Bottleneck | None | bool:
    """The bottleneck adapter hooked on ``sublayer``; None: no hook; False: hooks this module
    does not know (the layer then keeps transformers' forward)."""
    if sublayer._forward_pre_hooks:
        return False
    found: Bottleneck | None = None
    for hook in sublayer._forward_hooks.values():
        owner = getattr(hook, "__self__", None)
        if not isinstance(owner, Bottleneck) or found is not None:
            return False
        found = owner
    return found


def _rms(x: torch.Tensor, norm: Any) -> torch.Tensor:
    """transformers' LlamaRMSNorm: normalised in fp32, cast back, then scaled."""
    y = F.rms_norm(x.float(), (x.shape[-1],), eps=norm.variance_epsilon)
    return norm.weight * y.to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """transformers' rotary embedding of ``x`` (..., d) by ``cos``/``sin`` broadcast to it."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def _adapter(adapter: Bottleneck, v: torch.Tensor) -> torch.Tensor:
    """A bottleneck's contribution in eval mode (no dropout), its Linear layers read directly."""
    z = F.relu(F.linear(v.float(), adapter.down.weight, adapter.down.bias))
    return F.linear(z, adapter.up.weight, adapter.up.bias).to(v.dtype)


class LeanLayer:
    """One decoder layer's inference forward; called like the layer it was built from:
    ``layer(h, attention_mask=..., position_embeddings=(cos, sin), cache=...)``."""

    def __init__(
        self, layer: Any, attn_adapter: Bottleneck | None, mlp_adapter: Bottleneck | None
    ) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        self.layer = layer
        self.index = int(attn.layer_idx)
        self.head_dim = int(attn.head_dim)
        self.groups = int(attn.num_key_value_groups)
        self.kv_heads = int(attn.k_proj.weight.shape[0]) // self.head_dim
        self.mlp_width = int(mlp.gate_proj.weight.shape[0])
        self.scaling = float(attn.scaling)
        self.qkv = _Projections([attn.q_proj, attn.k_proj, attn.v_proj])
        self.o = _Projections([attn.o_proj])
        self.gate_up = _Projections([mlp.gate_proj, mlp.up_proj])
        self.down = _Projections([mlp.down_proj])
        self.attn_adapter, self.mlp_adapter = attn_adapter, mlp_adapter
        act = mlp.act_fn
        self.act: Callable[[torch.Tensor], torch.Tensor] = (
            F.silu if type(act).__name__ in ("SiLU", "SiLUActivation") else act
        )

    def current(self) -> bool:
        """Whether the layer still has the projections and weights this was built from."""
        attn, mlp = self.layer.self_attn, self.layer.mlp
        return (
            self.qkv.current([attn.q_proj, attn.k_proj, attn.v_proj])
            and self.o.current([attn.o_proj])
            and self.gate_up.current([mlp.gate_proj, mlp.up_proj])
            and self.down.current([mlp.down_proj])
        )

    def __call__(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Any = None,
    ) -> torch.Tensor:
        layer = self.layer
        x = hidden_states
        b, s, _ = x.shape
        d = self.head_dim
        h = _rms(x, layer.input_layernorm)
        qkv = self.qkv(h).view(b, s, -1, d)  # (B, S, H + 2 H_kv, d)
        heads = self.kv_heads * self.groups
        assert position_embeddings is not None, "a decoder layer needs the rotary embeddings"
        cos, sin = (t.unsqueeze(2) for t in position_embeddings)
        qk = _rotate(qkv[:, :, : heads + self.kv_heads], cos, sin)  # queries and keys at once
        q = qk[:, :, :heads].transpose(1, 2)
        k = qk[:, :, heads:].transpose(1, 2)
        v = qkv[:, :, heads + self.kv_heads :].transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v, self.index)
        o = self.o(self._attention(q, k, v, attention_mask))
        if self.attn_adapter is not None:
            o = o + _adapter(self.attn_adapter, h if self.attn_adapter.config.parallel else o)
        x = x + o
        h = _rms(x, layer.post_attention_layernorm)
        gate, up = self.gate_up(h).split(self.mlp_width, dim=-1)
        y = self.down(self.act(gate) * up)
        if self.mlp_adapter is not None:
            y = y + _adapter(self.mlp_adapter, h if self.mlp_adapter.config.parallel else y)
        return x + y

    def _attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Scaled dot-product attention of ``q`` (B, H, S, d) over ``k``/``v`` (B, H_kv, K, d):
        (B, S, H * d). With a mask, a group's query heads are stacked on their key/value head,
        so nothing is repeated; without one it is causal, as transformers' is."""
        b, heads, s, d = q.shape
        g = self.groups
        if mask is None:
            if g > 1:
                k = k.repeat_interleave(g, dim=1)
                v = v.repeat_interleave(g, dim=1)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=s > 1, scale=self.scaling)
        else:
            if g > 1:
                q = q.reshape(b, heads // g, g * s, d)
                if s > 1:
                    mb, _, _, keys = mask.shape
                    mask = mask.expand(mb, g, s, keys).reshape(mb, 1, g * s, keys)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling)
            out = out.reshape(b, heads, s, d)
        return out.transpose(1, 2).reshape(b, s, heads * d)


def _lean(layer: Any) -> LeanLayer | None:
    """A lean forward of ``layer``, or None when it is not a plain LLaMA-family layer (other
    sublayers, unknown hooks, a compiled layer)."""
    children = {name for name, _ in layer.named_children()}
    attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    if children != _LAYER_PARTS or attn is None or mlp is None:
        return None
    if {n for n, _ in attn.named_children()} != _ATTN_PARTS:
        return None
    if {n for n, _ in mlp.named_children()} != _MLP_PARTS:
        return None
    if getattr(layer, "_compiled_call_impl", None) is not None:
        return None
    if layer._forward_hooks or layer._forward_pre_hooks:
        return None
    for norm in (layer.input_layernorm, layer.post_attention_layernorm):
        if not hasattr(norm, "variance_epsilon") or norm._forward_hooks:
            return None
    attn_adapter, mlp_adapter = _bottleneck(attn), _bottleneck(mlp)
    if attn_adapter is False or mlp_adapter is False:
        return None
    assert not isinstance(attn_adapter, bool) and not isinstance(mlp_adapter, bool)
    return LeanLayer(layer, attn_adapter, mlp_adapter)


def lean_layer(layer: nn.Module, previous: LeanLayer | None = None) -> LeanLayer | None:
    """``previous`` when it was built from ``layer`` and its weights are unchanged, else a new
    lean forward of ``layer`` (None when it keeps transformers' forward)."""
    if previous is not None and previous.layer is layer and previous.current():
        return previous
    return _lean(layer)
