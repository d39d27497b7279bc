"""Adapters on a tiny random LLaMA: layout text, identity at init, where each adapter acts,
which parameters train, bf16 backbones, and layers driven one at a time."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

from darec.errors import ConfigError  # noqa: E402
from darec.models.adapters import (  # noqa: E402
    SLOTS,
    Adapters,
    LayerAdapters,
    LayerDims,
    SlotSpec,
    attach_adapters,
    count_adapter_parameters,
    first_adapted_layer,
    format_layout,
    parse_layout,
)

LORA_PROJ = {
    "self_attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
}
ARCH_SPECS = ("serial:4", "parallel:4", "lora:4", "ia3")
MIXED = "lora:4/ia3,serial:8/parallel:4,none/none,ia3/lora:2"  # 4 layers, every type


def tiny_llama(num_layers: int = 3, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    return transformers.LlamaModel(config).to(dtype).eval()


def embeds(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 5, 64, generator=g).to(dtype)  # (B, L, D)


def run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(inputs_embeds=x).last_hidden_state


def trainable(model: nn.Module, adapters: Adapters) -> dict[str, nn.Parameter]:
    out = {f"llm.{n}": p for n, p in model.named_parameters() if p.requires_grad}
    out.update({f"adapters.{n}": p for n, p in adapters.named_parameters() if p.requires_grad})
    return out


def perturb(model: nn.Module, adapters: Adapters) -> None:
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in trainable(model, adapters).values():
            p.add_(0.5 * torch.randn(p.shape, generator=g).to(p.dtype))


def sublayer_outputs(model: nn.Module, x: torch.Tensor) -> dict[tuple[int, str], torch.Tensor]:
    """Output of every layer's self_attn and mlp (after any adapter hook), in call order."""
    out: dict[tuple[int, str], torch.Tensor] = {}
    handles = []
    for i, layer in enumerate(model.layers):
        for slot, name in (("attn", "self_attn"), ("mlp", "mlp")):

            def record(module, args, output, key=(i, slot)):
                out[key] = (output[0] if isinstance(output, tuple) else output).detach().clone()

            handles.append(getattr(layer, name).register_forward_hook(record))
    run(model, x)
    for h in handles:
        h.remove()
    return out


def expected_trainable(spec: str, num_layers: int = 3) -> set[str]:
    layers = range(num_layers)
    if spec.startswith(("serial", "parallel")):
        return {
            f"adapters.layers.{i}.{s}.{lin}.{w}"
            for i in layers
            for s in SLOTS
            for lin in ("down", "up")
            for w in ("weight", "bias")
        }
    if spec.startswith("lora"):
        return {
            f"llm.layers.{i}.{sub}.{p}.lora_{ab}.default.weight"
            for i in layers
            for sub, projections in LORA_PROJ.items()
            for p in projections
            for ab in ("A", "B")
        }
    assert spec == "ia3"
    return {
        f"llm.layers.{i}.self_attn.{p}.ia3_l.default" for i in layers for p in ("k_proj", "v_proj")
    } | {f"llm.layers.{i}.mlp.down_proj.ia3_l.default" for i in layers}


# ---------------------------------------------------------------- layout text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("serial:16", "serial:16"),
        ("none/none*2,serial:16/lora:8", "none*2,serial:16/lora:8"),
        ("none*1,none,serial:4", "none*2,serial:4"),
        (" Serial:4 / IA3 ", "serial:4/ia3"),
        ("ia3/ia3*3", "ia3"),
        ("lora:8/lora:8,parallel:2*2", "lora:8,parallel:2*2"),
    ],
)
def test_parse_format_round_trip(text, canonical):
    layout = parse_layout(text, 3)
    assert len(layout) == 3
    assert format_layout(layout) == canonical
    assert parse_layout(format_layout(layout), 3) == layout


def test_repeats_expand_in_order_and_one_spec_fills_both_slots():
    layout = parse_layout("none/none*2,serial:16/lora:8*3,parallel:2", 6)
    none = LayerAdapters(SlotSpec("none"), SlotSpec("none"))
    mixed = LayerAdapters(SlotSpec("serial", 16), SlotSpec("lora", 8))
    par = LayerAdapters(SlotSpec("parallel", 2), SlotSpec("parallel", 2))
    assert layout == (none, none, mixed, mixed, mixed, par)
    serial = SlotSpec("serial", 16)
    assert parse_layout("serial:16", 30) == (LayerAdapters(serial, serial),) * 30
    assert first_adapted_layer(layout) == 2
    assert first_adapted_layer(parse_layout("none/ia3", 3)) == 0
    assert first_adapted_layer(parse_layout("none", 3)) is None


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("none*2,serail:16", ["'serail:16'", "unknown adapter type 'serail'", "none, serial"]),
        ("none/none*2,serial", ["entry 'serial'", "needs a size", "serial:16"]),
        ("ia3:4", ["'ia3:4'", "takes no size"]),
        ("serial:0", ["must be >= 1, got 0"]),
        ("none,lora:x*2", ["entry 'lora:x*2'", "'x'", "not an integer"]),
        ("none*0,serial:4*3", ["entry 'none*0'", "repeat must be >= 1"]),
        ("none,none/none/none,none", ["entry 'none/none/none'", "single '/'"]),
        ("none,,serial:4*2", ["entry ''", "missing adapter type"]),
        ("none*2,serial:4*2", ["describes 4 layers", "has 3"]),
        ("none,serial:4", ["describes 2 layers", "has 3"]),
    ],
)
def test_parse_errors_name_the_entry(text, fragments):
    with pytest.raises(ConfigError) as info:
        parse_layout(text, 3)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_slot_spec_validates_itself():
    with pytest.raises(ConfigError, match="valid types: none, serial, parallel, lora, ia3"):
        SlotSpec("adapter", 4)
    with pytest.raises(ConfigError, match="'lora' needs a size"):
        SlotSpec("lora")
    with pytest.raises(ConfigError, match="'ia3' takes no size"):
        SlotSpec("ia3", 2)


# ---------------------------------------------------------------- one architecture everywhere


@pytest.mark.parametrize("spec", [*ARCH_SPECS, "none"])
def test_identity_at_init_then_perturbed_adapters_change_the_output(spec):
    x = embeds()
    reference = run(tiny_llama(), x)
    model = tiny_llama()
    adapters = attach_adapters(model, parse_layout(spec, 3), dropout=0.1)
    torch.testing.assert_close(run(model, x), reference, atol=1e-6, rtol=0)
    perturb(model, adapters)
    changed = (run(model, x) - reference).abs().max().item()
    if spec == "none":
        assert changed == 0.0
    else:
        assert changed > 1e-3


@pytest.mark.parametrize("spec", ARCH_SPECS)
def test_gradients_reach_exactly_the_adapter_parameters(spec):
    model = tiny_llama()
    before = {k.replace(".base_layer", ""): v.clone() for k, v in model.state_dict().items()}
    adapters = attach_adapters(model, parse_layout(spec, 3))
    params = trainable(model, adapters)
    assert set(params) == expected_trainable(spec)
    dims = LayerDims.from_config(model.config)
    assert sum(p.numel() for p in params.values()) == count_adapter_parameters(
        adapters.layout, dims
    )
    assert {f"llm.{n}" for n in adapters.peft_parameter_names} == {
        n for n in params if n.startswith("llm.")
    }
    # the frozen backbone weights are untouched by the injection
    after = {k.replace(".base_layer", ""): v for k, v in model.state_dict().items()}
    for name, value in before.items():
        assert torch.equal(after[name], value), name

    perturb(model, adapters)  # non-zero up / B, so every adapter tensor gets a gradient
    model.train()
    adapters.train()
    out = model(inputs_embeds=embeds()).last_hidden_state
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    (out * weights).sum().backward()
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


@pytest.mark.parametrize("spec", ARCH_SPECS)
@pytest.mark.parametrize("slot", SLOTS)
def test_an_adapter_acts_at_its_own_slot_only(spec, slot):
    x = embeds()
    reference = sublayer_outputs(tiny_llama(), x)
    model = tiny_llama()
    layer = f"{spec}/none" if slot == "attn" else f"none/{spec}"
    adapters = attach_adapters(model, parse_layout(f"none/none,{layer},none/none", 3))
    at_init = sublayer_outputs(model, x)
    for key, value in reference.items():
        torch.testing.assert_close(at_init[key], value, atol=1e-6, rtol=0)

    perturb(model, adapters)
    after = sublayer_outputs(model, x)
    order = [(i, s) for i in range(3) for s in SLOTS]  # sublayers in call order
    at = order.index((1, slot))
    for key in order[:at]:
        assert torch.equal(after[key], reference[key]), key
    assert (after[order[at]] - reference[order[at]]).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["serial", "parallel"])
@pytest.mark.parametrize("slot", SLOTS)
def test_bottleneck_formulas(kind, slot):
    base = tiny_llama()
    model = tiny_llama()
    adapters = attach_adapters(model, parse_layout(f"{kind}:4", 3))
    perturb(model, adapters)
    adapter = adapters.layers[1][slot]
    x = embeds()  # (B, L, D) input of the sublayer
    with torch.no_grad():
        if slot == "attn":
            cos_sin = base.rotary_emb(x, torch.arange(x.shape[1])[None])
            y = base.layers[1].self_attn(hidden_states=x, position_embeddings=cos_sin)[0]
            got = model.layers[1].self_attn(hidden_states=x, position_embeddings=cos_sin)[0]
        else:
            y, got = base.layers[1].mlp(x), model.layers[1].mlp(x)
        read = y if kind == "serial" else x
        expected = y + adapter.up(torch.relu(adapter.down(read)))
    torch.testing.assert_close(got, expected)


def test_lora_scale_is_two_and_ia3_scales_k_v_outputs_and_down_input():
    base = tiny_llama()
    model = tiny_llama()
    adapters = attach_adapters(model, parse_layout("lora:4/ia3,ia3/lora:2,none", 3))
    perturb(model, adapters)
    x = embeds()
    h = torch.randn(2, 5, 128)  # input of down_proj
    with torch.no_grad():
        q = model.layers[0].self_attn.q_proj
        lora = q.lora_B["default"].weight @ q.lora_A["default"].weight  # (D, D)
        torch.testing.assert_close(q(x), base.layers[0].self_attn.q_proj(x) + 2 * x @ lora.T)
        down = model.layers[1].mlp.down_proj
        lora = down.lora_B["default"].weight @ down.lora_A["default"].weight  # (D, I)
        torch.testing.assert_close(down(h), base.layers[1].mlp.down_proj(h) + 2 * h @ lora.T)

        for p in ("k_proj", "v_proj"):
            proj = getattr(model.layers[1].self_attn, p)
            scale = proj.ia3_l["default"][:, 0]  # (kv_out,)
            ref = getattr(base.layers[1].self_attn, p)(x)
            torch.testing.assert_close(proj(x), ref * scale)
        down = model.layers[0].mlp.down_proj
        scale = down.ia3_l["default"][0]  # (I,)
        torch.testing.assert_close(down(h), base.layers[0].mlp.down_proj(h * scale))


# ---------------------------------------------------------------- mixed layouts


def test_mixed_layout_in_one_model():
    x = embeds()
    reference = run(tiny_llama(4), x)
    model = tiny_llama(4)
    layout = parse_layout(MIXED, 4)
    adapters = attach_adapters(model, layout, dropout=0.1)
    torch.testing.assert_close(run(model, x), reference, atol=1e-6, rtol=0)

    assert model.layers[0].self_attn.q_proj.lora_A["default"].weight.shape == (4, 64)
    assert model.layers[3].mlp.down_proj.lora_A["default"].weight.shape == (2, 128)
    assert model.layers[3].self_attn.k_proj.ia3_l["default"].shape == (32, 1)
    assert model.layers[0].mlp.down_proj.ia3_l["default"].shape == (1, 128)
    assert set(adapters.layers[1]) == {"attn", "mlp"} and not adapters.layers[2]
    assert not hasattr(model, "peft_config")

    params = trainable(model, adapters)
    dims = LayerDims.from_config(model.config)
    assert sum(p.numel() for p in params.values()) == count_adapter_parameters(layout, dims)
    assert all(not p.requires_grad for n, p in model.named_parameters() if f"llm.{n}" not in params)

    perturb(model, adapters)
    assert (run(model, x) - reference).abs().max() > 1e-3


def test_state_dict_keys_are_stable_across_builds():
    def owner() -> nn.ModuleDict:
        model = tiny_llama(4)
        adapters = attach_adapters(model, parse_layout(MIXED, 4))
        return nn.ModuleDict({"llm": model, "adapters": adapters})

    first, second = owner().state_dict(), owner().state_dict()
    assert list(first) == list(second)
    assert "adapters.layers.1.attn.down.weight" in first
    assert "adapters.layers.1.mlp.up.bias" in first
    assert "llm.layers.0.self_attn.q_proj.lora_B.default.weight" in first
    assert "llm.layers.3.self_attn.v_proj.ia3_l.default" in first


def test_deepcopy_rewires_hooks_to_the_copied_adapters():
    x = embeds()
    model = tiny_llama(4)
    owner = nn.ModuleDict(
        {"llm": model, "adapters": attach_adapters(model, parse_layout(MIXED, 4))}
    )
    twin = copy.deepcopy(owner)
    perturb(twin["llm"], twin["adapters"])
    assert torch.equal(run(owner["llm"], x), run(tiny_llama(4), x))
    assert (run(twin["llm"], x) - run(owner["llm"], x)).abs().max() > 1e-3


def test_attach_rejects_wrong_layer_count_bad_dropout_and_a_second_layout():
    model = tiny_llama()
    with pytest.raises(ConfigError, match="has 4 layers, but the backbone has 3"):
        attach_adapters(model, parse_layout("serial:4", 4))
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\), got 1.5"):
        attach_adapters(model, parse_layout("serial:4", 3), dropout=1.5)
    attach_adapters(model, parse_layout("none/lora:2", 3))
    with pytest.raises(RuntimeError, match="already has adapters"):
        attach_adapters(model, parse_layout("serial:4", 3))


# ---------------------------------------------------------------- precision and direct driving


def test_bf16_backbone_keeps_fp32_adapters_and_trains():
    x = embeds(torch.bfloat16)
    reference = run(tiny_llama(4, torch.bfloat16), x)
    model = tiny_llama(4, torch.bfloat16)
    adapters = attach_adapters(model, parse_layout(MIXED, 4))
    params = trainable(model, adapters)
    assert params and all(p.dtype == torch.float32 for p in params.values())
    assert all(
        p.dtype == torch.bfloat16 for n, p in model.named_parameters() if not p.requires_grad
    )
    torch.testing.assert_close(run(model, x), reference, atol=1e-6, rtol=0)

    perturb(model, adapters)
    out = model(inputs_embeds=x).last_hidden_state
    assert out.dtype == torch.bfloat16
    out.float().square().mean().backward()
    for name, p in params.items():
        assert p.grad is not None and p.grad.dtype == torch.float32, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_driving_layers_directly_matches_the_model_forward():
    model = tiny_llama(4)
    adapters = attach_adapters(model, parse_layout(MIXED, 4))
    perturb(model, adapters)
    x = embeds()
    expected = run(model, x)

    B, L, _ = x.shape
    position_ids = torch.arange(L)[None]  # (1, L)
    cos_sin = model.rotary_emb(x, position_ids)
    mask = torch.ones(L, L, dtype=torch.bool).tril()[None, None].expand(B, 1, L, L)
    h = x
    with torch.no_grad():
        for layer in model.layers:
            h = layer(h, attention_mask=mask, position_embeddings=cos_sin, cache=None)
        h = model.norm(h)
    torch.testing.assert_close(h, expected, atol=1e-5, rtol=1e-5)
