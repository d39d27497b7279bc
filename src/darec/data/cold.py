"""Held-out (cold) items: a split in which some items never reach training or model selection.

The protocol of ``benchmarks/cold_start.py`` and ``darec demo --cold``:

1. the dataset and its leave-one-out split (:func:`~darec.data.split.leave_one_out`);
2. a seeded random ``fraction`` of the items is held out: the *cold* items. They are removed
   from every training sequence and every validation history, and validation cases whose
   target is cold are dropped, so neither training nor model selection sees them; the models
   are built on the other (*warm*) items only, numbered 1..W in their original order;
3. after training, a model that reads item text adds the cold items from their text alone
   (ids W+1..N, in their original order), as ``darec catalog add`` would;
4. every test case is ranked with its history as it is (cold items included); the cases whose
   target is cold give the cold metrics, the others the warm ones. A model that cannot add items
   ranks the warm-target cases only, with the cold items left out of their histories.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from darec.data.split import EvalSet, Split, leave_one_out
from darec.data.types import SequenceDataset
from darec.errors import ConfigError

__all__ = ["ColdSplit", "hold_out_items"]


@dataclass
class ColdSplit:
    """One held-out draw, in the ids the models use: warm items 1..W, then cold W+1..N."""

    warm: SequenceDataset
    """The warm items only (what the models are built on); sequences without cold items."""
    train: Split
    """Training sequences and validation cases without cold items (``test`` is ``valid``: the
    trainer must not read it, see :class:`~darec.training.trainer.Trainer` ``fit(test=False)``)."""
    cold_ids: list[str]
    cold_catalog: list[dict[str, str]]
    """External ids and text attributes of the cold items, in the order they are added."""
    test: EvalSet
    """Every test case, histories as they are (models that add the cold items)."""
    test_known: EvalSet
    """The warm-target test cases, cold items left out of the histories (the others)."""
    cold_target: np.ndarray
    """(n,) bool: the target of ``test`` case i is cold."""


def hold_out_items(ds: SequenceDataset, fraction: float, seed: int) -> ColdSplit:
    """Hold out a seeded random ``fraction`` of ``ds``'s items (see the module docstring)."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"the share of held-out items must be in (0, 1), got {fraction}")
    n = ds.num_items
    cold = np.zeros(n + 1, dtype=bool)
    cold[1 + np.random.default_rng(seed).permutation(n)[: round(fraction * n)]] = True
    warm_old = np.flatnonzero(~cold)[1:]  # old ids of the warm items, ascending (0 is padding)
    cold_old = np.flatnonzero(cold)
    new_id = np.zeros(n + 1, dtype=np.int64)
    new_id[warm_old] = np.arange(1, warm_old.size + 1)
    new_id[cold_old] = np.arange(warm_old.size + 1, n + 1)

    def known(seq: np.ndarray) -> np.ndarray:
        return new_id[seq[~cold[seq]]]

    split = leave_one_out(ds)
    keep = ~cold[ds.items]  # (M,) interactions with warm items
    owner = np.repeat(np.arange(ds.num_users + 1), np.diff(ds.offsets))  # (M,) user of each
    offsets = np.zeros_like(ds.offsets)
    np.cumsum(np.bincount(owner[keep], minlength=ds.num_users + 1), out=offsets[1:])
    warm = SequenceDataset(
        name=ds.name,
        user_ids=ds.user_ids,
        item_ids=[ds.item_ids[0], *(ds.item_ids[i] for i in warm_old)],
        offsets=offsets,
        items=new_id[ds.items[keep]],
        times=ds.times[keep],
        catalog=[{}, *(ds.catalog[i] for i in warm_old)],
        key=hashlib.sha256(f"{ds.key} cold {fraction} {seed}".encode()).hexdigest(),
    )
    v, t = split.valid, split.test
    valid_rows = np.flatnonzero(~cold[v.targets])
    valid = EvalSet(
        v.users[valid_rows],
        [known(v.histories[i]) for i in valid_rows],
        new_id[v.targets[valid_rows]],
    )
    warm_rows = np.flatnonzero(~cold[t.targets])
    return ColdSplit(
        warm=warm,
        train=Split([known(s) for s in split.train], valid, valid),
        cold_ids=[ds.item_ids[i] for i in cold_old],
        cold_catalog=[ds.catalog[i] for i in cold_old],
        test=EvalSet(t.users, [new_id[h] for h in t.histories], new_id[t.targets]),
        test_known=EvalSet(
            t.users[warm_rows],
            [known(t.histories[i]) for i in warm_rows],
            new_id[t.targets[warm_rows]],
        ),
        cold_target=cold[t.targets],
    )
