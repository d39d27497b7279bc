"""Tiny-model tests of the baselines: shapes, padding, causality, overfitting one batch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from darec.config import Config, ModelConfig
from darec.data.batching import TrainBatch, make_batch, pad_left
from darec.errors import ConfigError
from darec.models.base import ModelContext, SequentialRecommender
from darec.models.bert4rec import BERT4Rec
from darec.models.layers import catalog_span, item_rows, sample_negatives
from darec.models.registry import MODELS, build_model

NUM_ITEMS = 20
L = 8
TRAINABLE = ["gru4rec", "sasrec", "bert4rec"]


def tiny_cfg(name: str, **overrides: object) -> ModelConfig:
    base = ModelConfig(
        name=name,
        max_seq_len=L,
        hidden_size=16,
        num_layers=2,
        num_heads=2,
        inner_size=32,
        dropout=0.0,
        attn_dropout=0.0,
    )
    return dataclasses.replace(base, **overrides)


def tiny_model(name: str, seed: int = 0, **overrides: object) -> SequentialRecommender:
    torch.manual_seed(seed)
    cfg = Config(model=tiny_cfg(name, **overrides))
    return build_model(cfg, ModelContext(num_items=NUM_ITEMS))


def tiny_windows(seed: int = 0) -> list[np.ndarray]:
    """Four windows of distinct random items, of 9, 9, 6 and 4 items (two padded)."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.arange(1, NUM_ITEMS + 1))[:n] for n in (L + 1, L + 1, 6, 4)]


def tiny_batch(seed: int = 0) -> TrainBatch:
    windows = tiny_windows(seed)
    return make_batch(windows, np.arange(len(windows)), L)


def overfit(model: SequentialRecommender, batch: TrainBatch, steps: int) -> tuple[float, float]:
    """Adam at lr 1e-2 for ``steps`` steps; returns (first loss, last loss)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses[0], losses[-1]


@torch.no_grad()
def top1(model: SequentialRecommender, history: torch.Tensor) -> torch.Tensor:
    """The best-scored item of each history (B,)."""
    items = torch.arange(NUM_ITEMS + 1)
    return model.score_items(model.encode_users(history), items).argmax(dim=1)


# ------------------------------------------------------------------------------ every model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shapes_padding_and_no_nan(name: str) -> None:
    model = tiny_model(name)
    model.prepare([np.array(w) for w in tiny_windows()])
    model.eval()
    history = pad_left([np.array([], dtype=np.int64), np.array([3]), np.arange(1, 12)], L)
    items = torch.tensor([0, 1, 5, 20, 7])
    with torch.no_grad():
        state = model.encode_users(history)
        scores = model.score_items(state, items)
    assert state.shape[0] == 3
    assert scores.shape == (3, 5)
    assert not torch.isnan(scores).any()
    assert torch.isfinite(scores[:, 1:]).all()
    # the padding item never wins
    assert (scores[:, 0] == float("-inf")).all()
    # scores are a fresh tensor the evaluator may write into
    scores[:, 1] = 0.0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_catalog_chunks_score_like_any_item_list(name: str) -> None:
    """A contiguous chunk (read as a view of the item table) and the same items in another
    order or with a gap (gathered) give the same scores; neither writes into the table."""
    model = tiny_model(name)
    model.prepare([np.array(w) for w in tiny_windows()])
    model.eval()
    history = pad_left([np.array([3]), np.arange(1, 12)], L)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        state = model.encode_users(history)
        chunk = model.score_items(state, torch.arange(0, 8))
        shuffled = model.score_items(state, torch.tensor([7, 6, 5, 4, 3, 2, 1, 0]))
        chunk[:, 1] = 123.0  # the evaluator writes into the scores
    assert torch.equal(chunk[:, 2:], shuffled.flip(1)[:, 2:])
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_catalog_span_only_for_exact_ranges() -> None:
    assert catalog_span(torch.arange(3, 9)) == slice(3, 9)
    assert catalog_span(torch.tensor([5])) == slice(5, 6)
    for items in ([1, 3, 2, 4], [1, 2, 2, 4], [4, 3, 2, 1], [1, 2, 4]):
        assert catalog_span(torch.tensor(items)) is None, items
    assert catalog_span(torch.tensor([], dtype=torch.long)) is None
    table = torch.arange(20.0).reshape(10, 2)
    view = item_rows(table, torch.arange(2, 5))
    assert view.data_ptr() == table[2].data_ptr()  # no copy
    assert torch.equal(item_rows(table, torch.tensor([4, 2])), table[[4, 2]])


@pytest.mark.parametrize("name", TRAINABLE)
def test_heavy_padding_trains_without_nan(name: str) -> None:
    """Windows of 2 items (7 padding columns) and dropout on: loss and gradients stay finite."""
    model = tiny_model(name, dropout=0.5, attn_dropout=0.5)
    assert_finite_step_on_short_windows(model)


def assert_finite_step_on_short_windows(model: SequentialRecommender) -> None:
    """One training step on windows of 2-3 items in a batch of length L (mostly padding): the
    loss and every gradient are finite."""
    windows = [np.array([1, 2]), np.array([5, 9]), np.array([3, 4, 5])]
    model.train()
    loss = model.loss(make_batch(windows, np.arange(3), L))
    loss.backward()
    assert torch.isfinite(loss)
    for p in model.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", ["gru4rec", "sasrec"])
def test_next_item_models_overfit_every_prefix(name: str) -> None:
    model = tiny_model(name)
    batch = tiny_batch()
    first, last = overfit(model, batch, steps=150)
    assert first > 2.5  # about log(20) = 3.0 at initialisation
    assert last < 0.05  # about 0.001-0.005 in practice
    # every training prefix, encoded the way the evaluator does it, ranks its target first
    histories, targets = [], []
    for w in tiny_windows():
        for t in range(1, len(w)):
            histories.append(w[:t])
            targets.append(int(w[t]))
    predicted = top1(model, pad_left(histories, L))
    accuracy = (predicted == torch.tensor(targets)).float().mean().item()
    assert len(targets) == 8 + 8 + 5 + 3
    assert accuracy >= 0.95


def test_bert4rec_overfits_the_last_item() -> None:
    model = tiny_model("bert4rec")
    batch = tiny_batch()
    first, last = overfit(model, batch, steps=200)
    assert first > 2.5
    assert last < 0.3 * first
    windows = tiny_windows()
    histories = pad_left([w[:-1] for w in windows], L)
    predicted = top1(model, histories)
    assert predicted.tolist() == [int(w[-1]) for w in windows]


def test_bert4rec_masks_at_least_one_item_per_sequence() -> None:
    """With mask_prob ~0 only the forced last-item masks remain, and the loss is still defined."""
    model = tiny_model("bert4rec", mask_prob=1e-9)
    loss = model.loss(tiny_batch())
    assert torch.isfinite(loss) and loss.item() > 0


# ------------------------------------------------------------------------------ SASRec


def test_sasrec_is_causal() -> None:
    model = tiny_model("sasrec").eval()
    a = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    b = a.clone()
    b[0, 5] = 11
    with torch.no_grad():
        sa, sb = model(a), model(b)  # (1, L, D)
    assert sa.shape == (1, L, 16)
    torch.testing.assert_close(sa[:, :5], sb[:, :5])
    assert (sa[:, 5:] - sb[:, 5:]).abs().amax(dim=-1).min() > 1e-4
    # padding positions are zero
    assert (sa[:, :2] == 0).all()


@pytest.mark.parametrize("name", TRAINABLE)
def test_last_state_does_not_depend_on_padding(name: str) -> None:
    model = tiny_model(name).eval()
    items = [4, 17, 2]
    with torch.no_grad():
        unpadded = model.encode_users(torch.tensor([items]))
        padded = model.encode_users(pad_left([np.array(items)], L))
        short = model.encode_users(pad_left([np.array(items)], 5))
    torch.testing.assert_close(padded, unpadded)
    torch.testing.assert_close(short, unpadded)


def test_sasrec_bpr_loss_decreases() -> None:
    model = tiny_model("sasrec", loss="bpr")
    torch.manual_seed(1)
    first, last = overfit(model, tiny_batch(), steps=100)
    assert 0.6 < first < 0.8  # log 2 for random scores
    assert last < 0.3 * first


def test_gru4rec_bpr_loss_decreases() -> None:
    model = tiny_model("gru4rec", loss="bpr")
    first, last = overfit(model, tiny_batch(), steps=100)
    assert last < 0.5 * first


def test_negatives_are_uniform_and_never_the_positive() -> None:
    torch.manual_seed(0)
    pos = torch.full((20000,), 7)
    neg = sample_negatives(pos, 10)
    assert not (neg == pos).any()
    counts = torch.bincount(neg, minlength=11)
    assert counts[0] == 0 and counts[7] == 0
    others = counts[[1, 2, 3, 4, 5, 6, 8, 9, 10]].float()
    assert (others - 20000 / 9).abs().max() < 200


def test_training_randomness_comes_from_torch_rng() -> None:
    """Same torch RNG state -> same loss with dropout and masking on (exact resume)."""
    for name in TRAINABLE:
        model = tiny_model(name, dropout=0.3, attn_dropout=0.3, loss="bpr").train()
        batch = tiny_batch()
        state = torch.get_rng_state()
        a = model.loss(batch)
        torch.set_rng_state(state)
        b = model.loss(batch)
        assert a.item() == b.item(), name


def test_sasrec_public_api_for_darec() -> None:
    model = tiny_model("sasrec")
    assert isinstance(model, MODELS["sasrec"])
    assert model.item_embedding.weight.shape == (NUM_ITEMS + 1, 16)
    assert (model.item_embedding.weight[0] == 0).all()
    assert model(torch.zeros(2, L, dtype=torch.long)).shape == (2, L, 16)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.ones(1, L + 1, dtype=torch.long))


# ------------------------------------------------------------------------------ Pop, registry


def test_pop_ranks_by_counts() -> None:
    model = tiny_model("pop")
    assert not model.trainable
    model.prepare([np.array([3, 5, 3]), np.array([5, 3, 9]), np.array([1])])
    assert "counts" in model.state_dict()
    with torch.no_grad():
        state = model.encode_users(torch.zeros(2, L, dtype=torch.long))
        scores = model.score_items(state, torch.arange(NUM_ITEMS + 1))
    assert scores.shape == (2, NUM_ITEMS + 1)
    assert scores[0, 3] == 3 and scores[0, 5] == 2 and scores[0, 9] == 1 and scores[0, 2] == 0
    order = scores[0].argsort(descending=True).tolist()
    assert order[:2] == [3, 5] and set(order[2:4]) == {1, 9}
    assert torch.equal(scores[0], scores[1])
    with pytest.raises(RuntimeError):
        model.loss(tiny_batch())


def test_pop_rejects_unknown_items() -> None:
    with pytest.raises(ValueError, match="0..20"):
        tiny_model("pop").prepare([np.array([1, 21])])


def test_registry_unknown_name_lists_models() -> None:
    with pytest.raises(ConfigError) as err:
        build_model(Config(model=tiny_cfg("nope")), ModelContext(num_items=NUM_ITEMS))
    message = str(err.value)
    assert "'nope'" in message
    for name in ("pop", "gru4rec", "sasrec", "bert4rec", "darec"):
        assert name in message


def test_bert4rec_sees_whole_windows_of_a_trimmed_batch():
    cfg = ModelConfig(name="bert4rec", max_seq_len=4, hidden_size=16, num_heads=2)
    model = BERT4Rec(cfg, num_items=20)
    batch = make_batch(
        [np.array([1, 2, 3]), np.array([4, 5]), np.arange(6, 12)], np.arange(3), cfg.max_seq_len
    )
    items = model._window_items(batch)
    # short windows keep every item; a window longer than max_seq_len keeps its newest items
    assert items.tolist() == [[0, 1, 2, 3], [0, 0, 4, 5], [8, 9, 10, 11]]
