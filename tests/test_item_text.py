"""Item sentences and catalog tokenization: format, field order, truncation by tokens, errors."""

from __future__ import annotations

import pytest
import torch

from darec.errors import ConfigError, DataError
from darec.models.item_text import item_sentence, tokenize_catalog

from .tiny_llm import tiny_tokenizer, tiny_vocab

OPI = {"title": "OPI  Nail\tLacquer", "brand": "OPI", "category": "nail polish", "price": ""}


def test_sentence_all_fields_in_dict_order() -> None:
    assert item_sentence(OPI, []) == "title: OPI Nail Lacquer; brand: OPI; category: nail polish"


def test_sentence_chosen_fields_in_given_order_skips_empty_and_missing() -> None:
    fields = ["category", "price", "title", "year"]
    assert item_sentence(OPI, fields) == "category: nail polish; title: OPI Nail Lacquer"
    assert item_sentence({"release_year": " 1995 "}, []) == "release year: 1995"
    assert item_sentence({}, ["title"]) == ""


def test_tokenize_catalog_pads_truncates_by_tokens_and_leaves_empty_rows() -> None:
    vocab = tiny_vocab()
    catalog = [
        {},
        {"title": "red nail polish", "brand": "OPI"},
        {"title": "", "brand": ""},  # no text
        {"title": "blue", "brand": "OPI"},
    ]
    tokens, lengths = tokenize_catalog(catalog, tiny_tokenizer(), ["title", "brand"], 8)
    # item 1: "title : red nail polish ; brand : opi" is 9 tokens, truncated to 8
    assert lengths.tolist() == [0, 8, 0, 7]
    assert tokens.dtype == lengths.dtype == torch.int64
    assert tokens.shape == (4, 8)
    words = "title : red nail polish ; brand : opi".split()
    assert tokens[1].tolist() == [vocab[w] for w in words[:8]]
    assert tokens[3].tolist() == [vocab[w] for w in "title : blue ; brand : opi".split()] + [0]
    assert tokens[0].tolist() == tokens[2].tolist() == [0] * 8

    short, short_lengths = tokenize_catalog(catalog, tiny_tokenizer(), ["title", "brand"], 3)
    assert short_lengths.tolist() == [0, 3, 0, 3]
    assert short[1].tolist() == [vocab["title"], vocab[":"], vocab["red"]]  # tokens, not chars


def test_width_is_longest_used_and_no_special_tokens() -> None:
    catalog = [{}, {"title": "red"}, {"title": "blue green"}]
    tokens, lengths = tokenize_catalog(catalog, tiny_tokenizer(), ["title"], 64)
    assert tokens.shape == (3, 4)  # "title : blue green", not padded to 64
    assert lengths.tolist() == [0, 3, 4]
    bos, eos = tiny_vocab()["[BOS]"], tiny_vocab()["[EOS]"]
    assert bos not in tokens.tolist()[2] and eos not in tokens.tolist()[2]


def test_catalog_without_text_gives_zero_width() -> None:
    tokens, lengths = tokenize_catalog([{}, {}, {}], tiny_tokenizer(), [], 16)
    assert tokens.shape == (3, 0)
    assert lengths.tolist() == [0, 0, 0]


def test_many_items_are_tokenized_in_order_across_batches() -> None:
    catalog = [{}] + [{"title": f"item number {i % 100}"} for i in range(2500)]
    tokens, lengths = tokenize_catalog(catalog, tiny_tokenizer(), ["title"], 16)
    vocab = tiny_vocab()
    assert tokens.shape == (2501, 5)
    assert int(lengths[1:].min()) == 5
    assert tokens[:, 4].tolist() == [0] + [vocab[str(i % 100)] for i in range(2500)]


def test_unknown_field_names_the_available_ones() -> None:
    catalog = [{}, {"title": "red", "brand": "OPI"}, {"title": "blue", "genres": "x"}]
    with pytest.raises(ConfigError, match=r"'author'.*available: brand, genres, title"):
        tokenize_catalog(catalog, tiny_tokenizer(), ["title", "author"], 8)
    with pytest.raises(ConfigError, match="expected a positive number"):
        tokenize_catalog(catalog, tiny_tokenizer(), ["title"], 0)
    with pytest.raises(DataError, match="catalog is empty"):
        tokenize_catalog([], tiny_tokenizer(), [], 8)
