"""DARec's model: a frozen decoder-only LLM reads item text, adapters and special tokens adapt it
to next-item prediction, and a SASRec injects collaborative knowledge. Pure: everything here is
a function of the weights and the inputs; loading, caches and streaming live in
:mod:`darec.models.darec.runtime`, which subclasses :class:`DARecModel` as ``DARec``.

One class covers every ablation (``[darec]`` config section): context masking on/off, CKI on/off
and how the user state enters, each auxiliary task on/off with its weight, the adapter layout and
where the trainable tokens enter the stack. See docs/design.md ("The model") and
:mod:`darec.models.darec.layout` for the token layout.

Two equivalent ways to run the layers (equal up to float error with context masking; tested):

- *item-once* (default): each distinct item of the batch is encoded once (its CF, word and ALIGN
  tokens); every stream (SEQ) token then attends to the recorded keys/values of the items it may
  see, gathered per step, plus the stream tokens before it;
- *full*: every sequence's whole token stream with an explicit mask; this is also the
  no-context-masking ablation, where item tokens see earlier items and cannot be shared.

Item representations for scoring (ALIGN states) always come from an item encoded on its own, so
the whole catalog can be scored in one matrix product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from darec.config import Config
from darec.data.batching import TrainBatch
from darec.errors import CheckpointError
from darec.models.adapters import attach_adapters, first_adapted_layer, parse_layout
from darec.models.backbone import Backbone
from darec.models.base import SequentialRecommender, load_state_checked
from darec.models.darec.kv import CaptureKV, PrefixKV
from darec.models.darec.layout import (
    ItemSlots,
    full_layout,
    item_slots,
    stream_mask,
    stream_positions,
)
from darec.models.darec.lean import LeanLayer, lean_layer
from darec.models.darec.losses import alignment_loss, hard_sample_loss
from darec.models.layers import mask_padding_scores, next_item_loss
from darec.models.sasrec import SASRec
from darec.models.text_sasrec import fit_text_table

__all__ = ["DARecModel"]


class _Head(nn.Linear):
    """Linear head over final LLM states, L2-normalised and scaled by ``scale`` first (0: raw).

    AdamW moves every weight by about lr per step, so a head's output moves by about lr times
    the L1 norm of its input: raw SmolLM2 states (norm ~40 over 576 dims) would move it by ~1
    per dimension a step, far more than the CF vectors it is added to."""

    def __init__(self, width: int, out: int, scale: float) -> None:
        super().__init__(width, out)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale:
            x = F.normalize(x, dim=-1) * self.scale
        return super().forward(x)


def _short_sequence_attention(device: torch.device) -> AbstractContextManager[object]:
    """SDPA's kernel choice for many short sequences (items of ~34 tokens) while training: on the
    CPU, the flash kernel's backward takes ~5x longer there than the math kernel's (270 against
    49 ms for 384 items, 9 heads, bf16; same numerics), and the math kernel's attention
    weights are small at that length. Elsewhere torch chooses."""
    if device.type == "cpu" and torch.is_grad_enabled():
        return sdpa_kernel(SDPBackend.MATH)
    return nullcontext()


def _own_keys(
    key: torch.Tensor, value: torch.Tensor, *args: object, **kwargs: object
) -> tuple[torch.Tensor, torch.Tensor]:
    return key, value


class _Rows:
    """A cache for the layers of some rows of a batch: passes their keys/values to ``update``
    for rows ``part`` of the whole batch, whose prefix (PrefixKV) or record (CaptureKV) it is."""

    def __init__(
        self, update: Callable[..., tuple[torch.Tensor, torch.Tensor]], part: slice | None
    ) -> None:
        self.update_all, self.part = update, part

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: object, **kw: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.update_all(key, value, layer_idx, rows=self.part)


class DARecModel(SequentialRecommender):
    """LLM-based sequential recommender (DARec) as a module: weights in, scores and losses out."""

    data_parallel = False
    data_parallel_note = (
        "its loss scores every item of the whole batch with fresh text rows and writes them to "
        "a text bank, so a process holding part of the batch would train a different objective"
    )

    def __init__(
        self,
        cfg: Config,
        num_items: int,
        backbone: Backbone,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
    ) -> None:
        """``tokens`` (N + 1, T) and ``lengths`` (N + 1,): every item's sentence, right-padded
        (row 0 and items without text have length 0)."""
        super().__init__(cfg.model, num_items)
        d = self.dcfg = cfg.darec
        self.tcfg = cfg.text
        # the fast path: each distinct item once per step (darec.reference_path turns it off;
        # benchmarks time it on its own)
        self.item_once = not d.reference_path
        self.tokenizer = backbone.tokenizer
        self.llm = backbone.model
        self.layout = parse_layout(d.adapters, backbone.num_layers)
        self.adapters = attach_adapters(self.llm, self.layout, d.adapter_dropout)
        first = first_adapted_layer(self.layout)
        # trainable tokens enter at the first adapted layer: below it only words run, through
        # frozen weights, so those states never change during training
        self.enter = 0 if d.inject_at == "input" or first is None else first
        self.per_step = 2 if d.cki and d.cki_user == "token" else 1
        if d.compile:  # the layers above the entry run at every step; those below once per run
            for layer in self.llm.layers[self.enter :]:
                layer.compile(backend=d.compile, dynamic=True)

        width, rec = backbone.hidden_size, cfg.model.hidden_size
        self.cf = SASRec(cfg.model, num_items)  # CF model; its item table is the ID table
        self.align_token = nn.Parameter(torch.randn(width))
        self.seq_token = nn.Parameter(torch.randn(width))
        self.user_token = nn.Parameter(torch.randn(width))
        self.cf_proj = nn.Linear(rec, width)  # CF / ID vector -> CF token and SEQ summary
        self.user_proj = nn.Linear(rec, width)  # CF user state -> SEQ input or USER token
        self.user_head = _Head(width, rec, d.head_scale)  # final SEQ state -> user vector
        self.text_head = _Head(width, rec, d.head_scale)  # final ALIGN state -> item text vector
        # start from the CF model: no LLM user term and a small text term at initialisation, so
        # with cf_residual an untrained DARec scores exactly like its (pre-trained) CF model
        nn.init.zeros_(self.user_head.weight)
        nn.init.zeros_(self.user_head.bias)
        nn.init.normal_(self.text_head.weight, std=1e-3)
        nn.init.zeros_(self.text_head.bias)
        if d.cf_frozen:
            self.cf.requires_grad_(False)

        n = num_items + 1
        self.item_tokens: torch.Tensor
        self.item_lengths: torch.Tensor
        self.hard_negatives: torch.Tensor
        self.text_bank: torch.Tensor
        self.enter_scale: torch.Tensor
        self.register_buffer("item_tokens", tokens)  # (N + 1, T)
        self.register_buffer("item_lengths", lengths)  # (N + 1,)
        self.register_buffer("hard_negatives", torch.zeros(n, d.hard_negatives, dtype=torch.long))
        # last known ALIGN state of every item: the catalog side of the softmax for items that
        # are not in the current batch (items in the batch always use fresh states)
        self.register_buffer("text_bank", torch.zeros(n, width))
        self.register_buffer("enter_scale", torch.ones(()))
        self.enter_scale.fill_(self._entry_rms())  # a restored model then loads its own
        self._checkpoint = False  # this training step checkpoints activations (loss())
        self._chunk_budget: int | None = None  # bytes a checkpointed chunk may hold (loss())
        # inference runs the layers through lean forwards (darec.lean_inference; lean.py), built
        # on first use and kept per layer while its weights are unchanged
        self.lean_inference = d.lean_inference
        self._lean: dict[int, tuple[nn.Module, LeanLayer | None]] = {}

    def __getstate__(self) -> dict[str, object]:
        """Copies and pickles leave the lean forwards out (their packed weights are opaque
        oneDNN tensors); they are rebuilt on first use."""
        state = dict(super().__getstate__())
        state["_lean"] = {}
        return state

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.embed_tokens.weight.dtype

    def train(self, mode: bool = True) -> DARecModel:
        super().train(mode)
        if self.dcfg.cf_frozen:
            self.cf.eval()
        return self

    def _entry_rms(self) -> float:
        """Typical size of a word's hidden state where the trainable tokens enter."""
        with torch.no_grad():
            items = torch.nonzero(self.item_lengths > 0).flatten()[:256]
            if len(items) == 0:
                return float(self.llm.embed_tokens.weight.float().pow(2).mean().sqrt())
            lengths = self.item_lengths[items]
            h = self._words(self.item_tokens[items], lengths, self.enter).float()
            valid = torch.arange(h.shape[1], device=h.device)[None] < lengths[:, None]
            return float(h[valid].pow(2).mean().sqrt())

    # ------------------------------------------------------------------ the layers

    def upper_layers(self) -> Sequence[Callable[..., torch.Tensor]]:
        """The decoder layers from the entry up (those every request runs), each called as
        ``layer(h, attention_mask=..., position_embeddings=..., cache=...)``: at inference (eval
        mode, no grad, with ``darec.lean_inference``) their lean forwards where a layer has one
        (lean.py), else the transformers layers themselves. The frozen layers below the entry
        run once per item per run; they keep transformers' forward (and no weight copies)."""
        chosen = self.llm.layers[self.enter :]
        if self.training or torch.is_grad_enabled() or not self.lean_inference:
            return list(chosen)
        out: list[Callable[..., torch.Tensor]] = []
        for layer in chosen:
            known = self._lean.get(id(layer))
            if known is None or known[0] is not layer or known[1] is not None:
                # lean_layer keeps a lean forward whose layer and weights are unchanged
                known = (layer, lean_layer(layer, None if known is None else known[1]))
                self._lean[id(layer)] = known
            out.append(known[1] or layer)
        return out

    def _words(self, tokens: torch.Tensor, lengths: torch.Tensor, upto: int) -> torch.Tensor:
        """Word states (U, T, D) after the first ``upto`` layers, items encoded alone."""
        h = self.llm.embed_tokens(tokens)  # (U, T, D)
        if upto == 0:
            return h
        num_words = tokens.shape[1]
        slots = item_slots(lengths, num_words, has_cf=False)
        words = slice(1, num_words + 1)
        mask = slots.mask[:, :, words, words]  # (U, 1, T, T)
        rope = self.llm.rotary_emb(h, slots.positions[:, words])
        with torch.no_grad():
            for layer in self.llm.layers[:upto]:
                h = layer(h, attention_mask=mask, position_embeddings=rope)
        return h

    def entry_words(self, items: torch.Tensor) -> torch.Tensor:
        """Word states (U, T, D) of ``items`` where the trainable tokens enter the stack (the
        runtime serves them from a once-per-run cache: below the entry everything is frozen)."""
        return self._words(self.item_tokens[items], self.item_lengths[items], self.enter)

    def _enter_tokens(self, v: torch.Tensor) -> torch.Tensor:
        """Trainable fp32 vectors -> backbone dtype, at the hidden-state scale of the entry."""
        return (F.rms_norm(v, (v.shape[-1],)) * self.enter_scale).to(self.dtype)

    def slots_of(self, items: torch.Tensor) -> ItemSlots:
        """Slot validity, positions and mask (U, ...) of ``items`` (any shape, flattened to U),
        each item's ``[CF, words, ALIGN]`` read on its own: the one place every path (training,
        catalog, streaming) gets its item layout from."""
        lengths = self.item_lengths[items].flatten()
        return item_slots(lengths, self.item_tokens.shape[1], has_cf=self.dcfg.cki)

    def _encode_items(self, items: torch.Tensor, capture: bool) -> tuple[torch.Tensor, CaptureKV]:
        """Encode items (U,) on their own: final ALIGN states (U, D) fp32 and, with ``capture``,
        every layer's keys/values of their ``[CF, words, ALIGN]`` slots."""
        slots = self.slots_of(items)
        words = self.entry_words(items)  # (U, T, D)
        cf = self._enter_tokens(self.cf_proj(self.cf.item_embedding(items)))  # (U, D)
        align = self._enter_tokens(self.align_token).expand(len(items), -1)  # (U, D)
        h = torch.cat([cf[:, None], words, align[:, None]], dim=1)  # (U, T + 2, D)
        rope = self.llm.rotary_emb(h, slots.positions)
        kv = CaptureKV()
        h = self._upper_layers(h, slots.mask, rope, kv.update, self.dcfg.item_batch_size, True)
        kv.seal()
        if not capture:
            kv.layers.clear()
        return self.llm.norm(h[:, -1]).float(), kv

    def _upper_layers(
        self,
        h: torch.Tensor,
        mask: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        update: Callable[..., tuple[torch.Tensor, torch.Tensor]],
        rows: int,
        items: bool = False,
    ) -> torch.Tensor:
        """The layers from the entry up over ``h`` (B, N, D), whose keys/values pass through
        ``update(key, value, layer_idx) -> (K, V)`` (B rows each; see kv.py).

        When this training step checkpoints (``checkpoints``), the rows run in chunks of
        ``rows``, each under activation checkpointing: only a chunk's inputs are kept for the
        backward pass, which runs its layers again, so the activations held at once are one
        chunk's. With a budget (``step_budget``) a chunk has fewer rows when its activations
        in every trainable layer would exceed it (many trainable layers, long rows).
        ``items``: the rows are single items (short sequences; see _short_sequence_attention)."""
        if not (self._checkpoint and self.training and torch.is_grad_enabled()):
            return self._layer_stack(h, mask, rope, _Rows(update, None), items)
        if self._chunk_budget is not None:  # the backward pass holds a whole chunk's layers
            rows = min(rows, max(1, self._chunk_budget // self.activation_bytes(h.shape[1])))
        out = []
        for lo in range(0, h.shape[0], rows):
            part = slice(lo, lo + rows)
            out.append(
                checkpoint(
                    self._layer_stack,
                    h[part],
                    mask[part] if mask.shape[0] > 1 else mask,
                    (rope[0][part], rope[1][part]),
                    _Rows(update, part),
                    items,
                    use_reentrant=False,
                )
            )
        return torch.cat(out)

    def _layer_stack(
        self,
        h: torch.Tensor,
        mask: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        cache: _Rows,
        items: bool,
    ) -> torch.Tensor:
        with _short_sequence_attention(h.device) if items else nullcontext():
            for layer in self.upper_layers():
                h = layer(h, attention_mask=mask, position_embeddings=rope, cache=cache)
        return h

    def _cf_states(self, history: torch.Tensor) -> torch.Tensor | None:
        """The CF model's user states (B, L, R) after each step; None without CKI."""
        return self.cf(history) if self.dcfg.cki else None

    def _stream_inputs(self, history: torch.Tensor, cf_states: torch.Tensor | None) -> torch.Tensor:
        """(B, L * S, D) stream tokens: SEQ_t = SEQ + item t's CF vector (+ the CF user state)."""
        b, length = history.shape
        seq = self.seq_token + self.cf_proj(self.cf.item_embedding(history))  # (B, L, D)
        d = self.dcfg
        if cf_states is not None and d.cki_user != "none":
            user = self.user_proj(cf_states)  # (B, L, D) CF state after step t
            if d.cki_user == "add":
                seq = seq + user
            else:  # its own token just before SEQ_t
                seq = torch.stack([self.user_token + user, seq], dim=2).reshape(
                    b, -1, seq.shape[-1]
                )
        return self._enter_tokens(seq)

    def _seq_item_once(
        self, history: torch.Tensor, items: torch.Tensor, cf_states: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Final SEQ states (B, L, D) and ALIGN states of ``items`` (sorted, covering history)."""
        align, kv = self._encode_items(items, capture=True)
        index = torch.searchsorted(items, history.contiguous())  # (B, L) row of each step's item
        seq, _ = self._run_stream(history, index, kv.layers.__getitem__, cf_states)
        return seq, align

    def _run_stream(
        self,
        history: torch.Tensor,
        index: torch.Tensor,
        item_kv: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
        cf_states: torch.Tensor | None,
        keep: bool = False,
    ) -> tuple[torch.Tensor, PrefixKV]:
        """Final SEQ states (B, L, D) of ``history``, its stream tokens attending to item
        keys/values ``item_kv(layer) -> (K, V)``, each (U, H_kv, T + 2, d), whose row of the
        item at each step is ``index`` (B, L). ``keep``: the returned cache also holds every
        layer's prefix and stream keys/values (to continue the stream one step at a time)."""
        num_words = self.item_tokens.shape[1]
        b, length = history.shape
        step_valid = history > 0
        slots = self.slots_of(history)
        mask = stream_mask(step_valid, slots.valid.reshape(b, length, -1), self.per_step)
        if cf_states is None:
            cf_states = self._cf_states(history)
        x = self._stream_inputs(history, cf_states)  # (B, L * S, D)
        positions = stream_positions(step_valid, num_words, self.per_step)
        rope = self.llm.rotary_emb(x, positions)
        cache = PrefixKV(item_kv, index, keep=keep)
        # chunks hold the keys of about item_batch_size items; kept keys need the whole batch
        rows = b if keep else -(-self.dcfg.item_batch_size // length)
        x = self._upper_layers(x, mask, rope, cache.update, rows)
        seq = self.llm.norm(x[:, self.per_step - 1 :: self.per_step]).float()  # (B, L, D)
        return seq, cache

    def full_states(
        self, history: torch.Tensor, cf_states: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Final states (B, L, T + 2 + S, D) of every token slot, running every sequence's whole
        token stream: per step ``[CF, w_1..w_T, ALIGN, stream tokens]``."""
        b, length = history.shape
        tokens = self.item_tokens[history]  # (B, L, T)
        num_words = tokens.shape[2]
        slots = self.slots_of(history)
        item_valid = slots.valid.reshape(b, length, num_words + 2)
        item_pos = slots.positions.reshape(b, length, num_words + 2)
        layout = full_layout(
            history > 0, item_valid, item_pos, self.per_step, self.dcfg.context_masking
        )
        dim = self.llm.config.hidden_size
        per = num_words + 2 + self.per_step
        h = torch.zeros(b, length, per, dim, dtype=self.dtype, device=history.device)
        h[:, :, 1 : num_words + 1] = self.llm.embed_tokens(tokens)
        h = h.reshape(b, length * per, dim)
        rope = self.llm.rotary_emb(h, layout.positions)
        if self.enter:
            with torch.no_grad():
                for layer in self.llm.layers[: self.enter]:
                    h = layer(h, attention_mask=layout.word_mask, position_embeddings=rope)
        cf = self._enter_tokens(self.cf_proj(self.cf.item_embedding(history)))  # (B, L, D)
        align = self._enter_tokens(self.align_token).expand(b, length, -1)
        if cf_states is None:
            cf_states = self._cf_states(history)
        stream = self._stream_inputs(history, cf_states).reshape(b, length, self.per_step, dim)
        h = h.reshape(b, length, per, dim)
        h = torch.cat(
            [cf[:, :, None], h[:, :, 1 : num_words + 1], align[:, :, None], stream], dim=2
        )
        h = h.reshape(b, length * per, dim)
        rows = -(-self.dcfg.item_batch_size // length)
        h = self._upper_layers(h, layout.mask, rope, _own_keys, rows)
        return self.llm.norm(h.reshape(b, length, per, dim)).float()

    def sequence_states(
        self, history: torch.Tensor, items: torch.Tensor, cf_states: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Final SEQ states (B, L, D) of ``history`` and fresh ALIGN states of ``items``.

        ``cf_states``: the CF model's states of ``history`` if the caller has them already."""
        if self.dcfg.context_masking and self.item_once:
            return self._seq_item_once(history, items, cf_states)
        align, _ = self._encode_items(items, capture=False)
        seq = self.full_states(history, cf_states)[:, :, -1]  # SEQ is each step's last slot
        return seq, align

    def _user_vectors(self, seq: torch.Tensor, cf_states: torch.Tensor | None) -> torch.Tensor:
        """(B, L, R) user vectors from final SEQ states (+ the CF user state with cf_residual)."""
        user = self.user_head(seq)
        if cf_states is not None and self.dcfg.cf_residual:
            user = user + cf_states
        return user

    # ------------------------------------------------------------------ training

    def loss(self, batch: TrainBatch) -> torch.Tensor:
        d = self.dcfg
        history, targets = batch.inputs, batch.targets
        items = torch.unique(torch.cat([history.flatten(), targets.flatten()]))  # sorted
        cf_states = self._cf_states(history)  # one CF forward serves all three uses
        self._checkpoint = self.checkpoints(self._step_tokens(history, items))
        self._chunk_budget = self.step_budget() if self._checkpoint else None
        try:
            seq, align = self.sequence_states(history, items, cf_states)
        finally:
            self._checkpoint, self._chunk_budget = False, None
        user = self._user_vectors(seq, cf_states)  # (B, L, R)
        with torch.no_grad():
            self.text_bank[items] = align.detach()
        text_all = self.text_head(self.text_bank)  # (N + 1, R); stale rows carry no state grad
        text_items = self.text_head(align)  # (U, R) fresh rows
        text_all = text_all.index_put((items,), text_items)
        ids = self.cf.item_embedding.weight  # (N + 1, R)
        loss = d.next_item_weight * next_item_loss(user, targets, ids + text_all, "ce")
        real = items > 0
        if d.align_weight:
            loss = loss + d.align_weight * alignment_loss(
                text_items[real], ids[items[real]], d.temperature
            )
        if d.hard_weight:
            negatives = self.hard_negatives[items[real]]  # (U, K)
            loss = loss + d.hard_weight * hard_sample_loss(
                text_items[real], ids[items[real]], ids[negatives], negatives, d.temperature
            )
        if cf_states is not None and not d.cf_frozen and d.cf_loss_weight:
            cf_loss = next_item_loss(cf_states, targets, ids, self.cf.cfg.loss)  # = cf.loss
            loss = loss + d.cf_loss_weight * cf_loss
        return loss

    def _step_tokens(self, history: torch.Tensor, items: torch.Tensor) -> int:
        """Tokens a training step runs through the trainable layers: each distinct item once
        and the stream tokens (item-once path), or every sequence's whole stream."""
        num_slots = self.item_tokens.shape[1] + 2
        if self.dcfg.context_masking and self.item_once:
            return len(items) * num_slots + history.numel() * self.per_step
        return history.numel() * (num_slots + self.per_step)

    def activation_bytes(self, tokens: int) -> int:
        """Estimated activations of ``tokens`` tokens in the trainable layers: (12 x hidden +
        4 x MLP width) values per token and layer."""
        c = self.llm.config
        per_token = 12 * c.hidden_size + 4 * getattr(c, "intermediate_size", 4 * c.hidden_size)
        layers = len(self.llm.layers) - self.enter
        return max(1, tokens * layers * per_token * self.llm.embed_tokens.weight.element_size())

    def step_budget(self) -> int | None:
        """Bytes of trainable-layer activations a training step may hold at once; None: no
        bound (the runtime derives it from ``darec.activation_budget_mb`` and the device)."""
        return None

    def checkpoints(self, tokens: int) -> bool:
        """Whether a training step running ``tokens`` tokens through the trainable layers
        checkpoints its activations: ``darec.checkpoint_activations`` always/never (``auto``
        needs the device's memory, which the runtime knows; here it means never)."""
        return self.dcfg.checkpoint_activations == "always"

    # ------------------------------------------------------------------ scoring

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """(C, R) scoring vectors of ``items``: ID embedding + projected ALIGN state, each item
        encoded on its own (the runtime keeps them for the whole catalog)."""
        align, _ = self._encode_items(items, capture=False)
        return self.cf.item_embedding(items) + self.text_head(align)

    def encode_users(self, history: torch.Tensor) -> torch.Tensor:
        history = history[:, -self.cfg.max_seq_len :]
        cf_states = self._cf_states(history)
        seq, _ = self.sequence_states(history, torch.unique(history), cf_states)
        return self._user_vectors(seq, cf_states)[:, -1]  # (B, R)

    def score_items(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        scores = state @ self.item_vectors(items).T  # (B, C)
        return mask_padding_scores(scores, items)

    # ------------------------------------------------------------------ checkpoints

    def _frozen_keys(self) -> set[str]:
        """State-dict names of the frozen backbone weights."""
        return {f"llm.{n}" for n, p in self.llm.named_parameters() if not p.requires_grad}

    def trained_state(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen backbone weights (referenced by config, never copied)."""
        frozen = self._frozen_keys()
        return {k: v for k, v in self.state_dict().items() if k not in frozen}

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("item_tokens", "item_lengths", "hard_negatives", "text_bank"):
            if name in state:
                setattr(self, name, torch.empty_like(state[name], device=self.item_tokens.device))
        fit_text_table(self.cf, state, prefix="cf.")  # a CF model started from sasrec-text
        missing, unexpected = load_state_checked(self, state, "this DARec")
        frozen = self._frozen_keys()
        missing = [k for k in missing if k not in frozen]
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint does not fit this DARec (missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}); was it trained with another [darec] config?"
            )
