"""Frozen item text features: encode every item sentence once, normalise, cache by content.

Each item's sentence (``text.fields``, ``text.max_tokens``) is read by the frozen ``text.encoder``
(:mod:`darec.models.text_encoders`) and pooled (``text.pooling``). The catalog's vectors are then
standardised per dimension, or whitened (``text.whiten``: PCA, unit variance per component,
optionally the top ``text.whiten_dims`` components), and L2-normalised. Items without text get a
zero row.

The result is cached under ``<cache_dir>/text-features/<key>.safetensors`` (when the data cache is
on, ``data.cache``), where the key hashes
everything it depends on (encoder and its version, layers, dtype, fields, max_tokens, pooling,
whitening and the item sentences themselves), so a second run skips the encoder.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from darec.config import Config, TextConfig
from darec.errors import ConfigError
from darec.models.base import ModelContext
from darec.models.item_text import check_fields, item_sentence
from darec.models.text_encoders import TextEncoder, encoder_version, load_text_encoder, pool

__all__ = ["item_text_features", "standardise", "whiten"]

_FORMAT = 1
"""Bumped when the way features are computed changes, so older cached files are not reused."""


def standardise(rows: torch.Tensor) -> torch.Tensor:
    """(M, D) rows with zero mean and unit variance per dimension (constant dimensions: zero)."""
    return (rows - rows.mean(0)) / rows.std(0, unbiased=False).clamp(min=1e-6)


def whiten(rows: torch.Tensor, dims: int = 0) -> torch.Tensor:
    """(M, K) PCA-whitened ``rows`` (M, D): zero mean, identity covariance over the rows.

    Keeps the top ``dims`` principal components (0: all D). Components with (near) zero variance
    (below 1e-9 of the largest) are scaled as if at that floor instead of blowing up.
    """
    if dims < 0 or dims > rows.shape[1]:
        raise ConfigError(
            f"text.whiten_dims = {dims}; expected 0 (all) to the feature width {rows.shape[1]}"
        )
    x = (rows - rows.mean(0)).double()  # (M, D)
    cov = x.T @ x / len(x)  # (D, D)
    values, vectors = torch.linalg.eigh(cov)  # ascending
    order = values.argsort(descending=True)[: dims or len(values)]
    values, vectors = values[order], vectors[:, order]  # (K,), (D, K)
    floor = max(float(values[0]) * 1e-9, 1e-12) if len(values) else 1e-12
    return (x @ (vectors / values.clamp(min=floor).sqrt())).float()  # (M, K)


def _cache_key(cfg: TextConfig, version: str, sentences: list[str]) -> str:
    texts = hashlib.sha256("\x00".join(sentences).encode()).hexdigest()
    parts = {
        "format": _FORMAT,
        "encoder": cfg.encoder,
        "version": version,
        "encoder_layers": cfg.encoder_layers,
        "dtype": cfg.dtype,
        "fields": list(cfg.fields),
        "max_tokens": cfg.max_tokens,
        "pooling": cfg.pooling,
        "whiten": cfg.whiten,
        "whiten_dims": cfg.whiten_dims if cfg.whiten else 0,
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
        save_file({"feats": feats.contiguous()}, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def item_text_features(
    cfg: Config, ctx: ModelContext, batch_size: int = 256, cache: bool = True
) -> torch.Tensor:
    """(N + 1, D) normalised text features of every item; row 0 (padding) and items without text
    are zero. Cached under ``ctx.cache_dir`` (None: no cache); ``cache=False`` always runs the
    encoder and writes nothing."""
    from darec.models.backbone import resolve_dtype
    from darec.paths import cache_dir

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
    has_text = torch.tensor([bool(s) for s in sentences])
    path = None
    if cache and ctx.cache_dir is not None:
        key = _cache_key(t, encoder_version(t.encoder), sentences)
        path = Path(ctx.cache_dir) / "text-features" / f"{key}.safetensors"
        if path.is_file():
            from safetensors.torch import load_file

            return load_file(str(path))["feats"]
    dtype = resolve_dtype(t.dtype, torch.device("cpu"))
    encoder = load_text_encoder(t.encoder, t.encoder_layers, dtype, cache_dir(cfg.cache_dir))
    feats = _compute(encoder, sentences, has_text, t, batch_size)
    if path is not None:
        _save(path, feats)
    return feats


def _compute(
    encoder: TextEncoder,
    sentences: list[str],
    has_text: torch.Tensor,
    t: TextConfig,
    batch_size: int,
) -> torch.Tensor:
    """Encode, pool, standardise or whiten, and L2-normalise the sentences that have text."""
    index = has_text.nonzero().flatten().tolist()
    width = t.whiten_dims if t.whiten and t.whiten_dims else encoder.hidden_size
    feats = torch.zeros(len(sentences), width)
    if not index:
        return feats
    means = encoder.encode([sentences[i] for i in index], t.max_tokens, batch_size)  # (M, D)
    rows = pool(means, t.pooling)
    rows = whiten(rows, t.whiten_dims) if t.whiten else standardise(rows)
    feats[index] = F.normalize(rows, dim=-1)
    return feats
