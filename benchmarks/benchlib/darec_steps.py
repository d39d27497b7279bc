"""DARec models on batches drawn by item popularity, and timed training steps.

Shared by benchmarks/throughput.py, autocast.py, compile_bench.py and memory.py. The few
private members of darec's classes that the benchmarks need are reached here only, each with
the reason no public API serves.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from darec.config import Config, apply_overrides
from darec.data.batching import TrainBatch
from darec.data.split import leave_one_out
from darec.models.base import ModelContext
from darec.models.darec import DARec
from darec.paths import cache_dir
from darec.run import load_data
from darec.training.trainer import Trainer

from .paths import BEAUTY


def layouts(num_layers: int) -> dict[str, str]:
    """DARec_base (serial adapters in every layer) and adapters in the top quarter only."""
    quarter = max(1, num_layers // 4)
    return {
        "base": "serial:16",
        "top_quarter": f"none*{num_layers - quarter},serial:16*{quarter}",
    }


def add_bench_args(parser: argparse.ArgumentParser) -> None:
    """The options that ``Bench`` and its batches read."""
    parser.add_argument("--data", default=str(BEAUTY) if BEAUTY.exists() else "")
    parser.add_argument("--layers", type=int, default=0, help="backbone layers (0: all)")
    parser.add_argument("--item-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2, help="sequences per training step")
    parser.add_argument("--threads", type=int, default=2)


class Bench:
    """DARec on ``args.data`` (atomic files; MovieLens-100K without), sequences of 50 items, and
    batches drawn by the training items' popularity. ``sets``: overrides applied last."""

    def __init__(self, args: argparse.Namespace, sets: list[str] | None = None) -> None:
        self.args = args
        data = [f"data.path={args.data}", "data.format=atomic"] if args.data else []
        if not args.data:
            data = ["data.format=movielens"]
        self.base = apply_overrides(
            Config(),
            [
                *data,
                "data.user_min=5",
                "data.item_min=5",
                "model.name=darec",
                "model.max_seq_len=50",
                f"text.encoder_layers={args.layers}",
                f"text.max_tokens={args.item_tokens}",
                *(sets or []),
            ],
        )
        self.dataset = load_data(self.base)
        self.split = leave_one_out(self.dataset)
        self.cache = cache_dir(self.base.cache_dir)
        counts = np.bincount(
            np.concatenate(self.split.train), minlength=self.dataset.num_items + 1
        ).astype(float)
        counts[0] = 0
        self.popularity = counts / counts.sum()

    @property
    def length(self) -> int:
        """Items per drawn sequence: ``model.max_seq_len`` (50 unless ``sets`` change it)."""
        return self.base.model.max_seq_len

    def config(self, dtype: str = "auto", **darec: Any) -> Config:
        """The base config with the encoder's ``text.dtype`` and these ``[darec]`` keys."""
        sets = [f"text.dtype={dtype}", *(f"darec.{k}={v}" for k, v in darec.items())]
        return apply_overrides(self.base, sets)

    def model(self, cfg: Config) -> DARec:
        torch.manual_seed(0)
        ctx = ModelContext(self.dataset.num_items, self.dataset.catalog, self.dataset.key, None)
        return DARec(cfg, ctx)

    def num_layers(self) -> int:
        """Decoder layers of the backbone as configured (``--layers``, or all of them)."""
        probe = self.model(self.config(adapters="none"))
        return len(probe.llm.layers)

    def batch(self, seed: int, size: int, length: int) -> TrainBatch:
        """``size`` sequences of ``length`` items drawn by training popularity."""
        gen = np.random.default_rng(seed)
        seqs = gen.choice(len(self.popularity), size=(size, length + 1), p=self.popularity)
        x = torch.as_tensor(seqs[:, :-1], dtype=torch.long)
        y = torch.as_tensor(seqs[:, 1:], dtype=torch.long)
        return TrainBatch(x, y, torch.arange(size))


def adamw(model: torch.nn.Module) -> torch.optim.AdamW:
    """AdamW (lr 1e-4) over the trainable parameters, as the step benchmarks use it."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)


def train_step(model: DARec, opt: torch.optim.Optimizer, batch: TrainBatch) -> float:
    """One training step (loss, backward, update); returns its seconds."""
    start = time.perf_counter()
    loss = model.loss(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def fill_frozen_cache(model: DARec, batches: list[TrainBatch]) -> float:
    """The frozen-layer cache for the items of ``batches`` only (a full catalog pass would take
    minutes); returns seconds per item, to report the full pass's cost."""
    if model.enter == 0 or not model.cache_frozen:
        return 0.0
    items = torch.unique(torch.cat([torch.cat([b.inputs, b.targets]).flatten() for b in batches]))
    width, dim = model.item_tokens.shape[1], model.llm.config.hidden_size
    table = torch.zeros(model.num_items + 1, width, dim, dtype=model.dtype)
    start = time.perf_counter()
    with torch.no_grad():
        for lo in range(0, len(items), 256):
            rows = items[lo : lo + 256]
            # private: DARec.entry_words fills the cache for the whole catalog only
            table[rows] = model._words(
                model.item_tokens[rows], model.item_lengths[rows], model.enter
            )
    model._entry_words = table
    return (time.perf_counter() - start) / len(items)


def uncached_user_vectors(
    model: DARec, history: torch.Tensor, frozen_cache: bool = False
) -> torch.Tensor:
    """(B, R) user vectors without the catalog cache: the user's items go through the layers
    again (all of them, or with ``frozen_cache`` only those above the frozen-prefix cache)."""
    model.cache_frozen = frozen_cache
    try:
        history = history[:, -model.cfg.max_seq_len :]
        # private: DARec.encode_users takes the catalog cache whenever one is attached
        cf = model._cf_states(history)
        seq, _ = model.sequence_states(history, torch.unique(history), cf)
        return model._user_vectors(seq, cf)[:, -1]
    finally:
        model.cache_frozen = True


def train_epoch(trainer: Trainer, epoch: int) -> str:
    """Train one epoch of ``trainer`` without validating or checkpointing; what ended it."""
    # private: Trainer.fit validates (and checkpoints) after every epoch, which is not timed
    return trainer._train_epoch(epoch)
