"""Int8 weight-only serving (darec.models.quantize): small calls read int8 weights, larger ones
the exact weights; what a checkpoint holds and the catalog cache do not change."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from darec.config import ModelConfig
from darec.errors import ConfigError
from darec.models.quantize import Int8RowsLinear, quantize_for_serving
from darec.models.sasrec import SASRec
from tests.test_darec import HISTORY, make, perturb


def test_small_calls_read_int8_and_large_ones_the_exact_weight() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    q = Int8RowsLinear(linear, max_rows=4)
    assert q.weight is linear.weight and q.bias is linear.bias
    with torch.no_grad():
        x = torch.randn(2, 1, 64)  # 2 rows: the int8 copy
        got, want = q(x), linear(x)
        assert not torch.equal(got, want)
        assert (got - want).abs().max() <= 0.02 * want.abs().max()
        y = torch.randn(1, 5, 64)  # 5 rows: exact
        assert torch.equal(q(y), linear(y))
    # with gradients wanted, always exact (the int8 kernel has no backward)
    assert torch.equal(q(x), linear(x))


def test_stream_steps_close_to_exact_and_checkpoint_unchanged() -> None:
    model = make(adapters="none,serial:4")  # stream tokens enter at layer 1
    perturb(model)
    items = [4, 5, 9, 2]
    with torch.no_grad():
        catalog = model.catalog()
        keys = list(model.state_dict())
        params = list(model.parameters())
        exact = model.stream_start(torch.tensor(items[:2]))
        exact = model.stream_step(exact, items[2])
        whole = model.encode_users(HISTORY)
        changed = quantize_for_serving(model, "int8")
        # one layer from the entry: q, k, v, o and the three MLP projections
        assert changed == 7
        assert isinstance(model.llm.layers[1].self_attn.q_proj, Int8RowsLinear)
        assert isinstance(model.llm.layers[0].self_attn.q_proj, nn.Linear)  # below the entry
        assert list(model.state_dict()) == keys  # the int8 copies are not saved
        assert list(model.parameters()) == params
        quantized = model.stream_start(torch.tensor(items[:2]))
        quantized = model.stream_step(quantized, items[2])
        assert model.catalog() is catalog  # the cache of the exact weights stays
        # whole histories (more rows than the int8 path takes) score exactly as before
        assert torch.equal(model.encode_users(HISTORY), whole)
    assert not torch.equal(quantized.user, exact.user)
    assert torch.allclose(quantized.user, exact.user, atol=0.05 * exact.user.abs().max())


def test_lora_matrices_are_left_alone() -> None:
    model = make(adapters="lora:4")
    quantize_for_serving(model, "int8")
    names = [n for n, m in model.llm.named_modules() if isinstance(m, Int8RowsLinear)]
    assert names and all("lora_" not in n for n in names)
    assert any(n.endswith("base_layer") for n in names)  # LoRA-wrapped backbone weights


def test_refused_where_it_does_not_apply() -> None:
    with pytest.raises(ConfigError, match="one of none, int8"):
        quantize_for_serving(make(), "fp8")
    sasrec = SASRec(ModelConfig(name="sasrec", hidden_size=8, num_heads=1, inner_size=8), 5)
    assert quantize_for_serving(sasrec, "none") == 0
    with pytest.raises(ConfigError, match="sasrec has none"):
        quantize_for_serving(sasrec, "int8")
