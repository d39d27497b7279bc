"""The interface every recommender implements, so one trainer and one evaluator serve them all."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from darec.config import ModelConfig
from darec.data.batching import TrainBatch
from darec.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from darec.config import Config
    from darec.models.content_prior import ContentPrior

__all__ = [
    "ModelContext",
    "SequentialRecommender",
    "StreamState",
    "RunLoader",
    "cannot_add_items",
    "load_state_checked",
]


def cannot_add_items(model: str) -> ConfigError:
    """The error of a model that cannot take new items from their text."""
    return ConfigError(
        f"model {model!r} cannot add items from text: it knows items by their trained ID "
        "embeddings only (models that can: content, sasrec-text, darec)"
    )


RunLoader = Callable[[str], "tuple[Config, SequentialRecommender, dict[str, Any]]"]
"""``load_run(run_dir) -> (config, model with its best weights, id maps)``."""


@dataclass
class ModelContext:
    """What a model may know about the data when it is built."""

    num_items: int
    catalog: list[dict[str, str]] | None = None
    """Text attributes per internal item id (``catalog[0] == {}``); None when the model is
    restored from a checkpoint, which carries what the model derived from them."""
    data_key: str = ""
    """Cache key of the processed dataset (for caches derived from it)."""
    cache_dir: Path | None = None
    """Cache folder for derived data; None disables such caches."""
    load_run: RunLoader | None = None
    """Reads another run folder (e.g. DARec's ``darec.cf_checkpoint``): given by the run layer
    (:func:`darec.run.load_trained_model`), so models never import the code that reads runs."""


def load_state_checked(
    module: nn.Module, state: dict[str, torch.Tensor], what: str
) -> tuple[list[str], list[str]]:
    """``module.load_state_dict(state, strict=False)`` with a tensor of the wrong shape (an
    edited or foreign checkpoint) reported as a :class:`CheckpointError` naming ``what``;
    returns the missing and unexpected keys."""
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), "")
        raise CheckpointError(f"checkpoint does not fit {what}: {first or exc}") from None
    return list(missing), list(unexpected)


@dataclass
class StreamState:
    """A streamed user: ``history`` (1, t) item ids on the model's device, the model's own
    ``cache`` of the steps so far (None: the next step re-encodes the history) and the current
    user state ``user`` (what :meth:`SequentialRecommender.encode_users` gives for one user)."""

    history: torch.Tensor
    user: torch.Tensor
    cache: Any = None


class SequentialRecommender(nn.Module):
    """Base class: a next-item model over a catalog of ``num_items`` items (ids 1..num_items).

    Scoring is split in two so the evaluator can rank huge catalogs in chunks:
    ``encode_users`` runs once per batch of users, ``score_items`` once per catalog chunk.
    Randomness (dropout, masking, negative sampling) must come from torch's RNG so that a
    checkpoint's saved RNG state makes resuming exact.
    """

    def __init__(self, cfg: ModelConfig, num_items: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_items = num_items

    @classmethod
    def from_config(cls, cfg: Config, ctx: ModelContext) -> SequentialRecommender:
        """Build the model of a run; most models need only the ``[model]`` section and N."""
        return cls(cfg.model, ctx.num_items)

    @property
    def device(self) -> torch.device:
        """Where the model's tensors are (the CPU for a model without any). Reads the first
        tensor only: collecting every parameter cost 1 ms a call on DARec, per request."""
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint stores (models with frozen parts leave those out)."""
        return self.state_dict()

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load what :meth:`trained_state` saved; raise :class:`CheckpointError` on a mismatch."""
        missing, unexpected = load_state_checked(self, state, f"model {self.cfg.name!r}")
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint does not fit model {self.cfg.name!r} "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )

    def prepare(self, train_sequences: list[np.ndarray]) -> None:
        """Hook called once before training with every user's training sequence."""

    def loss(self, batch: TrainBatch) -> torch.Tensor:
        """Scalar training loss of one batch."""
        raise NotImplementedError

    def loss_terms(self, batch: TrainBatch) -> int:
        """How many terms :meth:`loss` averages over: the positions with a target, by default.
        Training on several processes weighs each process's share of a batch by it, so that
        their averaged gradients equal the whole batch's."""
        return int((batch.targets != 0).sum())

    def encode_users(self, history: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded item ids -> a per-user state consumed by :meth:`score_items`."""
        raise NotImplementedError

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores (B, C) of the items ``items`` (C,) for the users encoded in ``state``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ inference hooks
    # Serving and evaluation call these on any model; the defaults re-encode, which is what the
    # ID baselines need. Models with per-item work to share (DARec) override them.

    def prepare_inference(self, cache_file: Path | None, fingerprint: str) -> str:
        """Get ready to score with the current weights, reading a cache of per-item work from
        ``cache_file`` (written by an earlier call with the same ``fingerprint``), or computing
        it and writing it there (None: keep it in memory only). Returns ``loaded``, ``built`` or
        ``none`` (nothing to cache, the default)."""
        return "none"

    def per_request_layers(self) -> list[nn.Module]:
        """The modules every request runs once :meth:`prepare_inference` is done, worth
        quantizing for CPU serving (``darec.models.quantize``); none by default: the ID models
        are small, and their weights are read in a fraction of a millisecond."""
        return []

    def stream_start(self, history: torch.Tensor) -> StreamState:
        """Start streaming one user with item ids ``history`` (t,), oldest first."""
        history = history[-self.cfg.max_seq_len :].reshape(1, -1)
        return StreamState(history, self.encode_users(history)[0])

    def stream_step(self, state: StreamState, item: int) -> StreamState:
        """``state`` after one more interaction ``item``; equal to starting from the longer
        history (the default does exactly that)."""
        history = torch.cat([state.history, state.history.new_tensor([[item]])], dim=1)
        return self.stream_start(history[0])

    # ------------------------------------------------------------------ new items from text
    # A model that reads item text can take items it never trained on (``darec catalog add``):
    # ``item_rows_from_text`` computes what it needs per new item (expensive: the text encoder),
    # ``extend_catalog`` appends those rows (cheap: done at every load of the run). ID-only
    # models keep the defaults, which refuse.

    adds_items_from_text: ClassVar[bool] = False
    """Whether :meth:`item_rows_from_text` and :meth:`extend_catalog` are implemented."""

    def item_rows_from_text(
        self, cfg: Config, catalog: list[dict[str, str]], new: list[dict[str, str]]
    ) -> dict[str, torch.Tensor]:
        """Tensors with one row per item of ``new`` (text attributes), computed from the text
        alone, for :meth:`extend_catalog`. ``catalog`` is the training catalog (``catalog[0] ==
        {}``), e.g. for feature statistics. The default raises :class:`ConfigError`."""
        raise cannot_add_items(self.cfg.name)

    def extend_catalog(self, rows: dict[str, torch.Tensor]) -> None:
        """Append items ``num_items + 1 ..`` described by ``rows`` (what
        :meth:`item_rows_from_text` returned, possibly for several calls concatenated), so that
        they are scored with the rest. The default raises :class:`ConfigError`."""
        raise cannot_add_items(self.cfg.name)

    def content_prior(self) -> ContentPrior | None:
        """The content prior added to this model's scores (``model.content_weight``), for the
        trainer to choose its weight on validation; None: the model has none (the default)."""
        return None

    data_parallel: ClassVar[bool] = True
    """Whether the trainer may train the model on several processes, each on its share of the
    batch (see ``darec.training.distributed``); :attr:`data_parallel_note` says why not."""
    data_parallel_note: ClassVar[str] = ""

    @property
    def trainable(self) -> bool:
        """Whether the trainer has anything to optimise (Pop has not)."""
        return any(p.requires_grad for p in self.parameters())
