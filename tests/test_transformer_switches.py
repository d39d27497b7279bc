"""The transformer switches of ModelConfig (norm, activation, positions, embedding_scale, init):
each changes the encoder as documented, and a tiny model with all of them on still learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from darec.config import ModelConfig, load_config
from darec.data.batching import pad_left
from darec.errors import ConfigError
from darec.models.layers import SelfAttention, position_ids
from darec.models.sasrec import SASRec
from tests.test_models import L, overfit, tiny_batch, tiny_model, tiny_windows, top1

ORIGINAL = {
    "norm": "pre",
    "activation": "relu",
    "positions": "from_newest",
    "embedding_scale": True,
    "init": "xavier",
}


def same_weights(target: nn.Module, source: nn.Module) -> nn.Module:
    """``target`` in eval mode with ``source``'s weights (the switches compared add none)."""
    target.load_state_dict(source.state_dict())
    return target.eval()


def test_defaults_are_recbole_sasrec() -> None:
    cfg = ModelConfig()
    assert (cfg.norm, cfg.activation, cfg.positions, cfg.embedding_scale, cfg.init) == (
        "post",
        "gelu",
        "from_oldest",
        False,
        "normal",
    )


def test_switches_load_from_overrides_and_are_validated() -> None:
    cfg = load_config(None, [f"model.{k}={str(v).lower()}" for k, v in ORIGINAL.items()])
    assert cfg.model.norm == "pre" and cfg.model.embedding_scale is True
    with pytest.raises(ConfigError, match="model.norm"):
        ModelConfig(norm="middle")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="model.init"):
        ModelConfig(init="kaiming")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="model.positions"):
        load_config(None, ["model.positions=from_end"])


# ------------------------------------------------------------------------------ positions


def test_position_ids() -> None:
    inputs = torch.tensor([[0, 0, 5, 6], [1, 2, 3, 4]])
    assert position_ids(inputs, "from_oldest", 8).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]
    assert position_ids(inputs, "from_newest", 8).tolist() == [[4, 5, 6, 7], [4, 5, 6, 7]]


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_from_newest_last_state_does_not_depend_on_padding(name: str) -> None:
    model = tiny_model(name, positions="from_newest").eval()
    items = np.array([4, 17, 2])
    with torch.no_grad():
        unpadded = model.encode_users(torch.from_numpy(items[None]))
        padded = model.encode_users(pad_left([items], L))
        short = model.encode_users(pad_left([items], 5))
        oldest = same_weights(tiny_model(name), model).encode_users(pad_left([items], L))
    torch.testing.assert_close(padded, unpadded)
    torch.testing.assert_close(short, unpadded)
    # the same weights read the history at other positions when counting from the oldest item
    assert (oldest - padded).abs().max() > 1e-3


def test_from_newest_places_the_newest_item_last() -> None:
    """A state depends on where the window ends: one item read alone (position L - 1) differs
    from the same item first in a longer history (position L - 3 under from_newest)."""
    model = tiny_model("sasrec", positions="from_newest").eval()
    with torch.no_grad():
        alone = model(torch.tensor([[4]]))[0, -1]  # (D,)
        first = model(torch.tensor([[4, 17, 2]]))[0, 0]  # (D,) causal: sees item 4 only
    assert (alone - first).abs().max() > 1e-3
    oldest = tiny_model("sasrec").eval()  # from_oldest: both are position 0
    with torch.no_grad():
        torch.testing.assert_close(
            oldest(torch.tensor([[4]]))[0, -1], oldest(torch.tensor([[4, 17, 2]]))[0, 0]
        )


# ------------------------------------------------------------------------------ pre-LN


def test_pre_norm_ends_with_a_layer_norm_and_zero_padding() -> None:
    model = tiny_model("sasrec", norm="pre").eval()
    inputs = pad_left([np.array([3, 9, 4]), np.arange(1, 9)], L)  # (2, L), first row padded
    with torch.no_grad():
        states = model(inputs)  # (2, L, D)
    real = inputs != 0
    rows = states[real]  # (P, D)
    torch.testing.assert_close(rows.mean(-1), torch.zeros(len(rows)), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        rows.var(-1, unbiased=False), torch.ones(len(rows)), atol=1e-3, rtol=0
    )
    assert (states[~real] == 0).all()


def test_pre_norm_normalises_only_the_attention_query() -> None:
    """Block output = x + Attn(query=LN(x), keys=values=x): changing the scale of x changes
    keys/values but not the normalised query."""
    torch.manual_seed(0)
    cfg = ModelConfig(hidden_size=16, num_heads=2, attn_dropout=0.0)
    attn = SelfAttention(cfg).eval()
    x = torch.randn(2, 5, 16)
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool).tril()
    with torch.no_grad():
        fused = attn(x, mask)
        split = attn(x, mask, query=x)
        other = attn(x, mask, query=2 * x)
    torch.testing.assert_close(split, fused)
    assert (other - fused).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
@pytest.mark.parametrize("switch", [{"norm": "pre"}, ORIGINAL])
def test_last_state_does_not_depend_on_padding_with_pre_norm(name: str, switch: dict) -> None:
    model = tiny_model(name, **switch).eval()
    items = torch.tensor([[4, 17, 2]])
    with torch.no_grad():
        states = [model.encode_users(pad_left([items[0].numpy()], n)) for n in (3, 5, L)]
    for state in states[1:]:
        torch.testing.assert_close(state, states[0])


def test_pre_norm_sasrec_stays_causal() -> None:
    model = tiny_model("sasrec", **ORIGINAL).eval()
    a = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    b = a.clone()
    b[0, 5] = 11
    with torch.no_grad():
        sa, sb = model(a), model(b)
    torch.testing.assert_close(sa[:, :5], sb[:, :5])
    assert (sa[:, 5:] - sb[:, 5:]).abs().amax(dim=-1).min() > 1e-4


# ------------------------------------------------------------------------------ activation, scale


def test_activation_switch() -> None:
    gelu = tiny_model("sasrec")
    relu = same_weights(tiny_model("sasrec", activation="relu"), gelu)
    assert any(isinstance(m, nn.ReLU) for m in relu.modules())
    assert not any(isinstance(m, nn.GELU) for m in relu.modules())
    inputs = torch.tensor([[0, 3, 4, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert (relu(inputs) - gelu.eval()(inputs)).abs().max() > 1e-4


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_embedding_scale_multiplies_item_embeddings_by_sqrt_d(norm: str) -> None:
    scaled = tiny_model("sasrec", norm=norm, embedding_scale=True).eval()
    plain = same_weights(tiny_model("sasrec", norm=norm), scaled)
    assert isinstance(plain, SASRec)
    with torch.no_grad():
        plain.item_embedding.weight.mul_(math.sqrt(16))
        inputs = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
        torch.testing.assert_close(scaled(inputs), plain(inputs))
        plain.item_embedding.weight.div_(math.sqrt(16))
        assert (scaled(inputs) - plain(inputs)).abs().max() > 1e-3


# ------------------------------------------------------------------------------ init


def test_xavier_init_follows_the_formula() -> None:
    torch.manual_seed(0)
    n, d = 3000, 64
    model = SASRec(ModelConfig(hidden_size=d, num_heads=1, inner_size=d, init="xavier"), n)
    table = model.item_embedding.weight.detach()  # (n + 1, d)
    assert (table[0] == 0).all()  # padding row
    # torch's fans of an (n + 1, d) weight: fan_in = d, fan_out = n + 1
    expected = {
        "item_embedding.weight": (table[1:], math.sqrt(2 / (d + n + 1))),
        "qkv": (model.encoder.blocks[0].attn.qkv.weight, math.sqrt(2 / (d + 3 * d))),
        "ffn": (model.encoder.blocks[0].ffn[0].weight, math.sqrt(2 / (d + d))),
    }
    for key, (weight, std) in expected.items():
        assert weight.std().item() == pytest.approx(std, rel=0.05), key
        assert abs(weight.mean().item()) < 0.1 * std, key
    assert (model.encoder.blocks[0].attn.qkv.bias == 0).all()
    assert (model.encoder.ln.weight == 1).all()
    normal = SASRec(ModelConfig(hidden_size=d, num_heads=1, inner_size=d), n)
    assert normal.item_embedding.weight[1:].std().item() == pytest.approx(0.02, rel=0.05)


# ------------------------------------------------------------------------------ all together


def test_original_sasrec_overfits_one_batch() -> None:
    model = tiny_model("sasrec", **ORIGINAL)
    first, last = overfit(model, tiny_batch(), steps=150)
    assert first > 2.5  # about log(20) = 3.0 at initialisation
    assert last < 0.1
    # each window's last step is read at the evaluator's positions (newest item at L - 1)
    windows = tiny_windows()
    predicted = top1(model, pad_left([w[:-1] for w in windows], L))
    assert predicted.tolist() == [int(w[-1]) for w in windows]


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_original_switches_train_without_nan_on_heavy_padding(name: str) -> None:
    from tests.test_models import assert_finite_step_on_short_windows

    assert_finite_step_on_short_windows(tiny_model(name, dropout=0.5, attn_dropout=0.5, **ORIGINAL))


def test_bert4rec_with_original_switches_learns() -> None:
    model = tiny_model("bert4rec", **ORIGINAL)
    first, last = overfit(model, tiny_batch(), steps=200)
    assert first > 2.5
    assert last < 0.3 * first


# ------------------------------------------------------------------------------ BERT4Rec's own

PUBLISHED_BERT4REC = {
    "positions": "from_newest",
    "init": "xavier-clamped",
    "mask_fallback": False,
    "output_bias": False,
}
"""The published cross-entropy BERT4Rec code's choices (MTandHJ/CE-SCE-LLMRec)."""


def test_xavier_clamped_init_stays_within_0_02() -> None:
    model = tiny_model("bert4rec", init="xavier-clamped")
    xavier = tiny_model("bert4rec", init="xavier")
    for (name, w), (_, x) in zip(model.named_parameters(), xavier.named_parameters(), strict=True):
        if name.endswith("weight") and w.dim() == 2:  # Linear and Embedding weights
            assert w.abs().max() <= 0.02 + 1e-9, name
            assert x.abs().max() > 0.02, name  # plain Xavier goes beyond: the clip did something
            assert w.std() > 0.005, name  # still random, not flattened to zero


def test_bert4rec_without_output_bias_scores_by_embeddings_alone() -> None:
    model = tiny_model("bert4rec", output_bias=False).eval()
    assert not any("output_bias" in n for n, _ in model.named_parameters())
    history = pad_left([w[:-1] for w in tiny_windows()], L)
    items = torch.arange(model.num_items + 1)
    with torch.no_grad():
        state = model.encode_users(history)
        scores = model.score_items(state, items)
    expected = state @ model.item_embedding.weight[: model.num_items + 1].T
    torch.testing.assert_close(scores[:, 1:], expected[:, 1:])
    assert torch.isinf(scores[:, 0]).all()


def test_bert4rec_without_mask_fallback_skips_unmasked_windows() -> None:
    """With nothing drawn for masking, the fallback trains on each window's last item; without
    it the loss is an empty zero that still backpropagates."""
    with_fallback = tiny_model("bert4rec", mask_prob=1e-9)
    without = tiny_model("bert4rec", mask_prob=1e-9, mask_fallback=False)
    assert with_fallback.loss(tiny_batch()).item() > 0
    loss = without.loss(tiny_batch())
    assert loss.item() == 0.0
    loss.backward()  # a zero with a graph: the trainer's step stays valid


def test_bert4rec_with_the_published_code_choices_learns() -> None:
    model = tiny_model("bert4rec", **PUBLISHED_BERT4REC)
    first, last = overfit(model, tiny_batch(), steps=200)
    assert first > 2.5
    assert last < 0.3 * first


def test_unknown_init_is_refused() -> None:
    with pytest.raises(ConfigError, match="xavier-clamped"):
        ModelConfig(init="kaiming")  # type: ignore[arg-type]
