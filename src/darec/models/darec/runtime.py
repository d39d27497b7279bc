"""DARec at run time: what surrounds :class:`~darec.models.darec.model.DARecModel` when it
trains and serves, none of which changes a score.

- loading: the backbone (``text.encoder``), the item sentences of the catalog, the CF start
  (``darec.cf_checkpoint``, read through the run loader the context gives);
- the frozen-prefix cache: item word states below the entry layer, computed once per run;
- hard negatives (cached with the dataset) and the first catalog pass for the text bank;
- activation checkpointing decided from the device's memory;
- the catalog cache (every item's scoring vector and per-layer keys/values) and its file beside
  a checkpoint, so a user costs only its stream tokens;
- streaming users: one more interaction runs only its stream tokens.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from darec.config import Config, config_from_run
from darec.data.hard_negatives import cached_hard_negatives, hard_negatives
from darec.devices import pick_device
from darec.errors import CheckpointError, ConfigError
from darec.models.backbone import Backbone, load_backbone, resolve_dtype
from darec.models.base import ModelContext, StreamState
from darec.models.content_prior import ContentPrior
from darec.models.darec.catalog import CatalogKV
from darec.models.darec.kv import StreamKV
from darec.models.darec.layout import stream_positions
from darec.models.darec.model import DARecModel
from darec.models.item_text import mean_word_states, tokenize_catalog
from darec.models.layers import item_rows, mask_padding_scores
from darec.models.text_sasrec import TextItemTable, fit_text_table, new_text_table_rows
from darec.paths import cache_dir

__all__ = ["DARec", "activation_budget", "CPU_ACTIVATION_BUDGET_MB", "GPU_ACTIVATION_SHARE"]

log = logging.getLogger(__name__)

_CF_MODELS = ("sasrec", "sasrec-text")
"""Runs darec.cf_checkpoint may name: their item tables become DARec's ID table."""

CPU_ACTIVATION_BUDGET_MB = 4096
"""darec.activation_budget_mb=0 on the CPU (benchmarks/memory.py: Beauty's heaviest steps, over
it, run faster checkpointed; ML-100K's, under it, slower)."""
GPU_ACTIVATION_SHARE = 0.6
STREAM_ROOM_STEPS = 4
"""A streamed user's key/value buffers start with room for this many more interactions, so
its first events append in place; later ones grow the buffers by doubling."""
"""darec.activation_budget_mb=0 on a CUDA device: this share of its unallocated memory."""


def activation_budget(mb: int, device: torch.device) -> int:
    """Bytes of trainable-layer activations a step may keep (``darec.activation_budget_mb``; 0:
    derived from ``device``'s memory, as the config reference says)."""
    if mb:
        return mb * 2**20
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        return int(GPU_ACTIVATION_SHARE * (total - torch.cuda.memory_allocated(device)))
    return CPU_ACTIVATION_BUDGET_MB * 2**20


class DARec(DARecModel):
    """DARec built from a config and the data (``backbone`` overrides ``text.encoder``), with
    its caches, for training and serving."""

    def __init__(self, cfg: Config, ctx: ModelContext, backbone: Backbone | None = None) -> None:
        t = cfg.text
        if backbone is None:
            dtype = resolve_dtype(t.dtype, torch.device(pick_device(cfg.train.device)))
            backbone = load_backbone(t.encoder, t.encoder_layers, dtype, cache_dir(cfg.cache_dir))
        n = ctx.num_items + 1
        if ctx.catalog is not None:
            tokens, lengths = tokenize_catalog(
                ctx.catalog, backbone.tokenizer, t.fields, t.max_tokens
            )
        else:  # restored from a checkpoint by load_trained_state
            tokens, lengths = torch.zeros(n, 1, dtype=torch.long), torch.zeros(n, dtype=torch.long)
        super().__init__(cfg, ctx.num_items, backbone, tokens, lengths)
        # the frozen-prefix cache (off with darec.reference_path; benchmarks time it alone)
        self.cache_frozen = not cfg.darec.reference_path
        self.backbone_source = backbone.source
        self.cache_root = ctx.cache_dir
        self.data_key = ctx.data_key
        if cfg.darec.cf_checkpoint and ctx.catalog is not None:  # a restored model has it already
            self._load_cf(cfg.darec.cf_checkpoint, cfg, ctx)
        # the catalog cache (item vectors, and keys/values when they fit), with the parameter
        # versions it was computed from
        self._catalog: tuple[tuple[int, ...], CatalogKV] | None = None
        self._key_params: list[nn.Parameter] | None = None  # the parameters, once listed
        self._entry_words: torch.Tensor | None = None  # (N + 1, T, D) see entry_words()
        m = cfg.model  # the content prior, when the CF model reads text (content_prior())
        self.prior = ContentPrior(m.content_weight, m.content_decay, m.max_seq_len)

    @classmethod
    def from_config(cls, cfg: Config, ctx: ModelContext) -> DARec:
        return cls(cfg, ctx)

    # ------------------------------------------------------------------ setup

    def _load_cf(self, run_dir: str, cfg: Config, ctx: ModelContext) -> None:
        if ctx.load_run is None:
            raise ConfigError(
                f"darec.cf_checkpoint={run_dir!r} needs a run loader in the model context "
                "(darec.run.load_trained_model); build the model through the trainer"
            )
        cf_cfg, cf_model, _ = ctx.load_run(run_dir)
        if cf_cfg.model.name not in _CF_MODELS or cf_model.num_items != self.num_items:
            raise ConfigError(
                f"darec.cf_checkpoint {run_dir!r} must be a {' or '.join(_CF_MODELS)} run on "
                f"the same items (got model {cf_cfg.model.name!r} with {cf_model.num_items} "
                f"items, expected {self.num_items})"
            )
        if cf_cfg.model.hidden_size != cfg.model.hidden_size:
            raise ConfigError(
                f"darec.cf_checkpoint {run_dir!r} has model.hidden_size "
                f"{cf_cfg.model.hidden_size}; set model.hidden_size to match"
            )
        state = cf_model.state_dict()
        fit_text_table(self.cf, state)  # sasrec-text: its item table adds text features
        self.cf.load_state_dict(state)

    def prepare(self, train_sequences: list[np.ndarray]) -> None:
        """Hard negatives (cached with the dataset) and a first catalog pass for the bank."""
        was_training = self.training
        self.eval()  # no dropout: the same states (and RNG draws) whether or not cached
        if self.dcfg.hard_weight:
            self.hard_negatives.copy_(self._hard_negatives(train_sequences))
        with torch.no_grad():
            self.text_bank.copy_(self._catalog_pass(capture=False)[0])
        self.train(was_training)

    def _hard_negatives(self, train_sequences: list[np.ndarray]) -> torch.Tensor:
        d = self.dcfg
        spec = {
            "data": self.data_key,
            "backbone": self.backbone_source,
            "layers": len(self.llm.layers),
            "fields": list(self.tcfg.fields),
            "max_tokens": self.tcfg.max_tokens,
            "k": d.hard_negatives,
            "tokens": hashlib.sha256(self.item_tokens.cpu().numpy().tobytes()).hexdigest(),
        }
        key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]

        def compute() -> torch.Tensor:
            with torch.no_grad():
                emb = self._text_embeddings().cpu()
            return hard_negatives(emb, train_sequences, d.hard_negatives)

        cache = Path(self.cache_root) if self.cache_root and self.data_key else None
        return cached_hard_negatives(cache, key, compute).to(self.item_tokens.device)

    def _text_embeddings(self) -> torch.Tensor:
        """(N + 1, D) mean of each item's final word states in the frozen backbone (0: no text)."""
        out = torch.zeros(self.num_items + 1, self.llm.config.hidden_size)
        for lo in range(0, self.num_items + 1, self.dcfg.item_batch_size):
            items = torch.arange(lo, min(self.num_items + 1, lo + self.dcfg.item_batch_size))
            items = items.to(self.item_tokens.device)
            lengths = self.item_lengths[items]
            h = self._words(self.item_tokens[items], lengths, len(self.llm.layers))
            out[items.cpu()] = mean_word_states(self.llm.norm(h), lengths).cpu()
        return out

    # ------------------------------------------------------------------ training

    def entry_words(self, items: torch.Tensor) -> torch.Tensor:
        """Word states (U, T, D) of ``items`` where the trainable tokens enter the stack.

        Below the entry layer everything is frozen and only an item's own words run, so with
        ``cache_frozen`` (off with ``darec.reference_path``) these states are computed once for
        the whole catalog and reused by every step (frozen layers then cost nothing after the
        first pass)."""
        if self.enter == 0 or not self.cache_frozen:
            return super().entry_words(items)
        if self._entry_words is None:
            step = self.dcfg.item_batch_size
            chunks = []
            for lo in range(0, self.num_items + 1, step):
                rows = torch.arange(lo, min(self.num_items + 1, lo + step), device=items.device)
                with torch.no_grad():
                    chunks.append(
                        self._words(self.item_tokens[rows], self.item_lengths[rows], self.enter)
                    )
            self._entry_words = torch.cat(chunks)
        if self._entry_words.device != items.device:  # built before the model was moved
            self._entry_words = self._entry_words.to(items.device)
        return self._entry_words[items]

    def checkpoints(self, tokens: int) -> bool:
        """Whether a training step running ``tokens`` tokens through the trainable layers
        checkpoints its activations (``darec.checkpoint_activations``)."""
        mode = self.dcfg.checkpoint_activations
        if mode != "auto":
            return mode == "always"
        return self.activation_bytes(tokens) > self.step_budget()

    def step_budget(self) -> int:
        """``darec.activation_budget_mb`` in bytes (0: derived from the device): over it a step
        checkpoints (auto), and its checkpointed chunks stay under it."""
        return activation_budget(self.dcfg.activation_budget_mb, self.item_tokens.device)

    # ------------------------------------------------------------------ scoring

    def _catalog_key(self) -> tuple[int, ...]:
        """Versions of the parameters that can change and of the item table: any in-place
        update bumps one. Those are the trainable ones and the CF model's (its item table is
        the ID table, even when frozen): training updates nothing else, and loading weights
        updates those too. Read several times a request, so the frozen LLM weights (272 of the
        367 tensors of the Beauty serving run) are left out."""
        if self._key_params is None:  # walking the module tree costs ~0.5 ms a call
            watched = {id(p): p for p in self.parameters() if p.requires_grad}
            watched |= {id(p): p for p in self.cf.parameters()}
            self._key_params = list(watched.values())
        versions = tuple(p._version for p in self._key_params)
        return (*versions, id(self.item_tokens), self.item_tokens._version)

    def catalog_kv_bytes(self) -> int:
        """Size of the catalog cache's keys and values for this model and catalog."""
        c = self.llm.config
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        slots = self.item_tokens.shape[1] + 2
        size = self.llm.embed_tokens.weight.element_size()
        per_value = c.num_key_value_heads * head_dim * slots * size
        return 2 * (len(self.llm.layers) - self.enter) * (self.num_items + 1) * per_value

    def _catalog_pass(
        self, capture: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Every item encoded once, in chunks of ``darec.item_batch_size``: ALIGN states
        (N + 1, D) and, with ``capture``, keys and values (L_c, N + 1, H_kv, T + 2, d)."""
        n, step = self.num_items + 1, self.dcfg.item_batch_size
        align = torch.zeros_like(self.text_bank)
        keys: torch.Tensor | None = None
        values: torch.Tensor | None = None
        with torch.no_grad():
            for lo in range(0, n, step):
                items = torch.arange(lo, min(n, lo + step), device=align.device)
                align[items], kv = self._encode_items(items, capture=capture)
                if not capture:
                    continue
                k = torch.stack([kv.layers[i][0] for i in sorted(kv.layers)])  # (L_c, U, H, W, d)
                v = torch.stack([kv.layers[i][1] for i in sorted(kv.layers)])
                if keys is None or values is None:
                    keys = k.new_empty((k.shape[0], n, *k.shape[2:]))
                    values = torch.empty_like(keys)
                keys[:, lo : lo + len(items)] = k
                values[:, lo : lo + len(items)] = v
        return align, keys, values

    def build_catalog(self) -> CatalogKV:
        """Encode every item once: scoring vectors (N + 1, R) and, when they fit in
        ``darec.catalog_cache_mb``, each layer's keys/values of its item slots."""
        budget = self.dcfg.catalog_cache_mb * 2**20
        with_kv = self.dcfg.context_masking and 0 < self.catalog_kv_bytes() <= budget
        align, keys, values = self._catalog_pass(capture=with_kv)
        with torch.no_grad():
            vectors = self.cf.item_embedding.weight + self.text_head(align)
        return CatalogKV(vectors, self.enter, keys, values)

    def catalog(self) -> CatalogKV:
        """The catalog cache, rebuilt only when a parameter has changed since it was built."""
        key = self._catalog_key()
        if self._catalog is None or self._catalog[0] != key:
            self._catalog = (key, self.build_catalog())
        return self._catalog[1]

    def attach_catalog(self, cache: CatalogKV) -> None:
        """Use a saved catalog cache of exactly these weights (see serving.inference_cache)."""
        if cache.first_layer != self.enter or cache.vectors.shape[0] != self.num_items + 1:
            raise CheckpointError(
                f"catalog cache does not fit this model (first layer {cache.first_layer}, "
                f"{cache.vectors.shape[0]} rows; expected {self.enter}, {self.num_items + 1})"
            )
        self._catalog = (self._catalog_key(), cache.to(self.item_tokens.device))

    def per_request_layers(self) -> list[nn.Module]:
        """The LLM layers a user's stream tokens run through: from the first layer with a
        trainable part when the catalog cache holds the item keys/values, else all of them."""
        cached = self.dcfg.context_masking and self.catalog().has_kv
        return list(self.llm.layers[self.enter if cached else 0 :])

    def catalog_vectors(self) -> torch.Tensor:
        """(N + 1, R) item vectors: ID embedding + projected ALIGN state (cached)."""
        return self.catalog().vectors

    def encode_users(self, history: torch.Tensor) -> torch.Tensor:
        """(B, R) user vectors, followed by the (B, D) text vectors of the histories when the
        content prior is on."""
        history = history[:, -self.cfg.max_seq_len :]
        cf_states = self._cf_states(history)
        catalog = None if self.training or not self.dcfg.context_masking else self.catalog()
        if catalog is not None and catalog.has_kv:
            # a user costs only its stream tokens: item keys/values come from the catalog cache
            seq, _ = self._run_stream(history, history, catalog.layer, cf_states)
            users = self._user_vectors(seq, cf_states)[:, -1]  # (B, R)
        else:
            users = super().encode_users(history)
        return self._with_prior(users, history)

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        rec = self.cfg.hidden_size
        scores = state[:, :rec] @ item_rows(self.catalog_vectors(), items).T  # (B, C)
        if state.shape[1] > rec:  # encoded with the content prior on
            scores = scores + self.prior.scores(state[:, rec:], self._text_feats(), items)
        return mask_padding_scores(scores, items)

    # ------------------------------------------------------------------ the content prior

    def content_prior(self) -> ContentPrior | None:
        """The content prior over the text features of the CF model's item table
        (``model.content_weight``, or chosen on validation with ``eval.content_weights``), when
        the CF start is a ``sasrec-text`` run; None otherwise: there is no text vector to take
        the cosine of."""
        return self.prior if isinstance(self.cf.item_embedding, TextItemTable) else None

    def _text_feats(self) -> torch.Tensor:
        table = self.cf.item_embedding
        assert isinstance(table, TextItemTable)  # content_prior() is not None
        return table.feats

    def _with_prior(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """``users`` (B, R), followed by the histories' text vectors when the prior is on."""
        prior = self.content_prior()
        if prior is None or not prior.active:
            return users
        text = prior.user_vectors(self._text_feats(), history[:, -self.cfg.max_seq_len :])
        return torch.cat([users, text.to(users.dtype)], dim=-1)

    def prepare_inference(self, cache_file: Path | None, fingerprint: str) -> str:
        """The catalog cache of these weights: read from ``cache_file`` when it holds this
        ``fingerprint``, else built (and written there, unless None or unwritable)."""
        if cache_file is not None and cache_file.exists():
            try:
                self.attach_catalog(CatalogKV.load(cache_file, fingerprint))
                return "loaded"
            except CheckpointError as exc:
                log.warning("%s; computing it again", exc)
        with torch.no_grad():
            cache = self.catalog()
        if cache_file is not None:
            try:
                cache.to(torch.device("cpu")).save(cache_file, fingerprint)
            except OSError as exc:  # a read-only run folder: keep the cache in memory only
                log.warning("could not save the catalog cache to %s: %s", cache_file, exc)
        return "built"

    # ------------------------------------------------------------------ streaming users

    def stream_start(self, history: torch.Tensor) -> StreamState:
        """Start streaming one user with item ids ``history`` (t,), oldest first."""
        catalog = self.catalog()
        if not (self.dcfg.context_masking and catalog.has_kv):
            return super().stream_start(history)
        history = history[-self.cfg.max_seq_len :].reshape(1, -1)
        cf_states = self._cf_states(history)
        seq, cache = self._run_stream(history, history, catalog.layer, cf_states, keep=True)
        user = self._with_prior(self._user_vectors(seq, cf_states)[:, -1], history)[0]
        step_valid = history[0] > 0
        slots = self.slots_of(history[0])
        item_valid = (slots.valid & step_valid[:, None]).flatten()
        stream_valid = step_valid.repeat_interleave(self.per_step)
        room = STREAM_ROOM_STEPS * (slots.valid.shape[1] + self.per_step)
        kv = StreamKV.from_prefix(cache, item_valid, stream_valid, room)
        return StreamState(history, user, kv)

    def stream_step(self, state: StreamState, item: int) -> StreamState:
        """``state`` after one more interaction: runs only the new step's stream tokens
        (S of them) against the cached keys/values, equal to re-encoding the whole history."""
        history = torch.cat([state.history, state.history.new_tensor([[item]])], dim=1)
        if state.cache is None or history.shape[1] > self.cfg.max_seq_len:
            return self.stream_start(history[0])  # the window slides: every state changes
        catalog = self.catalog()
        cf_all = self._cf_states(history)  # SASRec is causal: earlier states are unchanged
        cf_states = None if cf_all is None else cf_all[:, -1:]  # (1, 1, R)
        x = self._stream_inputs(history[:, -1:], cf_states)  # (1, S, D)
        num_words = self.item_tokens.shape[1]
        positions = stream_positions(history > 0, num_words, self.per_step)[:, -self.per_step :]
        rope = self.llm.rotary_emb(x, positions)
        slots = self.slots_of(history[0, -1:])
        kv = state.cache.extend(catalog.layer, history[0, -1], slots.valid[0])
        mask = kv.mask(self.per_step)
        for layer in self.upper_layers():
            x = layer(x, attention_mask=mask, position_embeddings=rope, cache=kv)
        seq = self.llm.norm(x[:, -1:]).float()  # (1, 1, D)
        user = self._with_prior(self._user_vectors(seq, cf_states)[:, -1], history)[0]
        return StreamState(history, user, kv.advanced())

    # ------------------------------------------------------------------ new items from text

    adds_items_from_text = True

    def item_rows_from_text(
        self, cfg: Config, catalog: list[dict[str, str]], new: list[dict[str, str]]
    ) -> dict[str, torch.Tensor]:
        """``tokens`` (M, T) and ``lengths`` (M,): the new items' sentences, cut to the width T
        of the trained item table (its longest sentence, at most ``text.max_tokens``); when the
        CF model is a ``sasrec-text`` start, also its text table's rows for them
        (:meth:`_cf_text_rows`)."""
        t = cfg.text
        tokens, lengths = tokenize_catalog([{}, *new], self.tokenizer, t.fields, t.max_tokens)
        tokens, lengths = tokens[1:], lengths[1:]  # row 0 was padding
        if not lengths.all():
            first = int(torch.nonzero(lengths == 0)[0])
            raise ConfigError(
                f"new item {first + 1} of {len(new)} ({new[first]!r}) has no text in "
                f"text.fields ({', '.join(t.fields) or 'any attribute'}); DARec can add an item "
                "from its text only"
            )
        width = self.item_tokens.shape[1]
        fitted = torch.zeros(len(new), width, dtype=torch.long)
        fitted[:, : min(width, tokens.shape[1])] = tokens[:, :width]
        rows = {"tokens": fitted, "lengths": lengths.clamp(max=width)}
        return {**rows, **self._cf_text_rows(cfg, catalog, new)}

    def _cf_text_rows(
        self, cfg: Config, catalog: list[dict[str, str]], new: list[dict[str, str]]
    ) -> dict[str, torch.Tensor]:
        """The CF model's text-table rows for the new items (``feats``, and ``ids`` as
        ``model.new_item_ids`` says), their text read with the settings of the run it started
        from (``darec.cf_checkpoint``: its encoder, fields, whitening), so that the CF model's
        text branch and the content prior know them as they know trained items. Empty for a
        plain SASRec CF model; zero features, with a warning, when that run is gone."""
        table = self.cf.item_embedding
        if not isinstance(table, TextItemTable):
            return {}
        source = Path(cfg.darec.cf_checkpoint) if cfg.darec.cf_checkpoint else None
        if source is None or not (source / "config.json").exists():
            log.warning(
                "darec.cf_checkpoint %r is not a run folder here: the new items get zero text "
                "features in the CF model (its text branch and the content prior ignore them)",
                cfg.darec.cf_checkpoint,
            )
            return {"feats": table.feats.new_zeros(len(new), table.feats.shape[1])}
        cf_text = config_from_run(json.loads((source / "config.json").read_text())).text
        return new_text_table_rows(table, dataclasses.replace(cfg, text=cf_text), catalog, new)

    def extend_catalog(self, rows: dict[str, torch.Tensor]) -> None:
        """Append items with the sentences ``rows["tokens"]`` / ``rows["lengths"]`` and the CF
        rows ``rows["feats"]`` / ``rows["ids"]`` of a sasrec-text CF model (zero where absent;
        a plain SASRec CF model gets zero ID rows): the LLM's ALIGN state, and the CF model's text
        branch when it has one, represent them. A catalog cache that is current is extended by
        encoding the new items alone (a server adding items keeps its cache); otherwise it is
        rebuilt on next use."""
        tokens, lengths = rows["tokens"], rows["lengths"]
        m, width = tokens.shape
        if width != self.item_tokens.shape[1] or lengths.shape != (m,):
            raise CheckpointError(
                f"new item tokens have shape {tuple(tokens.shape)} and lengths "
                f"{tuple(lengths.shape)}; expected (M, {self.item_tokens.shape[1]}) and (M,)"
            )
        current = self._catalog is not None and self._catalog[0] == self._catalog_key()
        kept = self._catalog[1] if current and self._catalog is not None else None
        device = self.item_tokens.device
        if self._entry_words is not None:  # the frozen-prefix cache: the new items' rows only
            with torch.no_grad():
                new_words = self._words(tokens.to(device), lengths.to(device), self.enter)
            self._entry_words = torch.cat([self._entry_words, new_words.to(self._entry_words)])
        self.item_tokens = torch.cat([self.item_tokens, tokens.to(device)])
        self.item_lengths = torch.cat([self.item_lengths, lengths.to(device)])
        self.hard_negatives = torch.cat(
            [self.hard_negatives, self.hard_negatives.new_zeros(m, self.hard_negatives.shape[1])]
        )
        self.text_bank = torch.cat(
            [self.text_bank, self.text_bank.new_zeros(m, self.text_bank.shape[1])]
        )
        table = self.cf.item_embedding
        if isinstance(table, TextItemTable):
            feats = rows.get("feats", table.feats.new_zeros(m, table.feats.shape[1]))
            table.extend(feats.to(table.feats), rows.get("ids"))
        else:
            grown = nn.Embedding(table.num_embeddings + m, table.embedding_dim, padding_idx=0)
            grown.to(table.weight.device, table.weight.dtype)
            grown.requires_grad_(table.weight.requires_grad)
            with torch.no_grad():
                grown.weight.zero_()
                grown.weight[: table.num_embeddings] = table.weight
            self.cf.item_embedding = grown
        self.cf.num_items += m
        self.num_items += m
        self._catalog = None
        self._key_params = None  # the CF item table may be a new module
        if kept is not None:
            extended = self._extended_catalog(kept, m)
            if extended is not None:
                self._catalog = (self._catalog_key(), extended)

    def _extended_catalog(self, cache: CatalogKV, m: int) -> CatalogKV | None:
        """``cache`` of the catalog before its last ``m`` items, with those items encoded and
        appended; None when its keys/values no longer fit ``darec.catalog_cache_mb`` (then the
        next use rebuilds it, vectors only)."""
        with_kv = cache.has_kv
        if with_kv and self.catalog_kv_bytes() > self.dcfg.catalog_cache_mb * 2**20:
            return None
        device = self.item_tokens.device
        new = torch.arange(self.num_items + 1 - m, self.num_items + 1, device=device)
        step = self.dcfg.item_batch_size
        aligns, keys, values = [], [], []
        with torch.no_grad():
            for lo in range(0, m, step):
                align, kv = self._encode_items(new[lo : lo + step], capture=with_kv)
                aligns.append(align)
                if with_kv:
                    keys.append(torch.stack([kv.layers[i][0] for i in sorted(kv.layers)]))
                    values.append(torch.stack([kv.layers[i][1] for i in sorted(kv.layers)]))
            vectors = self.cf.item_embedding.weight[new] + self.text_head(torch.cat(aligns))
        vectors = torch.cat([cache.vectors, vectors.to(cache.vectors)])
        if not (with_kv and cache.keys is not None and cache.values is not None):
            return CatalogKV(vectors, cache.first_layer)
        grown_keys = torch.cat([cache.keys, torch.cat(keys, dim=1).to(cache.keys)], dim=1)
        grown_values = torch.cat([cache.values, torch.cat(values, dim=1).to(cache.values)], dim=1)
        return CatalogKV(vectors, cache.first_layer, grown_keys, grown_values)

    # ------------------------------------------------------------------ checkpoints

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        super().load_trained_state(state)
        self._entry_words = None  # the item tokens may have changed
