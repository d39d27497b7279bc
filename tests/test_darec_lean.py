"""The lean inference forward of the decoder layers (darec.models.darec.lean) against
transformers' own layers: every adapter type, streamed users, int8 copies, weight changes."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from darec.models.darec import DARec
from darec.models.darec.lean import LeanLayer, lean_layer
from darec.models.quantize import quantize_for_serving
from tests.test_darec import HISTORY, make, perturb

ATOL = 2e-5

LAYOUTS = [
    "serial:4",
    "parallel:4",
    "lora:4",
    "ia3",
    "serial:4/lora:4,ia3/parallel:4",
    "none,serial:4",
]


def both(model: DARec, run: Any) -> tuple[Any, Any]:
    """``run()`` with the lean forward, then with transformers' layers."""
    with torch.no_grad():
        model.lean_inference = True
        lean = run()
        model.lean_inference = False
        model._catalog = None  # rebuilt through transformers' layers too
        plain = run()
        model.lean_inference = True
    return lean, plain


def stream(model: DARec) -> torch.Tensor:
    model._catalog = None
    state = model.stream_start(torch.tensor([4, 5]))
    users = []
    for item in (9, 2, 9):
        state = model.stream_step(state, item)
        users.append(state.user)
    return torch.stack(users)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cki_user", ["add", "token"])
def test_same_scores_as_transformers_layers(layout: str, cki_user: str) -> None:
    model = make(adapters=layout, cki_user=cki_user)
    perturb(model)
    for layer in model.llm.layers[model.enter :]:
        assert isinstance(lean_layer(layer), LeanLayer)

    def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        model._catalog = None
        vectors = model.catalog_vectors().clone()
        return vectors, model.encode_users(HISTORY), stream(model)

    lean, plain = both(model, run)
    for a, b in zip(lean, plain, strict=True):
        assert torch.allclose(a, b, atol=ATOL), (a - b).abs().max()


def test_layer_alone_with_and_without_a_mask() -> None:
    """One layer, grouped-query attention (4 heads on 2 key/value heads): masked queries of
    several tokens, and the causal default without a mask."""
    model = make(adapters="serial:4")
    perturb(model)
    layer = model.llm.layers[1]
    lean = lean_layer(layer)
    assert lean is not None and lean.groups == 2
    torch.manual_seed(0)
    h = torch.randn(3, 5, 64)
    rope = model.llm.rotary_emb(h, torch.arange(5)[None].expand(3, -1))
    mask = torch.rand(3, 1, 5, 5) > 0.3
    mask[..., 0] = True  # every query sees a key
    with torch.no_grad():
        for m in (mask, None):
            got = lean(h, attention_mask=m, position_embeddings=rope)
            want = layer(h, attention_mask=m, position_embeddings=rope)
            assert torch.allclose(got, want, atol=ATOL)


def test_int8_copies_are_fused_too() -> None:
    model = make(adapters="none,serial:4")
    perturb(model)
    with torch.no_grad():
        quantize_for_serving(model, "int8")
    lean, plain = both(model, lambda: stream(model))
    assert torch.allclose(lean, plain, atol=ATOL)


def test_rebuilt_when_a_frozen_weight_changes() -> None:
    model = make()
    perturb(model)
    with torch.no_grad():
        before = model.upper_layers()
        assert model.upper_layers()[0] is before[0]  # reused while nothing changed
        model.llm.layers[0].self_attn.q_proj.weight.mul_(1.5)
        after = model.upper_layers()
        assert after[0] is not before[0]
    lean, plain = both(model, lambda: stream(model))
    assert torch.allclose(lean, plain, atol=ATOL)


def test_training_and_gradients_use_transformers_layers() -> None:
    model = make()
    with torch.no_grad():
        assert all(isinstance(x, LeanLayer) for x in model.upper_layers())
    assert list(model.upper_layers()) == list(model.llm.layers)  # grad enabled
    model.train()
    with torch.no_grad():
        assert list(model.upper_layers()) == list(model.llm.layers)


def test_unknown_hooks_keep_transformers_forward() -> None:
    model = make()
    layer = model.llm.layers[0]
    handle = layer.mlp.register_forward_hook(lambda module, args, output: output * 2)
    assert lean_layer(layer) is None
    handle.remove()
    layer.self_attn.extra = nn.Identity()  # a sublayer it does not know
    assert lean_layer(layer) is None


def test_bf16_layer_matches_transformers() -> None:
    """In bf16 (the CPU default with AVX512-BF16) the packed products give the same bits as
    transformers' Linear layers; what remains is rounding order in the norms and attention."""
    model = make(adapters="serial:4/lora:4")
    perturb(model)
    layer = model.llm.layers[1].to(torch.bfloat16)
    for adapter in model.adapters.modules():  # bottlenecks stay fp32, as attach_adapters makes them
        if hasattr(adapter, "down"):
            adapter.float()
    lean = lean_layer(layer)
    assert lean is not None
    torch.manual_seed(0)
    h = torch.randn(2, 4, 64).to(torch.bfloat16)
    rope = model.llm.rotary_emb(h, torch.arange(4)[None].expand(2, -1))
    mask = torch.ones(2, 1, 4, 4, dtype=torch.bool).tril()
    with torch.no_grad():
        got = lean(h, attention_mask=mask, position_embeddings=rope).float()
        want = layer(h, attention_mask=mask, position_embeddings=rope).float()
    assert (want - h.float()).abs().max() > 0.1  # the layer does change its input
    assert torch.allclose(got, want, atol=0.02, rtol=0.01), (got - want).abs().max()


def test_copies_and_pickles_rebuild_the_lean_forwards() -> None:
    """The packed weights are opaque oneDNN tensors: a copy or pickle leaves them out and
    builds its own on first use, with the same scores."""
    import copy
    import pickle

    model = make()
    perturb(model)
    with torch.no_grad():
        users = model.encode_users(HISTORY)
        for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert torch.allclose(other.encode_users(HISTORY), users, atol=ATOL)
            assert all(isinstance(x, LeanLayer) for x in other.upper_layers())
