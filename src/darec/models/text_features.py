"""Frozen item text features: encode every item sentence once, normalise, cache by content.

Each item's sentence (``text.fields``, ``text.max_tokens``) is read by the frozen ``text.encoder``
(:mod:`darec.models.text_encoders`) and pooled (``text.pooling``). The catalog's vectors are then
standardised per dimension, or whitened (``text.whiten``: PCA, unit variance per component,
optionally the top ``text.whiten_dims`` components), and L2-normalised. Items without text get a
zero row.

The pooled encoder outputs (the expensive part) are cached under
``<cache_dir>/text-features/<key>.safetensors`` when the data cache is on (``data.cache``), where
the key hashes everything they depend on (encoder and its version, layers, dtype, fields,
max_tokens, pooling and the item sentences themselves), so a second run skips the encoder;
standardising or whitening them again takes milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from darec.config import Config, TextConfig
from darec.errors import ConfigError
from darec.models.base import ModelContext
from darec.models.item_text import check_fields, item_sentence
from darec.models.text_encoders import encoder_version, load_text_encoder, pool

__all__ = [
    "features_for",
    "item_text_features",
    "new_item_text_features",
    "standardise",
    "whiten",
]

_FORMAT = 2
"""Bumped when the way features are computed changes, so older cached files are not reused."""


Normaliser = Callable[[torch.Tensor], torch.Tensor]


def standardiser(rows: torch.Tensor) -> Normaliser:
    """Zero mean and unit variance per dimension, with the statistics of ``rows`` (M, D)."""
    mean, std = rows.mean(0), rows.std(0, unbiased=False).clamp(min=1e-6)
    return lambda x: (x - mean) / std


def whitener(rows: torch.Tensor, dims: int = 0) -> Normaliser:
    """PCA whitening fitted on ``rows`` (M, D): zero mean, identity covariance over them.

    Keeps the top ``dims`` principal components (0: all D). Components with (near) zero variance
    (below 1e-9 of the largest) are scaled as if at that floor instead of blowing up.
    """
    if dims < 0 or dims > rows.shape[1]:
        raise ConfigError(
            f"text.whiten_dims = {dims}; expected 0 (all) to the feature width {rows.shape[1]}"
        )
    mean = rows.mean(0)
    x = (rows - mean).double()  # (M, D)
    cov = x.T @ x / len(x)  # (D, D)
    values, vectors = torch.linalg.eigh(cov)  # ascending
    order = values.argsort(descending=True)[: dims or len(values)]
    values, vectors = values[order], vectors[:, order]  # (K,), (D, K)
    floor = max(float(values[0]) * 1e-9, 1e-12) if len(values) else 1e-12
    projection = vectors / values.clamp(min=floor).sqrt()  # (D, K)
    return lambda y: ((y - mean).double() @ projection).float()  # (M, K)


def standardise(rows: torch.Tensor) -> torch.Tensor:
    """(M, D) rows with zero mean and unit variance per dimension (constant dimensions: zero)."""
    return standardiser(rows)(rows)


def whiten(rows: torch.Tensor, dims: int = 0) -> torch.Tensor:
    """(M, K) PCA-whitened ``rows`` (M, D) (see :func:`whitener`)."""
    return whitener(rows, dims)(rows)


def _normaliser(t: TextConfig, rows: torch.Tensor) -> Normaliser:
    """``text.whiten`` or per-dimension standardisation, fitted on ``rows``."""
    return whitener(rows, t.whiten_dims) if t.whiten else standardiser(rows)


def _cache_key(cfg: TextConfig, version: str, dtype: torch.dtype, sentences: list[str]) -> str:
    texts = hashlib.sha256("\x00".join(sentences).encode()).hexdigest()
    parts = {
        "format": _FORMAT,
        "encoder": cfg.encoder,
        "version": version,
        "encoder_layers": cfg.encoder_layers,
        "dtype": str(dtype),
        "fields": list(cfg.fields),
        "max_tokens": cfg.max_tokens,
        "pooling": cfg.pooling,
        "texts": texts,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _save(path: Path, feats: torch.Tensor) -> None:
    """Write ``feats`` to ``path`` atomically (a reader sees the whole file or none)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.stem}-", suffix=".safetensors", dir=path.parent)
    os.close(fd)
    try:
        save_file({"pooled": feats.contiguous()}, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def item_text_features(
    cfg: Config, ctx: ModelContext, batch_size: int = 256, cache: bool = True
) -> torch.Tensor:
    """(N + 1, D) normalised text features of every item; row 0 (padding) and items without text
    are zero. The pooled encoder outputs are cached under ``ctx.cache_dir`` (None: no cache);
    ``cache=False`` always runs the encoder and writes nothing."""
    if ctx.catalog is None:
        raise ConfigError("model sasrec-text needs the item catalog (item texts) of the data")
    if not ctx.catalog:
        raise ConfigError("the item catalog is empty; expected catalog[0] = {} (padding) and items")
    t = cfg.text
    if t.max_tokens < 1:
        raise ConfigError(f"text.max_tokens = {t.max_tokens}; expected a positive number")
    check_fields(ctx.catalog, t.fields)
    sentences = [item_sentence(attributes, t.fields) for attributes in ctx.catalog]
    sentences[0] = ""  # padding never has text
    index = [i for i, sentence in enumerate(sentences) if sentence]
    pooled = _pooled(cfg, sentences, index, ctx.cache_dir if cache else None, batch_size)
    width = t.whiten_dims if t.whiten and t.whiten_dims else pooled.shape[1]
    feats = torch.zeros(len(sentences), width)
    if index:
        rows = pooled[index]  # (M, D)
        feats[index] = F.normalize(_normaliser(t, rows)(rows), dim=-1)
    return feats


def features_for(cfg: Config, ctx: ModelContext) -> torch.Tensor:
    """The item text features a model is built with: encoded from the catalog, or a (N + 1, 1)
    placeholder when the model is restored from a checkpoint, which carries its features."""
    if ctx.catalog is None:
        return torch.zeros(ctx.num_items + 1, 1)
    return item_text_features(cfg, ctx)


def new_item_text_features(
    cfg: Config,
    catalog: list[dict[str, str]],
    new: list[dict[str, str]],
    batch_size: int = 256,
) -> torch.Tensor:
    """(M, D) features of items ``new`` (attributes) that a model trained on ``catalog`` never
    saw, on the same scale as :func:`item_text_features` of ``catalog``: normalised with the
    training catalog's statistics, so an old item and a new one with the same text get the same
    vector. The training catalog's encoder outputs are read from the feature cache when the run
    wrote one (``data.cache``), so only the new items are encoded. Raise :class:`ConfigError`
    naming a new item without text."""
    t = cfg.text
    check_fields(catalog, t.fields)
    known = [item_sentence(attributes, t.fields) for attributes in catalog]
    known[0] = ""  # padding never has text
    added = [item_sentence(attributes, t.fields) for attributes in new]
    missing = [i for i, sentence in enumerate(added) if not sentence]
    if missing:
        fields = ", ".join(t.fields) or "any attribute"
        raise ConfigError(
            f"new item {missing[0] + 1} of {len(new)} ({new[missing[0]]!r}) has no text in "
            f"text.fields ({fields}); a model can add an item from its text only"
        )
    # the training catalog's pooled outputs come from the feature cache the run wrote (same
    # key) when the data cache is on; only the new sentences go through the encoder
    from darec.paths import cache_dir

    cache = cache_dir(cfg.cache_dir) if cfg.data.cache else None
    index = [i for i, sentence in enumerate(known) if sentence]
    trained = _pooled(cfg, known, index, cache, batch_size)[index]
    pooled = _pooled(cfg, added, list(range(len(added))), None, batch_size)
    return F.normalize(_normaliser(t, trained)(pooled), dim=-1)


def _pooled(
    cfg: Config, sentences: list[str], index: list[int], cache: Path | None, batch_size: int
) -> torch.Tensor:
    """(N + 1, D) pooled encoder output of every sentence (zero rows without text), read from
    ``cache / "text-features"`` when an earlier run wrote it."""
    from darec.models.backbone import resolve_dtype
    from darec.paths import cache_dir

    t = cfg.text
    dtype = resolve_dtype(t.dtype, torch.device("cpu"))
    path = None
    if cache is not None:
        key = _cache_key(t, encoder_version(t.encoder), dtype, sentences)
        path = Path(cache) / "text-features" / f"{key}.safetensors"
        if path.is_file():
            from safetensors.torch import load_file

            return load_file(str(path))["pooled"]
    encoder = load_text_encoder(t.encoder, t.encoder_layers, dtype, cache_dir(cfg.cache_dir))
    pooled = torch.zeros(len(sentences), encoder.hidden_size)
    if index:
        means = encoder.encode([sentences[i] for i in index], t.max_tokens, batch_size)
        pooled[index] = pool(means, t.pooling)
    if path is not None:
        _save(path, pooled)
    return pooled
