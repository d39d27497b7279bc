"""Token layout, positions and attention masks of DARec (docs/design.md, "Token layout and
context mask" and "Item-local positions").

Per history item i the LLM reads ``[CF_i] w_i,1 .. w_i,T [ALIGN_i]`` (the *item tokens*) followed
by the item's *stream tokens*: ``[SEQ_i]``, or ``[USER_i] [SEQ_i]`` when the CF model's user state
enters as its own key/value. Word slots are right-padded to the T word columns of the item token
table, so every item occupies ``T + 2`` slots and every step ``T + 2 + S`` slots (S stream tokens
per step). Names follow suit: ``num_words`` is T, ``num_slots`` is T + 2.

Positions:
- item tokens get *item-local* positions: CF 0, word j at j, ALIGN right after the last word;
- stream token s of step t sits at ``T + 2 + t * S + s`` (t counted from the first real
  step), so the SEQ tokens' relative positions
  carry the order of the history, and RoPE (relative) makes an item's states independent of where
  it appears.

All masks are boolean, ``True`` = may attend, shaped for transformers' attention functions
``(B, 1, Q, K)``. A query that may see nothing valid (padding) sees itself, so no row of the
softmax is empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ItemSlots", "item_slots", "stream_positions", "stream_mask", "full_layout"]


@dataclass
class ItemSlots:
    """The ``T + 2`` slots of a batch of U items: ``[CF, w_1..w_T, ALIGN]``."""

    valid: torch.Tensor  # (U, T + 2) bool: the slot holds a real token
    positions: torch.Tensor  # (U, T + 2) int64 item-local positions
    mask: torch.Tensor  # (U, 1, T + 2, T + 2) bool: causal within the item, valid keys only

    @property
    def num_slots(self) -> int:
        """T + 2."""
        return int(self.valid.shape[1])


def _with_self(allowed: torch.Tensor) -> torch.Tensor:
    """``allowed`` (..., Q, Q) or (..., Q, K >= Q aligned at the end) plus the diagonal."""
    q = allowed.shape[-2]
    eye = torch.eye(q, dtype=torch.bool, device=allowed.device)
    if allowed.shape[-1] > q:
        eye = torch.cat([eye.new_zeros(q, allowed.shape[-1] - q), eye], dim=1)
    return allowed | eye


def item_slots(lengths: torch.Tensor, num_words: int, has_cf: bool) -> ItemSlots:
    """Slots of items with ``lengths`` (U,) words in a table of ``num_words`` (T) word columns."""
    device = lengths.device
    cols = torch.arange(num_words, device=device)
    is_word = cols[None, :] < lengths[:, None]  # (U, T)
    cf = torch.full_like(lengths, has_cf, dtype=torch.bool)[:, None]  # (U, 1)
    align = torch.ones_like(cf)  # (U, 1)
    valid = torch.cat([cf, is_word, align], dim=1)  # (U, T + 2)
    positions = torch.cat(
        [
            torch.zeros_like(lengths)[:, None],
            (cols + 1).expand(len(lengths), -1),
            lengths[:, None] + 1,
        ],
        dim=1,
    )  # (U, T + 2)
    n = num_words + 2
    causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()  # slot order = token order
    mask = _with_self(causal[None] & valid[:, None, :])  # (U, T + 2, T + 2)
    return ItemSlots(valid=valid, positions=positions, mask=mask[:, None])


def stream_positions(step_valid: torch.Tensor, num_words: int, per_step: int) -> torch.Tensor:
    """(B, L * S) positions of the stream tokens: ``T + 2 + t * S + s`` (T = ``num_words``) with
    t counted from each row's first real step, so left padding changes nothing."""
    step = (step_valid.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, L)
    offsets = torch.arange(per_step, device=step_valid.device)
    pos = num_words + 2 + step[:, :, None] * per_step + offsets  # (B, L, S)
    return pos.reshape(step_valid.shape[0], -1)


def stream_mask(step_valid: torch.Tensor, item_valid: torch.Tensor, per_step: int) -> torch.Tensor:
    """Mask (B, 1, L * S, L * (T + 2) + L * S) of the stream tokens over [item slots, stream].

    ``step_valid`` (B, L): the step holds an item; ``item_valid`` (B, L, T + 2): the slots of
    the item at each step. A stream token of step t sees the valid slots of items at steps <= t
    and the stream tokens before it (its own included).
    """
    b, length, num_slots = item_valid.shape  # num_slots = T + 2
    device = step_valid.device
    steps = torch.arange(length, device=device)
    q_step = steps.repeat_interleave(per_step)  # (L * S,)
    k_step = steps.repeat_interleave(num_slots)  # (L * (T + 2),)
    sees_item = k_step[None, :] <= q_step[:, None]  # (L * S, L * (T + 2))
    keys = (item_valid & step_valid[:, :, None]).reshape(b, 1, length * num_slots)
    to_items = sees_item[None] & keys  # (B, L * S, L * (T + 2))
    n = length * per_step
    causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    stream_keys = step_valid.repeat_interleave(per_step, dim=1)  # (B, L * S)
    to_stream = causal[None] & stream_keys[:, None, :]  # (B, L * S, L * S)
    return _with_self(torch.cat([to_items, to_stream], dim=2))[:, None]


@dataclass
class FullLayout:
    """The straightforward layout: every step's item and stream tokens in one sequence."""

    positions: torch.Tensor  # (B, L * (T + 2 + S)) int64
    mask: torch.Tensor  # (B, 1, N, N) bool, N = L * (T + 2 + S)
    word_mask: torch.Tensor  # (B, 1, N, N) bool: the mask below the entry layer (words only)
    kind: torch.Tensor  # (N,) int64: 0 CF, 1 word, 2 ALIGN, 3 + s stream token s


def full_layout(
    step_valid: torch.Tensor,
    item_valid: torch.Tensor,
    item_positions: torch.Tensor,
    per_step: int,
    context_masking: bool,
) -> FullLayout:
    """Positions and masks of the straightforward path (and the no-context-masking ablation).

    ``item_valid``/``item_positions`` (B, L, T + 2) describe the item at each step. With context
    masking, item slots see earlier slots of their own item only and stream tokens see all slots
    of steps <= theirs, exactly as in the factorised path. Without it, the mask is plain causal
    over every valid token and positions count valid tokens from the start of the sequence.
    ``word_mask`` is the mask used below the entry layer, where only words exist.
    """
    b, length, num_slots = item_valid.shape  # num_slots = T + 2
    num_words = num_slots - 2
    device = step_valid.device
    per = num_slots + per_step
    stream_valid = step_valid[:, :, None].expand(b, length, per_step)
    valid = torch.cat([item_valid & step_valid[:, :, None], stream_valid], dim=2)  # (B, L, per)
    valid = valid.reshape(b, length * per)
    kind = torch.cat(
        [
            torch.tensor([0], device=device),
            torch.ones(num_words, dtype=torch.long, device=device),
            torch.tensor([2], device=device),
            3 + torch.arange(per_step, device=device),
        ]
    ).repeat(length)  # (N,)
    step = torch.arange(length, device=device).repeat_interleave(per)  # (N,)
    n = length * per
    causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    is_word = kind == 1
    word_keys = valid & is_word[None, :]
    if context_masking:
        is_item = kind < 3
        same_step = step[:, None] == step[None, :]
        # item slot queries: same item only; stream queries: any slot of steps <= theirs
        rule = torch.where(
            is_item[:, None], same_step & is_item[None, :], step[None, :] <= step[:, None]
        )
        allowed = causal & rule
        stream_pos = stream_positions(step_valid, num_words, per_step).reshape(b, length, per_step)
        pos = torch.cat([item_positions, stream_pos], dim=2)
        positions = pos.reshape(b, n)
        words_only = _with_self(causal & same_step & word_keys[:, None, :])
    else:
        allowed = causal
        positions = (valid.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, N)
        words_only = _with_self(causal & word_keys[:, None, :])
    mask = _with_self(allowed[None] & valid[:, None, :])
    return FullLayout(
        positions=positions, mask=mask[:, None], word_mask=words_only[:, None], kind=kind
    )
