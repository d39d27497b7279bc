"""A tiny random LLaMA and a word-level tokenizer, built in memory (no network, no files).

Tests that need a backbone use :func:`tiny_backbone`; the vocabulary covers the words of the
tiny datasets in ``conftest.py`` ("Item number 7") and of the item-text examples.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from darec.models.backbone import Backbone, backbone_from_model

SPECIAL = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
WORDS = (
    ":;,.-&'!()/"  # punctuation, one token each
    + " title brand category price year genres item number opi nail lacquer polish shimmer"
    " simmer and the red blue green of"
).split(" ")
VOCAB_SIZE = 300


def tiny_vocab() -> dict[str, int]:
    """Token -> id: special tokens first ([PAD] = 0), punctuation, words, numbers, fillers."""
    tokens = SPECIAL + list(WORDS[0]) + WORDS[1:] + [str(n) for n in range(100)]
    tokens += [f"w{n}" for n in range(VOCAB_SIZE - len(tokens))]
    return {token: i for i, token in enumerate(tokens)}


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Lower-casing word-level tokenizer: words and punctuation split apart, unknowns -> [UNK]."""
    tok = Tokenizer(models.WordLevel(tiny_vocab(), unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
    )


def tiny_causal_lm(num_layers: int = 2, hidden: int = 64, seed: int = 0) -> LlamaForCausalLM:
    """A randomly initialised LLaMA (4 heads, 2 KV heads, tied embeddings), fp32, eval mode."""
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        attn_implementation="sdpa",
    )
    with torch.random.fork_rng(devices=[]):  # seeded without touching the global generator
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.eval()


def tiny_backbone(num_layers: int = 2, hidden: int = 64, seed: int = 0) -> Backbone:
    """A frozen fp32 tiny-LLaMA backbone with the tiny tokenizer."""
    return backbone_from_model(
        tiny_causal_lm(num_layers, hidden, seed), tiny_tokenizer(), source="tiny-llama"
    )
