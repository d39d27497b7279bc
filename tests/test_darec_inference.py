"""DARec inference through the catalog cache and streamed users: same scores as re-encoding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from darec.errors import CheckpointError
from darec.models.darec import DARec
from darec.models.darec.catalog import CatalogKV
from tests.test_darec import HISTORY, NUM_ITEMS, make, perturb

ATOL = 2e-5


def reference_users(model: DARec, history: torch.Tensor) -> torch.Tensor:
    """User vectors the uncached way: the batch's items encoded afresh (the training path)."""
    history = history[:, -model.cfg.max_seq_len :]
    cf = model._cf_states(history)
    seq, _ = model.sequence_states(history, torch.unique(history), cf)
    return model._user_vectors(seq, cf)[:, -1]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"cki_user": "token"},
        {"inject_at": "input"},
        {"adapters": "none,serial:4"},  # entry at layer 1: layer 0 is not cached
        {"cki": False},
    ],
    ids=["add", "token", "input", "top-layer", "no-cki"],
)
def test_cached_users_equal_uncached(options: dict[str, object]) -> None:
    model = make(**options)
    perturb(model)
    with torch.no_grad():
        catalog = model.catalog()
        assert catalog.has_kv and catalog.first_layer == model.enter
        assert catalog.keys is not None and catalog.keys.shape[:2] == (
            len(model.llm.layers) - model.enter,
            NUM_ITEMS + 1,
        )
        cached = model.encode_users(HISTORY)
        assert torch.allclose(cached, reference_users(model, HISTORY), atol=ATOL)


def test_catalog_is_rebuilt_after_a_parameter_changes() -> None:
    model = make()
    perturb(model)
    with torch.no_grad():
        first = model.catalog()
        assert model.catalog() is first  # nothing changed: reused
        perturb(model, seed=2)
        second = model.catalog()
    assert second is not first
    assert not torch.allclose(first.vectors, second.vectors)
    assert torch.allclose(model.encode_users(HISTORY), reference_users(model, HISTORY), atol=ATOL)


def test_cache_budget_keeps_only_vectors_and_scores_stay_equal() -> None:
    model = make(catalog_cache_mb=0)
    perturb(model)
    with torch.no_grad():
        assert not model.catalog().has_kv
        assert torch.allclose(
            model.encode_users(HISTORY), reference_users(model, HISTORY), atol=ATOL
        )


def test_saved_catalog_round_trip(tmp_path: Path) -> None:
    model = make()
    perturb(model)
    with torch.no_grad():
        path = tmp_path / "catalog.safetensors"
        model.catalog().save(path, "weights-1")
        expected = model.encode_users(HISTORY)
        other = make()  # same weights, no catalog built yet
        other.load_state_dict(model.state_dict())
        other.attach_catalog(CatalogKV.load(path, "weights-1"))
        assert other._catalog is not None
        loaded = other._catalog[1]
        assert torch.equal(other.encode_users(HISTORY), expected)
        assert other._catalog[1] is loaded  # used as is, not recomputed
    with pytest.raises(CheckpointError, match="other weights"):
        CatalogKV.load(path, "weights-2")


@pytest.mark.parametrize("cki_user", ["add", "token"])
def test_streaming_equals_full_recompute(cki_user: str) -> None:
    model = make(cki_user=cki_user)
    perturb(model)
    items = [4, 5, 9, 2, 9, 12, 1, 7]  # longer than max_seq_len (6): the window slides
    with torch.no_grad():
        state = model.stream_start(torch.tensor(items[:2]))
        for t in range(2, len(items)):
            state = model.stream_step(state, items[t])
            full = reference_users(model, torch.tensor([items[: t + 1]]))[0]
            assert torch.allclose(state.user, full, atol=ATOL), t
            assert state.history.shape[1] == min(t + 1, model.cfg.max_seq_len)


def test_stream_state_can_branch() -> None:
    """A step returns a new state: the earlier one still continues correctly."""
    model = make()
    perturb(model)
    with torch.no_grad():
        start = model.stream_start(torch.tensor([3, 8]))
        a = model.stream_step(start, 1)
        b = model.stream_step(start, 6)
        assert torch.allclose(
            a.user, reference_users(model, torch.tensor([[3, 8, 1]]))[0], atol=ATOL
        )
        assert torch.allclose(
            b.user, reference_users(model, torch.tensor([[3, 8, 6]]))[0], atol=ATOL
        )
        # both branches go on: neither overwrote the keys/values the other reads
        a2, b2 = model.stream_step(a, 5), model.stream_step(b, 2)
        for state, history in ((a2, [3, 8, 1, 5]), (b2, [3, 8, 6, 2])):
            expected = reference_users(model, torch.tensor([history]))[0]
            assert torch.allclose(state.user, expected, atol=ATOL)


def test_compiled_layers_give_the_same_loss_and_gradients() -> None:
    """darec.compile wraps the trained layers in torch.compile (the 'eager' backend here: the
    same graph capture as inductor, without a C++ build in a fast test)."""
    from tests.test_darec import batch

    plain, compiled = make(), make(compile="eager")
    perturb(plain)
    perturb(compiled)
    assert all(layer._compiled_call_impl is not None for layer in compiled.llm.layers)
    plain.train()
    compiled.train()
    a, b = plain.loss(batch()), compiled.loss(batch())
    assert torch.allclose(a, b, atol=ATOL)
    a.backward()
    b.backward()
    for (name, p), q in zip(plain.named_parameters(), compiled.parameters(), strict=True):
        if p.grad is not None:
            assert q.grad is not None and torch.allclose(p.grad, q.grad, atol=1e-4), name
