"""Full-ranking evaluation: every target is ranked against the whole catalog.

Memory is bounded by ``EvalConfig.max_scores``: users are scored in batches and, when a batch
times the catalog would exceed the bound, the catalog is scored in chunks (then twice: once to
read each target's score, once to count the items above it, so that both come from the very same
computation and float noise can never turn a tie into a win).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from darec.config import EvalConfig
from darec.data.batching import pad_left
from darec.data.split import EvalSet
from darec.evaluation.metrics import metrics_from_ranks, tie_aware_rank
from darec.models.base import SequentialRecommender

__all__ = ["EvalResult", "Shard", "evaluate", "best_k", "iter_catalog_chunks", "chunk_size_for"]


@dataclass
class EvalResult:
    metrics: dict[str, float]
    ranks: np.ndarray
    """1-based rank of each user's target, aligned with the EvalSet's users."""
    num_users: int
    exclude_history: bool
    other_protocol: dict[str, float] = field(default_factory=dict)
    """With ``other_protocol``: the same metrics under the other ``exclude_history`` (from the
    very same scores, so one pass over the users gives both)."""
    lists: dict[str, float] = field(default_factory=dict)
    """Properties of the top-k lists themselves (with ``item_counts``): ``Coverage@k``, the
    share of the catalog recommended to anyone, and ``AvgPop@k``, the mean training count of
    the recommended items (RecBole's ItemCoverage and AveragePopularity)."""


def chunk_size_for(num_users: int, num_candidates: int, max_scores: int) -> int:
    """Catalog chunk length so that ``num_users x chunk`` stays within ``max_scores``."""
    return max(1, min(num_candidates, max_scores // max(1, num_users)))


def iter_catalog_chunks(
    model: SequentialRecommender,
    state: torch.Tensor,
    history: torch.Tensor,
    exclude_history: bool,
    chunk: int,
    keep: torch.Tensor | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(items (C,), scores (B, C), allowed (B, C))`` over the catalog 0..N in chunks.

    ``allowed`` is False for the padding item 0 and, with ``exclude_history``, for every item in
    a user's ``history`` (B, L) except ``keep[b]`` (the user's target, which is never excluded).
    NaN scores count as the lowest possible score.
    """
    num_candidates = model.num_items + 1
    device = history.device
    for lo in range(0, num_candidates, chunk):
        hi = min(num_candidates, lo + chunk)
        items = torch.arange(lo, hi, device=device)
        scores = model.score_items(state, items).float()  # (B, C)
        scores = torch.nan_to_num(scores, nan=float("-inf"))
        allowed = torch.ones_like(scores, dtype=torch.bool)
        if lo == 0:
            allowed[:, 0] = False
        if exclude_history:
            inside = (history >= lo) & (history < hi) & (history > 0)  # (B, L)
            if keep is not None:
                inside &= history != keep[:, None]
            rows, cols = inside.nonzero(as_tuple=True)
            allowed[rows, history[rows, cols] - lo] = False
        yield items, scores, allowed


class Shard(Protocol):
    """This process's part of a sharded evaluation (the trainer's process group): it scores the
    evaluation batches ``rank, rank + world, ...`` and ``gather`` collects every process's
    results, in rank order, on every process."""

    @property
    def rank(self) -> int: ...
    @property
    def world(self) -> int: ...
    def gather(self, value: Any) -> list[Any]: ...


@dataclass
class _BatchCounts:
    """What one evaluation batch gives, on the CPU: per protocol, the counts of better and of
    tied items per user; with lists, each user's top-k items."""

    counts: list[tuple[torch.Tensor, torch.Tensor]]
    top: torch.Tensor | None


@torch.inference_mode()
def evaluate(
    model: SequentialRecommender,
    data: EvalSet,
    cfg: EvalConfig,
    max_seq_len: int,
    device: torch.device | str = "cpu",
    item_counts: np.ndarray | None = None,
    list_k: int = 10,
    other_protocol: bool = False,
    shard: Shard | None = None,
    user_states: dict[int, torch.Tensor] | None = None,
) -> EvalResult:
    """Rank each target against all items and average HR/NDCG/MRR at ``cfg.ks``; with
    ``item_counts`` (N + 1,) training counts, also describe each user's top-``list_k`` list
    (coverage of the catalog, mean popularity: see :attr:`EvalResult.lists`); with
    ``other_protocol``, also rank under the other ``exclude_history``.

    With ``shard`` each process scores its share of the batches and every process gets the
    whole result, equal to a single process's (same batches, ties broken in the same order).
    ``user_states`` keeps each batch's encoded users (``model.encode_users``) by the batch's
    first row: a batch found there is scored without encoding it again (for evaluations that
    change only how states are scored, such as the content prior's weight)."""
    was_training = model.training
    model.eval()
    starts = range(0, len(data.targets), cfg.batch_size)
    mine = starts[shard.rank :: shard.world] if shard is not None else starts
    protocols = [cfg.exclude_history, *([not cfg.exclude_history] if other_protocol else [])]
    scored: dict[int, _BatchCounts] = {}
    try:
        for start in mine:
            scored[start] = _score_batch(
                model,
                data,
                cfg,
                start,
                max_seq_len,
                device,
                protocols,
                (item_counts, list_k),
                user_states,
            )
    finally:
        model.train(was_training)
    if shard is not None:
        scored = {k: v for part in shard.gather(scored) for k, v in part.items()}
    generator = torch.Generator().manual_seed(cfg.seed)
    # the other protocol's ties are broken by a generator of its own, so the first protocol's
    # ranks are the same whether or not the other is asked for
    other_generator = torch.Generator().manual_seed(cfg.seed + 1)
    all_ranks: list[torch.Tensor] = []
    other_ranks: list[torch.Tensor] = []
    recommended: list[torch.Tensor] = []
    for start in starts:  # ties broken batch by batch, in order, whoever scored the batch
        batch = scored[start]
        greater, ties = batch.counts[0]
        all_ranks.append(tie_aware_rank(greater, ties, generator))
        if other_protocol:
            greater, ties = batch.counts[1]
            other_ranks.append(tie_aware_rank(greater, ties, other_generator))
        if batch.top is not None:
            recommended.append(batch.top)
    ranks_np = torch.cat(all_ranks).numpy() if all_ranks else np.zeros(0, dtype=np.int64)
    select_k = int(cfg.select_metric.partition("@")[2])
    lists: dict[str, float] = {}
    if item_counts is not None and recommended:
        items = torch.cat(recommended).numpy()  # (U, k), 0 where fewer items were allowed
        shown = items[items > 0]
        lists[f"Coverage@{list_k}"] = float(len(np.unique(shown)) / model.num_items)
        lists[f"AvgPop@{list_k}"] = float(item_counts[shown].mean()) if len(shown) else 0.0
    ks = tuple(sorted({*cfg.ks, select_k}))
    other = metrics_from_ranks(torch.cat(other_ranks).numpy(), ks) if other_ranks else {}
    return EvalResult(
        metrics=metrics_from_ranks(ranks_np, ks),
        ranks=ranks_np,
        num_users=len(ranks_np),
        exclude_history=cfg.exclude_history,
        other_protocol=other,
        lists=lists,
    )


def _score_batch(
    model: SequentialRecommender,
    data: EvalSet,
    cfg: EvalConfig,
    start: int,
    max_seq_len: int,
    device: torch.device | str,
    protocols: list[bool],
    lists: tuple[np.ndarray | None, int],
    user_states: dict[int, torch.Tensor] | None,
) -> _BatchCounts:
    """Score the evaluation batch of users ``start .. start + cfg.batch_size`` (``lists``:
    the training counts and list length of :func:`evaluate`'s top-k lists)."""
    item_counts, list_k = lists
    stop = start + cfg.batch_size
    longest = max(1, *(len(h) for h in data.histories[start:stop]))
    # the model reads the most recent max_seq_len items (no wider than needed) ...
    history = pad_left(data.histories[start:stop], min(max_seq_len, longest)).to(device)
    # ... while exclusion uses the whole history
    full_history = pad_left(data.histories[start:stop], longest).to(device)
    targets = torch.as_tensor(data.targets[start:stop], dtype=torch.long, device=device)
    state = user_states.get(start) if user_states is not None else None
    if state is None:
        state = model.encode_users(history)
        if user_states is not None:
            user_states[start] = state
    chunk = chunk_size_for(len(targets), model.num_items + 1, cfg.max_scores)
    counts = _rank_batch(model, state, full_history, targets, protocols, chunk)
    top = None
    if item_counts is not None:
        top = best_k(model, state, full_history, cfg.exclude_history, chunk, list_k)[0].cpu()
    return _BatchCounts([(g.cpu(), t.cpu()) for g, t in counts], top)


def best_k(
    model: SequentialRecommender,
    state: torch.Tensor,
    history: torch.Tensor,
    exclude_history: bool,
    chunk: int,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each user's best ``k`` allowed items (B, k) and their scores, on the model's device;
    item 0 and score -inf where fewer are allowed. The catalog is scored in chunks of
    ``chunk`` items and the running best ``k`` merged, so any catalog size fits in memory."""
    batch = state.shape[0]
    best_scores = torch.full((batch, 0), float("-inf"), device=history.device)
    best_items = torch.zeros((batch, 0), dtype=torch.long, device=history.device)
    chunks = iter_catalog_chunks(model, state, history, exclude_history, chunk)
    for items, scores, allowed in chunks:
        scores = scores.masked_fill(~allowed, float("-inf"))
        cand_scores = torch.cat([best_scores, scores], dim=1)
        cand_items = torch.cat([best_items, items.expand(batch, -1)], dim=1)
        best_scores, pos = cand_scores.topk(min(k, cand_scores.shape[1]), dim=1)
        best_items = cand_items.gather(1, pos)
    return best_items.masked_fill(torch.isneginf(best_scores), 0), best_scores


def _rank_batch(
    model: SequentialRecommender,
    state: torch.Tensor,
    history: torch.Tensor,
    targets: torch.Tensor,
    protocols: list[bool],
    chunk: int,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Counts of strictly better and of equally scored allowed items, per user, for each
    protocol of ``protocols`` (True: the user's history excluded; False: kept as candidates),
    all from one scoring of the catalog."""
    batch = targets.shape[0]
    rows = torch.arange(batch, device=targets.device)
    target_score = torch.full((batch,), float("nan"), device=targets.device)
    single = chunk >= model.num_items + 1
    exclude = any(protocols)  # the chunks' ``allowed`` excludes history; "kept" is item != 0
    cached: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for items, scores, allowed in iter_catalog_chunks(
        model, state, history, exclude, chunk, keep=targets
    ):
        lo = int(items[0])
        inside = (targets >= lo) & (targets < lo + items.shape[0])
        target_score[inside] = scores[rows[inside], targets[inside] - lo]
        if single:
            cached.append((items, scores, allowed))
    counts = [
        (
            torch.zeros(batch, dtype=torch.long, device=targets.device),
            torch.zeros(batch, dtype=torch.long, device=targets.device),
        )
        for _ in protocols
    ]
    chunks = cached or iter_catalog_chunks(model, state, history, exclude, chunk, keep=targets)
    for items, scores, allowed in chunks:
        not_target = items[None, :] != targets[:, None]  # the target never ties itself
        better = scores > target_score[:, None]
        equal = scores == target_score[:, None]
        for (greater, ties), excluded in zip(counts, protocols, strict=True):
            others = not_target & (allowed if excluded else (items != 0)[None, :])
            greater += (better & others).sum(dim=1)
            ties += (equal & others).sum(dim=1)
    return counts
