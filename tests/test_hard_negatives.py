"""Hard negatives: nearest by text, never co-occurring, deterministic, chunk-independent, cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from darec.data.hard_negatives import (
    cached_hard_negatives,
    cooccurrence_block,
    hard_negatives,
    incidence,
)
from darec.errors import ConfigError, DataError

# item 1 and 2 are near-identical texts but share a sequence; 5 has no text
EMBEDDINGS = torch.tensor(
    [
        [0.0, 0.0],  # 0 padding
        [1.0, 0.0],  # 1
        [0.99, 0.1],  # 2 nearest to 1, but co-occurs with it
        [0.9, 0.3],  # 3
        [0.0, 2.0],  # 4 (length does not matter: cosine)
        [0.0, 0.0],  # 5 no text
    ]
)
SEQUENCES = [np.zeros(0, dtype=np.int64), np.array([1, 2, 5]), np.array([3, 4, 3])]


def test_cooccurring_nearest_neighbour_is_skipped() -> None:
    negatives = hard_negatives(EMBEDDINGS, SEQUENCES, k=3)
    assert negatives.dtype == torch.int64
    assert negatives.tolist() == [
        [0, 0, 0],  # padding
        [3, 4, 0],  # 2 co-occurs, 5 has no text: two qualify, padded with 0
        [3, 4, 0],  # 1 co-occurs
        [2, 1, 0],  # cos(3, 2) = 0.976 > cos(3, 1) = 0.949; 4 co-occurs
        [2, 1, 0],  # cos(4, 2) = 0.100 > cos(4, 1) = 0; 3 co-occurs
        [0, 0, 0],  # no text: no hard negatives
    ]
    assert hard_negatives(EMBEDDINGS, SEQUENCES, k=1)[:, 0].tolist() == [0, 3, 3, 2, 2, 0]


def test_without_sequences_plain_nearest_neighbours() -> None:
    negatives = hard_negatives(EMBEDDINGS, [], k=2)
    assert negatives[1].tolist() == [2, 3]
    assert negatives[4].tolist() == [3, 2]


def test_ties_go_to_the_lower_id() -> None:
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0]] + [[0.0, 1.0]] * 5)  # items 2..6 identical
    negatives = hard_negatives(emb, [np.array([1, 3])], k=3)
    assert negatives[1].tolist() == [2, 4, 5]  # all tie at 0; 3 co-occurs
    assert negatives[6].tolist() == [2, 3, 4]  # all tie at 1; itself excluded


def random_problem(num_items: int = 60, dim: int = 8, users: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    emb = torch.from_numpy(rng.normal(size=(num_items + 1, dim)))
    emb[0] = 0
    emb[7] = 0  # an item without text
    emb[12] = emb[11] * 3  # duplicate text: exact tie
    seqs = [rng.integers(1, num_items + 1, size=int(rng.integers(2, 8))) for _ in range(users)]
    return emb, seqs


def brute_force(emb: torch.Tensor, seqs: list[np.ndarray], k: int) -> list[list[int]]:
    n = emb.shape[0] - 1
    together = [set() for _ in range(n + 1)]
    for seq in seqs:
        for i in seq:
            together[int(i)].update(int(j) for j in seq)
    unit = torch.nn.functional.normalize(emb.double(), dim=1)
    has_text = emb.norm(dim=1) > 0
    result = []
    for i in range(n + 1):
        if i == 0 or not has_text[i]:
            result.append([0] * k)
            continue
        sims = (unit @ unit[i]).float().tolist()
        candidates = [j for j in range(1, n + 1) if j != i and has_text[j] and j not in together[i]]
        best = sorted(candidates, key=lambda j: (-sims[j], j))[:k]
        result.append(best + [0] * (k - len(best)))
    return result


def test_matches_brute_force_and_chunk_size_does_not_matter() -> None:
    emb, seqs = random_problem()
    reference = hard_negatives(emb, seqs, k=5)
    assert reference.tolist() == brute_force(emb, seqs, 5)
    for chunk in (1, 7, 61, 4096):
        assert torch.equal(hard_negatives(emb, seqs, k=5, chunk=chunk), reference)
    assert torch.equal(hard_negatives(emb, seqs, k=5), reference)  # deterministic
    # items 11 and 12 have the same text: wherever both are chosen, 11 comes right before 12
    wide = hard_negatives(emb, seqs, k=20, chunk=9).tolist()
    both = [row for row in wide if 11 in row and 12 in row]
    assert len(both) > 5
    assert all(row.index(12) == row.index(11) + 1 for row in both)


def test_item_itself_and_cooccurring_items_never_chosen() -> None:
    emb, seqs = random_problem(seed=3)
    negatives = hard_negatives(emb, seqs, k=10, chunk=16)
    for seq in seqs:
        for i in seq:
            assert not set(negatives[int(i)].tolist()) & (set(seq.tolist()) - {0})
    ids = torch.arange(negatives.shape[0])[:, None]
    assert not (negatives == ids)[1:].any()
    assert not (negatives == 7).any()
    assert negatives[7].tolist() == [0] * 10


def test_k_larger_than_catalog_pads() -> None:
    negatives = hard_negatives(EMBEDDINGS, [], k=8)
    assert negatives.shape == (6, 8)
    assert negatives[1].tolist() == [2, 3, 4, 0, 0, 0, 0, 0]


def test_cooccurrence_block() -> None:
    item_user, user_item = incidence([np.array([1, 2, 2]), np.array([2, 3])], num_items=4)
    block = cooccurrence_block(item_user, user_item, 1, 5)
    assert block.int().tolist() == [
        [0, 1, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0],
    ]


def test_bad_inputs() -> None:
    with pytest.raises(DataError, match=r"training sequence 2 holds item id 6; expected .*1\.\.5"):
        hard_negatives(EMBEDDINGS, [np.array([1]), np.array([2]), np.array([6])], k=2)
    with pytest.raises(ConfigError, match="k = 0"):
        hard_negatives(EMBEDDINGS, [], k=0)
    with pytest.raises(DataError, match="expected \\(N \\+ 1, D\\)"):
        hard_negatives(torch.zeros(5), [], k=1)
    with pytest.raises(DataError, match="NaN"):
        hard_negatives(torch.full((3, 2), float("nan")), [], k=1)


def test_cache_round_trip(tmp_path: Path) -> None:
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return hard_negatives(EMBEDDINGS, SEQUENCES, k=3)

    first = cached_hard_negatives(tmp_path, "abc123", compute)
    path = tmp_path / "hard_negatives" / "abc123.safetensors"
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["abc123.safetensors"]  # no temp left
    second = cached_hard_negatives(tmp_path, "abc123", compute)
    assert len(calls) == 1
    assert torch.equal(first, second) and second.dtype == torch.int64

    path.write_bytes(b"not a safetensors file")  # corrupt entry: recomputed and replaced
    third = cached_hard_negatives(tmp_path, "abc123", compute)
    assert len(calls) == 2 and torch.equal(third, first)
    assert torch.equal(cached_hard_negatives(tmp_path, "abc123", compute), first)
    assert len(calls) == 2

    cached_hard_negatives(None, "abc123", compute)  # no cache: always computed
    assert len(calls) == 3
    with pytest.raises(ConfigError, match="cache key '../x'"):
        cached_hard_negatives(tmp_path, "../x", compute)
