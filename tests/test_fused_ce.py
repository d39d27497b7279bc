"""The chunked cross-entropy equals ``F.cross_entropy`` on full logits: value and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from darec.models import fused_ce
from darec.models.fused_ce import chunk_rows, linear_cross_entropy


def _reference(h, w, y, b):
    logits = h @ w.T
    return F.cross_entropy(logits if b is None else logits + b, y)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_matches_full_logits(monkeypatch: pytest.MonkeyPatch, with_bias: bool, chunk: int) -> None:
    # chunks of 1 row, uneven chunks (3 does not divide 10) and a single chunk
    monkeypatch.setattr(fused_ce, "chunk_rows", lambda num_items, device: chunk)
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(10, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(17, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(17, generator=gen, dtype=torch.float64, requires_grad=True)
    b = b if with_bias else None
    y = torch.randint(0, 17, (10,), generator=gen)
    y[0] = y[1]  # a repeated target
    inputs = [t for t in (h, w, b) if t is not None]
    ours = linear_cross_entropy(h, w, y, b) * 3.0  # a non-unit upstream gradient
    expected = _reference(h, w, y, b) * 3.0
    got = torch.autograd.grad(ours, inputs)
    want = torch.autograd.grad(expected, inputs)
    torch.testing.assert_close(ours.double(), expected, rtol=1e-6, atol=1e-6)
    for g, e in zip(got, want, strict=True):
        assert g.dtype == e.dtype
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-8)


def test_extreme_logits_stay_finite() -> None:
    h = torch.tensor([[100.0, -100.0]], requires_grad=True)
    w = torch.tensor([[50.0, 0.0], [0.0, 50.0], [-50.0, 0.0]], requires_grad=True)
    y = torch.tensor([2])
    loss = linear_cross_entropy(h, w, y)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(10_000.0, rel=1e-4)
    assert h.grad is not None and torch.isfinite(h.grad).all()


def test_without_autograd_is_plain_cross_entropy() -> None:
    h, w, y = torch.randn(4, 3), torch.randn(5, 3), torch.tensor([0, 1, 4, 4])
    with torch.no_grad():
        expected = _reference(h, w, y, None).item()
        assert linear_cross_entropy(h, w, y).item() == pytest.approx(expected)


def test_chunks_fit_the_cache_budget() -> None:
    cpu = torch.device("cpu")
    assert chunk_rows(12_101, cpu) * 12_101 * 4 <= fused_ce.CPU_CHUNK_BYTES
    assert chunk_rows(10**9, cpu) == 8  # never fewer than 8 rows a chunk


def test_under_autocast_it_computes_in_float32() -> None:
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(20, 8, generator=gen, requires_grad=True)
    w = torch.randn(30, 8, generator=gen, requires_grad=True)
    y = torch.randint(0, 30, (20,), generator=gen)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = linear_cross_entropy(h, w, y)
    loss.backward()
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(_reference(h, w, y, None).item(), rel=1e-5)
    assert h.grad is not None and h.grad.dtype == torch.float32
