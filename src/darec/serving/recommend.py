"""Top-k recommendation from a trained run folder, for a known user or a given item history."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from darec.data.batching import pad_left
from darec.data.types import SequenceDataset
from darec.devices import pick_device
from darec.errors import ConfigError, DarecError, UnknownIdError
from darec.evaluation.evaluator import best_k, chunk_size_for
from darec.models.base import SequentialRecommender, StreamState, cannot_add_items
from darec.run import RunFolder
from darec.run.added import AddedItems, append_added_items
from darec.serving.catalog import check_new_ids, new_item_rows
from darec.serving.inference_cache import attach_inference_cache, load_for_inference

__all__ = ["top_k", "Recommendation", "Recommender", "Session"]


@torch.inference_mode()
def top_k(
    model: SequentialRecommender,
    histories: list[np.ndarray],
    excluded: list[np.ndarray],
    k: int,
    max_seq_len: int,
    max_scores: int = 1 << 24,
    state: torch.Tensor | None = None,
    candidates: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``k`` items (B, k) and their scores for each history, never an ``excluded`` item.
    Runs on the model's device; the results come back on the CPU.

    The catalog is scored in memory-bounded chunks and the running top-k merged, so any catalog
    size works. Fewer than ``k`` allowed items give -inf scores and item 0 in the tail.
    ``state``: the users' encoded states if the caller has them (e.g. a streamed user).
    ``candidates`` (C,): rank only these items (internal ids) instead of the whole catalog.
    """
    if model.training:  # Module.eval walks every submodule: 1.6 ms a request on DARec
        model.eval()
    device = model.device
    width = max(1, max((len(e) for e in excluded), default=1))
    banned = pad_left(excluded, width).to(device)
    if state is None:
        state = model.encode_users(pad_left(histories, max_seq_len).to(device))
    if candidates is not None:
        return _top_k_of(model, state, banned, candidates.to(device), k)
    chunk = chunk_size_for(len(histories), model.num_items + 1, max_scores)
    best_items, best_scores = best_k(model, state, banned, True, chunk, k)
    return best_items.cpu(), best_scores.cpu()


def _top_k_of(
    model: SequentialRecommender,
    state: torch.Tensor,
    banned: torch.Tensor,
    candidates: torch.Tensor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`top_k` over the given ``candidates`` (C,) only (one scoring call)."""
    scores = model.score_items(state, candidates).float()  # (B, C)
    scores = torch.nan_to_num(scores, nan=float("-inf"))
    out = (candidates[None, :, None] == banned[:, None, :]).any(dim=2) | (candidates == 0)[None]
    scores = scores.masked_fill(out, float("-inf"))
    best_scores, pos = scores.topk(min(k, scores.shape[1]), dim=1)
    best_items = candidates[pos].masked_fill(torch.isneginf(best_scores), 0)
    return best_items.cpu(), best_scores.cpu()


@dataclass
class Recommendation:
    """One recommended item: its external id, score, 1-based rank and title (when known)."""

    item: str
    score: float
    rank: int
    title: str | None = None


class Recommender:
    """A trained run folder ready to recommend by external ids, on ``device`` (cpu, cuda, cuda:N
    or auto: CUDA when present). ``data_path`` and ``item_path`` override where the run's data
    and item file are now; data that changed since training is refused (the run's
    ``data.json``) unless ``allow_changed_data``, which only warns. ``quantize`` int8 (CPU,
    DARec): small calls such as a streamed event read int8 copies of the language model's
    per-request weights (``darec.models.quantize``); none: exact weights."""

    def __init__(
        self,
        run_dir: str | Path,
        data_path: str | None = None,
        device: str | torch.device = "auto",
        item_path: str | None = None,
        allow_changed_data: bool = False,
        quantize: str = "none",
    ) -> None:
        self.run_dir = Path(run_dir)
        self.device = torch.device(pick_device(str(device), "device"))
        self.cfg, self.model, self.ids = load_for_inference(self.run_dir, self.device, quantize)
        # the trained items, then those added from their text (darec catalog add)
        self.item_ids: list[str] = self.ids["item_ids"] + self.ids.get("added_item_ids", [])
        self._item_index = {it: i for i, it in enumerate(self.item_ids) if i > 0}
        self._trained = len(self.ids["item_ids"])  # internal ids below this were trained
        self._added_catalog: list[dict[str, str]] = list(self.ids.get("added_catalog", []))
        self._data_path, self._item_path = data_path, item_path
        self._allow_changed_data = allow_changed_data
        self._dataset: SequenceDataset | None = None

    def dataset(self) -> SequenceDataset:
        """The run's dataset, read (from cache) on first use; needed for known users."""
        if self._dataset is None:
            self._dataset = RunFolder(self.run_dir).load_data(
                self._data_path, self._item_path, self._allow_changed_data
            )
        return self._dataset

    def item_index(self, item: str) -> int:
        if item not in self._item_index:
            example = ", ".join(repr(i) for i in self.item_ids[1:4])
            raise UnknownIdError(
                f"unknown item id {item!r}: the run knows {len(self.item_ids) - 1} items "
                f"(e.g. {example})"
            )
        return self._item_index[item]

    def recommend(
        self,
        user: str | None = None,
        items: Sequence[str] | None = None,
        k: int = 10,
        exclude: Sequence[str] = (),
        exclude_history: bool = True,
        candidates: Sequence[str] | None = None,
    ) -> list[Recommendation]:
        """Top-``k`` next items for a known ``user`` (after their whole history) or after the
        chronological item history ``items`` (a new user), never an item of ``exclude`` (nor of
        the history, with ``exclude_history``); ``candidates`` restricts the ranking to those
        items. Give exactly one of ``user`` and ``items``."""
        if (user is None) == (items is None):
            raise ConfigError("give exactly one of user= and items=")
        if user is not None:
            history = self._user_history(user)
        else:
            history = np.asarray([self.item_index(i) for i in items or ()], dtype=np.int64)
        return self._rank(history, exclude, exclude_history, k, candidates=candidates)

    def recommend_batch(
        self,
        users: Sequence[str] | None = None,
        k: int = 10,
        exclude_history: bool = True,
        batch_size: int | None = None,
    ) -> pd.DataFrame:
        """Top-``k`` for many known users at once (all of the run's data when ``users`` is None),
        scored in batches of ``batch_size`` users (``eval.batch_size``) on the device. Columns:
        user, rank, item, score, and title when the catalog has titles."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        ds = self.dataset()
        chosen = ds.user_ids[1:] if users is None else list(users)
        index = [ds.user_index(u) for u in chosen]
        size = batch_size or self.cfg.eval.batch_size
        frames = []
        for lo in range(0, len(index), size):
            part = index[lo : lo + size]
            histories = [ds.sequence(u) for u in part]
            banned = histories if exclude_history else [h[:0] for h in histories]
            items, scores = top_k(
                self.model, histories, banned, k, self.cfg.model.max_seq_len,
                self.cfg.eval.max_scores,
            )  # fmt: skip
            frames.append(
                pd.DataFrame(
                    {
                        "user": np.repeat(
                            np.asarray(chosen[lo : lo + size], dtype=object), items.shape[1]
                        ),
                        "rank": np.tile(np.arange(1, items.shape[1] + 1), len(part)),
                        "item_index": items.flatten().numpy(),
                        "score": scores.flatten().numpy(),
                    }
                )
            )
        table = pd.concat(frames, ignore_index=True) if frames else _empty_frame()
        table = table[table["item_index"] > 0]
        ids = np.asarray(self.item_ids, dtype=object)
        table.insert(2, "item", ids[table["item_index"].to_numpy()])
        titles = [row.get("title") for row in [*ds.catalog, *self._added_catalog]]
        if any(titles):
            table["title"] = np.asarray(titles, dtype=object)[table["item_index"].to_numpy()]
        return table.drop(columns="item_index").reset_index(drop=True)

    def attributes(self, item: str) -> dict[str, str]:
        """The item's text attributes: from the run's data for a trained item, as given for one
        added from its text."""
        index = self.item_index(item)
        if index >= self._trained:
            return self._added_catalog[index - self._trained]
        return self.dataset().catalog[index]

    def title(self, item: str) -> str | None:
        """The item's title in the run's data (or as added), if it has one."""
        return self.attributes(item).get("title")

    def with_titles(self, recs: list[Recommendation]) -> list[Recommendation]:
        """``recs`` with their titles filled in where the run's data (if it can be read) has
        them; unchanged when it cannot (e.g. the data moved and no ``data`` path was given)."""
        try:
            self.dataset()
        except DarecError:
            return recs
        return [dataclasses.replace(r, title=self.title(r.item)) for r in recs]

    # ------------------------------------------------------------------ new items from text

    @property
    def adds_items_from_text(self) -> bool:
        """Whether the model can add items from their text (content, sasrec-text, darec)."""
        return self.model.adds_items_from_text

    def check_adds_items(self) -> None:
        """Raise :class:`ConfigError` naming the model unless it can add items from text."""
        if not self.adds_items_from_text:
            raise cannot_add_items(self.cfg.model.name)

    def add_items(self, items: Mapping[str, Mapping[str, str]], save: bool = True) -> list[str]:
        """Add ``items`` (new id -> text attributes) to the catalog from their text alone, as
        ``darec catalog add`` does: they are ranked with the rest from now on and, with
        ``save``, written to the run folder (kept by every later load). Returns their ids.

        Not thread-safe (the HTTP server runs :meth:`encode_items`, :meth:`save_items` and
        :meth:`extend_items` under its own locks)."""
        added = self.encode_items(items)
        if save:
            self.save_items(added)
        self.extend_items(added)
        if save:
            self.save_inference_cache()
        return added.item_ids

    def encode_items(self, items: Mapping[str, Mapping[str, str]]) -> AddedItems:
        """What the model needs of each new item, computed from its text; nothing changes yet.
        Raise :class:`DuplicateIdError` for an id in the catalog, :class:`ConfigError` for a
        model that cannot add items or an item without text in ``text.fields``."""
        self.check_adds_items()
        check_new_ids(list(items), self._item_index, "the new items")
        return new_item_rows(self.model, self.cfg, self.dataset().catalog, items)

    def save_items(self, added: AddedItems) -> None:
        """Append ``added`` to the run folder's added items (``darec catalog add``'s file)."""
        append_added_items(self.run_dir, added)

    def extend_items(self, added: AddedItems) -> None:
        """Append ``added`` (from :meth:`encode_items`) to the live catalog: the model's, the
        id maps and the attributes (new lists, so a reader holding the old ones is unaffected)."""
        check_new_ids(added.item_ids, self._item_index, "the new items")
        self.model.extend_catalog(added.rows)
        start = len(self.item_ids)
        index = dict(self._item_index)
        index.update({item: start + i for i, item in enumerate(added.item_ids)})
        self.item_ids = [*self.item_ids, *added.item_ids]
        self._item_index = index
        self._added_catalog = [*self._added_catalog, *added.catalog]

    def save_inference_cache(self) -> str:
        """Write the model's inference cache (DARec: the catalog cache) for the current catalog
        beside the checkpoint, so that a restart with the same added items reads it."""
        added_ids = self.item_ids[self._trained :]
        return attach_inference_cache(self.model, self.run_dir, added_ids=added_ids)

    def history_of(self, user: str) -> list[str]:
        """A known user's items, oldest first (external ids)."""
        return [self.item_ids[int(i)] for i in self._user_history(user)]

    def for_history(
        self,
        items: Sequence[str],
        k: int = 10,
        exclude: Sequence[str] = (),
        exclude_history: bool = True,
    ) -> list[Recommendation]:
        """Top-k next items after the given chronological item history."""
        history = np.asarray([self.item_index(i) for i in items], dtype=np.int64)
        return self._rank(history, exclude, exclude_history, k)

    def for_user(
        self, user: str, k: int = 10, exclude: Sequence[str] = (), exclude_history: bool = True
    ) -> list[Recommendation]:
        """Top-k next items for a user of the training data, after their whole history."""
        return self._rank(self._user_history(user), exclude, exclude_history, k)

    def _user_history(self, user: str) -> np.ndarray:
        ds = self.dataset()
        return ds.sequence(ds.user_index(user))

    def session(self, items: Sequence[str] = (), user: str | None = None) -> Session:
        """A streamed user, starting from a known ``user``'s history or from ``items``; each
        :meth:`Session.add` then costs one step (DARec: its stream tokens only)."""
        if user is not None:
            history = self._user_history(user)
        else:
            history = np.asarray([self.item_index(i) for i in items], dtype=np.int64)
        return Session(self, history)

    def _rank(
        self,
        history: np.ndarray,
        exclude: Sequence[str],
        exclude_history: bool,
        k: int,
        state: torch.Tensor | None = None,
        candidates: Sequence[str] | None = None,
    ) -> list[Recommendation]:
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        pool = None
        if candidates is not None:
            pool = torch.as_tensor([self.item_index(i) for i in candidates], dtype=torch.long)
        banned = [self.item_index(i) for i in exclude]
        if exclude_history:
            banned += history.tolist()
        items, scores = top_k(
            self.model,
            [history],
            [np.asarray(banned, dtype=np.int64)],
            k,
            self.cfg.model.max_seq_len,
            self.cfg.eval.max_scores,
            state,
            pool,
        )
        return [
            Recommendation(self.item_ids[int(i)], float(s), r + 1)
            for r, (i, s) in enumerate(zip(items[0], scores[0], strict=True))
            if int(i) > 0
        ]


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame({"user": [], "rank": [], "item_index": [], "score": []}).astype(
        {"item_index": np.int64}
    )


class Session:
    """One user's recommendations kept up to date click by click.

    Each :meth:`add` runs the model's ``stream_step``: DARec keeps the user's keys/values and
    runs only the new step; any other model re-encodes the history (cheap for the baselines).
    Scores equal a fresh call."""

    def __init__(self, recommender: Recommender, history: np.ndarray) -> None:
        self.rec = recommender
        self.history = history
        self._state: StreamState | None = None
        if len(history):
            with torch.inference_mode():
                self._state = self.rec.model.stream_start(self._on_device(history))

    def add(self, item: str) -> None:
        """Record one more interaction (oldest first)."""
        index = self.rec.item_index(item)
        self.history = np.append(self.history, index)
        model = self.rec.model
        with torch.inference_mode():
            if self._state is None:
                self._state = model.stream_start(self._on_device(self.history))
            else:
                self._state = model.stream_step(self._state, index)

    def _on_device(self, history: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(history, device=self.rec.device)

    def top(
        self, k: int = 10, exclude: Sequence[str] = (), exclude_history: bool = True
    ) -> list[Recommendation]:
        """Top-k next items after the history so far."""
        state = self._state.user[None] if self._state is not None else None
        return self.rec._rank(self.history, exclude, exclude_history, k, state)
