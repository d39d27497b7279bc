"""Hard negatives: items whose texts are alike but which no user ever put in one training sequence.

For each item, its hard negatives are the items nearest to it by cosine similarity of text
embeddings, skipping every item that co-occurs with it in some user's training sequence (those
may well be related, so pushing them apart would teach the wrong thing). DARec's hard-sample loss
separates an item from these.

The catalog is processed in row chunks: a (chunk, N + 1) similarity block and a (chunk, N + 1)
co-occurrence block from a sparse item x user times user x item product, so memory stays at
O(chunk x N) instead of O(N x N) (Amazon Beauty: 12k items, 22k users, a few seconds).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from darec.errors import ConfigError, DataError

__all__ = ["cached_hard_negatives", "cooccurrence_block", "hard_negatives", "incidence"]

_TENSOR = "hard_negatives"


def _csr(rows: np.ndarray, cols: np.ndarray, num_rows: int, num_cols: int) -> torch.Tensor:
    """Binary sparse CSR matrix with ones at the distinct (row, col) pairs."""
    pairs = np.unique(rows * num_cols + cols)  # sorted row-major, duplicates dropped
    crow = np.zeros(num_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs // num_cols, minlength=num_rows), out=crow[1:])
    with warnings.catch_warnings():
        # torch flags its (stable in practice) CSR support as beta on every construction
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow),
            torch.from_numpy(pairs % num_cols),
            torch.ones(len(pairs), dtype=torch.float32),
            size=(num_rows, num_cols),
            check_invariants=False,
        )


def incidence(
    train_sequences: list[np.ndarray], num_items: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary sparse CSR incidence of the training sequences, both ways round.

    Returns ``item_user`` (N + 1, S) and ``user_item`` (S, N + 1), where S is the number of
    sequences; entry (i, s) is 1 if item i occurs in sequence s. Ids must lie in 1..N.
    """
    lengths = np.array([len(seq) for seq in train_sequences], dtype=np.int64)
    items = (
        np.concatenate([np.asarray(seq, dtype=np.int64) for seq in train_sequences])
        if train_sequences
        else np.zeros(0, dtype=np.int64)
    )
    bad = np.flatnonzero((items < 1) | (items > num_items))
    if bad.size:
        seq = int(np.searchsorted(np.cumsum(lengths), bad[0], side="right"))
        raise DataError(
            f"training sequence {seq} holds item id {int(items[bad[0]])}; expected internal "
            f"ids 1..{num_items} (the rows of the text embeddings)"
        )
    seqs = np.repeat(np.arange(len(train_sequences), dtype=np.int64), lengths)
    num_seqs = len(train_sequences)
    item_user = _csr(items, seqs, num_items + 1, num_seqs)
    user_item = _csr(seqs, items, num_seqs, num_items + 1)
    return item_user, user_item


def cooccurrence_block(
    item_user: torch.Tensor, user_item: torch.Tensor, start: int, stop: int
) -> torch.Tensor:
    """(stop - start, N + 1) bool: whether item ``start + r`` shares a sequence with item c.

    An item that occurs in any sequence co-occurs with itself.
    """
    crow = item_user.crow_indices()
    lo, hi = int(crow[start]), int(crow[stop])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        rows = torch.sparse_csr_tensor(
            crow[start : stop + 1] - lo,
            item_user.col_indices()[lo:hi],
            item_user.values()[lo:hi],
            size=(stop - start, item_user.shape[1]),
            check_invariants=False,
        )  # (C, S)
        counts = rows @ user_item  # (C, N + 1) sparse: shared sequences per item pair
    return counts.to_dense() > 0


def _chosen_lowest_id(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(R, M) scores -> (R, k) ids of the k best, taking the lowest ids among boundary ties.

    Returned in ascending id order. Every row must have at least k finite scores.
    """
    kth = scores.topk(k, dim=1).values[:, -1:]  # (R, 1) k-th best score
    above = scores > kth
    tied = scores == kth
    need = k - above.sum(dim=1, keepdim=True)  # (R, 1) how many ties fit
    chosen = above | (tied & (tied.cumsum(dim=1) <= need))  # (R, M), exactly k per row
    return chosen.nonzero(as_tuple=True)[1].reshape(-1, k)  # row-major: ascending ids


def _top_k_lowest_id(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(C, M) scores with -inf for excluded -> (C, k) column ids, best first, padded with 0.

    Ties are broken by the lower column id, whatever torch.topk happens to return for them.
    """
    width = min(k, scores.shape[1])
    values, ids = scores.topk(min(width + 1, scores.shape[1]), dim=1)  # (C, k + 1)
    ids = ids[:, :width].clone()
    if width < scores.shape[1]:
        # Which tied items make the cut is up to topk only where the k-th and (k+1)-th scores
        # tie (duplicate texts); redo just those rows exactly, on the full width.
        kth = values[:, width - 1]
        rows = ((kth == values[:, width]) & (kth > -torch.inf)).nonzero().squeeze(1)
        if len(rows):
            ids[rows] = _chosen_lowest_id(scores[rows], width)
    ids = ids.sort(dim=1).values  # ascending ids, so that the stable sort below breaks ties
    order = scores.gather(1, ids).sort(dim=1, descending=True, stable=True).indices
    ids = ids.gather(1, order)  # (C, k) best first
    ids[scores.gather(1, ids) == -torch.inf] = 0  # fewer than k qualify: pad
    return torch.nn.functional.pad(ids, (0, k - width))


def hard_negatives(
    text_embeddings: torch.Tensor,
    train_sequences: list[np.ndarray],
    k: int,
    chunk: int = 1024,
) -> torch.Tensor:
    """(N + 1, k) int64: per item, the ``k`` most text-similar items it never co-occurs with.

    ``text_embeddings`` (N + 1, D): row i is item i's text embedding (row 0 padding; an all-zero
    row means no text). ``train_sequences``: each user's training items as internal ids 1..N.
    Neighbours are by cosine similarity, best first, ties to the lower id; the item itself,
    padding, items without text and items sharing a training sequence are excluded. Items without
    text get no negatives; rows are padded with 0 where fewer than ``k`` qualify. Deterministic
    and independent of ``chunk`` (rows processed at once).
    """
    if text_embeddings.dim() != 2 or text_embeddings.shape[0] < 1:
        raise DataError(
            f"text embeddings of shape {tuple(text_embeddings.shape)}; expected (N + 1, D)"
        )
    if k < 1 or chunk < 1:
        raise ConfigError(f"hard negatives k = {k}, chunk = {chunk}; expected both >= 1")
    # float64 products, rounded below, so that the chunk size cannot flip an order
    emb = text_embeddings.detach().to("cpu", torch.float64)  # (N + 1, D)
    if not torch.isfinite(emb).all():
        raise DataError("text embeddings contain NaN or infinite values; expected finite numbers")
    num_items = emb.shape[0] - 1
    norms = emb.norm(dim=1)  # (N + 1,)
    has_text = norms > 0
    has_text[0] = False
    unit = torch.where(has_text[:, None], emb / norms.clamp_min(1e-300)[:, None], 0.0)
    item_user, user_item = incidence(train_sequences, num_items)

    out = torch.zeros(num_items + 1, k, dtype=torch.int64)  # (N + 1, k)
    for start in range(0, num_items + 1, chunk):
        stop = min(start + chunk, num_items + 1)
        # rounded to float32: duplicate texts must tie exactly, and float64 BLAS kernels may
        # differ in the last bit between matrix edges and interiors (which move with the chunk)
        sims = (unit[start:stop] @ unit.T).float()  # (C, N + 1)
        excluded = cooccurrence_block(item_user, user_item, start, stop)  # (C, N + 1)
        excluded |= ~has_text[None, :]  # padding and items without text are never negatives
        rows = torch.arange(stop - start)
        excluded[rows, rows + start] = True  # nor is the item itself
        sims.masked_fill_(excluded, -torch.inf)
        block = _top_k_lowest_id(sims, k)  # (C, k)
        block[~has_text[start:stop]] = 0  # items without text get none
        out[start:stop] = block
    return out


def cached_hard_negatives(
    cache_dir: Path | None, key: str, compute: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """``compute()``, stored under ``cache_dir / "hard_negatives" / f"{key}.safetensors"``.

    ``key`` must identify everything the result depends on (dataset, backbone, text options).
    A cached file is reused; an unreadable one is recomputed and replaced. With ``cache_dir``
    None nothing is cached. Writes are atomic (temp file + rename); a failed write only warns.
    """
    if cache_dir is None:
        return compute()
    if not key or any(c in key for c in "/\\") or key.startswith("."):
        raise ConfigError(
            f"hard-negative cache key {key!r}; expected a non-empty file name (no '/', '\\' or "
            "leading '.')"
        )
    path = Path(cache_dir) / "hard_negatives" / f"{key}.safetensors"
    if path.is_file():
        try:
            cached = load_file(str(path))[_TENSOR]
            if cached.dim() == 2 and cached.dtype == torch.int64:
                return cached
        except (SafetensorError, OSError, KeyError):
            pass  # unreadable entry: recompute and replace it below
    result = compute()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({_TENSOR: result.contiguous()}, str(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        warnings.warn(f"could not write the hard-negative cache {path}: {exc}", stacklevel=2)
    return result
