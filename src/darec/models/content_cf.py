"""Content + transitions (``--model content-cf``): text similarity to the recent history plus
how often the history's items were followed by each item in training.

The score of item i for a history is the content model's cosine (:mod:`darec.models.content`)
plus ``model.transition_weight`` x log p(i | history), where p is the recency-weighted mean
(``model.content_decay``) over the history's items h of T[h, i], and T[h, i] is the share of h's
successors in the training sequences that were i: the next item counts 1, the one after 1/2,
the one after that 1/4. p is floored at 1e-4, so an item the history was never followed by
keeps its text score. Nothing is trained by gradient: :meth:`ContentCF.prepare` counts, and the
counts are the checkpoint (a sparse matrix with one entry per distinct pair). A user state
holds p for the whole catalog (4 bytes an item per user: 12 MB for 256 users of a 12k-item
catalog), so scoring costs one sparse product per batch of users.

Items added after training (``darec catalog add``) have text but no transitions; each borrows
the transitions into its text neighbours (:mod:`darec.models.text_neighbours`): what led to the
neighbours leads to it. That is what makes it rank new items better than text similarity alone
(benchmarks/cold_probe.py: Amazon Beauty's validation with a tenth of the items made unseen).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from darec.config import ModelConfig
from darec.models.content import ContentModel
from darec.models.content_prior import text_vectors
from darec.models.layers import item_rows, mask_padding_scores
from darec.models.text_neighbours import text_neighbours

__all__ = ["ContentCF", "TRANSITION_GAPS", "transition_matrix"]

TRANSITION_GAPS = {1: 1.0, 2: 0.5, 3: 0.25}  # next item, the one after, two after
FLOOR = 1e-4  # the transition probability of an item the history was never followed by


def transition_matrix(sequences: list[np.ndarray], size: int) -> torch.Tensor:
    """(size, size) sparse COO, coalesced: entry [h, i] = the weighted share of h's successors
    in ``sequences`` (item ids < size) that were i (:data:`TRANSITION_GAPS`); rows sum to 1
    (0 for an item never followed)."""
    src, dst, val = [], [], []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        for gap, weight in TRANSITION_GAPS.items():
            if len(seq) > gap:
                src.append(seq[:-gap])
                dst.append(seq[gap:])
                val.append(np.full(len(seq) - gap, weight, dtype=np.float32))
    if not src:
        return _sparse(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), size)
    index = torch.from_numpy(np.stack([np.concatenate(src), np.concatenate(dst)]))
    table = _sparse(index, torch.from_numpy(np.concatenate(val)), size)
    row_sums = torch.zeros(size).index_add_(0, table.indices()[0], table.values())
    return _sparse(table.indices(), table.values() / row_sums[table.indices()[0]], size)


def _sparse(index: torch.Tensor, values: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size) coalesced sparse COO (indices are ours: no invariant checks)."""
    return torch.sparse_coo_tensor(index, values, (size, size), check_invariants=False).coalesce()


def _product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sparse x sparse, coalesced (torch's beta-warning about the CSR it uses inside is
    silenced: the result is COO)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse.mm(a, b).coalesce()


class ContentCF(ContentModel):
    """The content model's cosine plus weighted log transition probabilities (module doc)."""

    trans_index: torch.Tensor
    trans_value: torch.Tensor
    trained_items: torch.Tensor

    def __init__(self, cfg: ModelConfig, num_items: int, feats: torch.Tensor) -> None:
        super().__init__(cfg, num_items, feats)
        # the transition matrix T as COO (2, nnz) [h; i] and values (nnz,), set by prepare
        self.register_buffer("trans_index", torch.zeros(2, 0, dtype=torch.long))
        self.register_buffer("trans_value", torch.zeros(0))
        # items 1..trained_items have counts; items added later borrow theirs
        self.register_buffer("trained_items", torch.tensor(num_items))
        self._table: torch.Tensor | None = None

    def prepare(self, train_sequences: list[np.ndarray]) -> None:
        """Count the transitions of ``train_sequences`` (replacing earlier counts)."""
        table = transition_matrix(train_sequences, self.num_items + 1)
        self.trans_index = table.indices().to(self.feats.device)
        self.trans_value = table.values().to(self.feats.device)
        self.trained_items = torch.tensor(self.num_items)
        self._table = None

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        for key in ("trans_index", "trans_value"):  # their length is the number of pairs
            if key in state:
                setattr(self, key, torch.zeros_like(state[key], device=self.feats.device))
        self._table = None
        super().load_trained_state(state)

    def _transitions(self) -> torch.Tensor:
        """T transposed, (N + 1, N + 1) sparse: row i holds the histories' items h -> T[h, i]."""
        n = self.num_items + 1
        table = self._table
        if table is None or table.shape[0] != n or table.device != self.trans_value.device:
            table = self._table = _sparse(self.trans_index.flip(0), self.trans_value, n)
        return table

    def encode_users(self, history: torch.Tensor) -> torch.Tensor:
        """(B, D + N + 1): the unit text vector, then p(i | history) for every item i."""
        history = history[:, -self.cfg.max_seq_len :]
        text = text_vectors(self.feats, history, self.cfg.content_decay, self.cfg.max_seq_len)
        age = torch.arange(history.shape[1] - 1, -1, -1, device=history.device)
        weight = self.cfg.content_decay ** age.to(self.feats.dtype) * (history > 0)  # (B, L)
        mix = torch.zeros(history.shape[0], self.num_items + 1, device=history.device)
        mix.scatter_add_(1, history, weight.to(mix.dtype))  # (B, N + 1) each history item's
        mix[:, 0] = 0
        follow = torch.sparse.mm(self._transitions(), mix.T).T  # (B, N + 1)
        follow = follow / weight.sum(1, keepdim=True).clamp_min(1e-9)
        return torch.cat([text, follow], dim=1)

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dim = self.feats.shape[1]
        text, follow = state[:, :dim], state[:, dim:]
        scores = text @ item_rows(self.feats, items).T  # (B, C)
        log_p = follow[:, items].clamp_min(FLOOR).log() - math.log(FLOOR)  # (B, C), >= 0
        return mask_padding_scores(scores + self.cfg.transition_weight * log_p, items)

    def extend_catalog(self, rows: dict[str, torch.Tensor]) -> None:
        """Append the items with text features ``rows["feats"]``; each borrows its text
        neighbours' transitions (module doc)."""
        super().extend_catalog(rows)  # checks the width, appends features, grows num_items
        trained = int(self.trained_items)
        device = self.feats.device
        self.borrow_transitions(
            torch.arange(trained + 1, self.num_items + 1, device=device),
            torch.arange(1, trained + 1, device=device),
        )

    def borrow_transitions(self, items: torch.Tensor, known: torch.Tensor) -> None:
        """Give each of ``items`` (ids) the transitions into its text neighbours among
        ``known`` (ids): T[h, c] = sum_k w_k T[h, n_k], what led to the neighbours leads to it.
        The matrix keeps only the pairs between ``known`` items otherwise, so repeating this
        changes nothing. An added item in a history adds no transitions of its own (borrowing
        those too, T[c, :] = sum_k w_k T[n_k, :], lowered the probe's unseen-item NDCG@10 from
        0.0586 to 0.0570)."""
        n = self.num_items + 1
        device = self.feats.device
        idx, w = text_neighbours(
            self.feats[items],
            self.feats[known],
            self.cfg.neighbours,
            self.cfg.neighbour_temperature,
        )
        is_known = torch.zeros(n, dtype=torch.bool, device=device)
        is_known[known] = True
        keep = is_known[self.trans_index[0]] & is_known[self.trans_index[1]]
        own = _sparse(self.trans_index[:, keep], self.trans_value[keep], n)
        borrow = _sparse(  # (n, n): B[n_k, c] = w_k
            torch.stack([known[idx].reshape(-1), items[:, None].expand_as(idx).reshape(-1)]),
            w.reshape(-1),
            n,
        )
        table = (own + _product(own, borrow)).coalesce()  # the added items' columns
        self.trans_index, self.trans_value = table.indices(), table.values()
        self._table = None
