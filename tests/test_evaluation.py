import math

import numpy as np
import pytest
import torch

from darec.config import EvalConfig, ModelConfig
from darec.data.split import EvalSet
from darec.evaluation.evaluator import evaluate
from darec.evaluation.metrics import metrics_from_ranks
from darec.models.base import SequentialRecommender
from darec.serving.recommend import top_k


class TableScorer(SequentialRecommender):
    """Scores come from a fixed (num_items + 1,) table, the same for every user."""

    def __init__(self, table: list[float]) -> None:
        super().__init__(ModelConfig(), len(table) - 1)
        self.table = torch.tensor(table, dtype=torch.float32)

    def encode_users(self, history):
        return torch.zeros(history.shape[0], 1)

    def score_items(self, state, items):
        return self.table[items].expand(state.shape[0], -1)


def _evalset(histories, targets):
    return EvalSet(
        users=np.arange(1, len(targets) + 1),
        histories=[np.asarray(h, dtype=np.int64) for h in histories],
        targets=np.asarray(targets, dtype=np.int64),
    )


def test_metrics_hand_computed():
    m = metrics_from_ranks(np.array([1, 2, 11]), (1, 10))
    assert m["HR@1"] == pytest.approx(1 / 3)
    assert m["HR@10"] == pytest.approx(2 / 3)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert m["MRR@10"] == pytest.approx(1.5 / 3)
    assert m["NDCG@1"] == pytest.approx(1 / 3)


def test_rank_hand_computed_with_history_exclusion():
    # items 1..5 scored 5,4,3,2,1; target 3 has two better items (1 and 2)
    model = TableScorer([100.0, 5, 4, 3, 2, 1])  # the padding item scores highest: never counts
    data = _evalset([[4], [1], [1, 2, 3]], [3, 3, 3])
    res = evaluate(model, data, EvalConfig(ks=(1, 2, 3)), max_seq_len=4)
    # user 1: items 1,2 above -> rank 3; user 2: item 1 excluded -> rank 2;
    # user 3: target 3 is in the history but is never excluded itself -> rank 1
    assert res.ranks.tolist() == [3, 2, 1]
    off = evaluate(model, data, EvalConfig(ks=(1,), exclude_history=False), max_seq_len=4)
    assert off.ranks.tolist() == [3, 3, 3] and off.exclude_history is False


def test_constant_scorer_gets_random_guess_rank():
    n = 50
    model = TableScorer([0.0] * (n + 1))
    users = 4000
    data = _evalset([[1]] * users, [7] * users)
    res = evaluate(model, data, EvalConfig(ks=(10,)), max_seq_len=2)
    # 49 allowed candidates (item 1 is excluded): ranks uniform on 1..49
    assert res.ranks.min() >= 1 and res.ranks.max() <= n - 1
    assert res.metrics["HR@10"] == pytest.approx(10 / (n - 1), abs=0.02)
    assert res.ranks.mean() == pytest.approx(n / 2, abs=1.0)
    again = evaluate(model, data, EvalConfig(ks=(10,)), max_seq_len=2)
    assert np.array_equal(res.ranks, again.ranks)  # seeded tie-breaking


def test_ties_place_target_inside_its_group():
    model = TableScorer([0.0, 9, 9, 5, 5, 5, 5, 1])  # target 3 ties with 4, 5, 6
    data = _evalset([[7]] * 2000, [3] * 2000)
    res = evaluate(model, data, EvalConfig(ks=(10,)), max_seq_len=2)
    assert set(res.ranks.tolist()) == {3, 4, 5, 6}


def test_nan_scores_never_win():
    model = TableScorer([0.0, float("nan"), 1.0, 2.0])
    res = evaluate(model, _evalset([[3]], [1]), EvalConfig(ks=(1,)), max_seq_len=2)
    assert res.ranks.tolist() == [2]


def test_chunked_catalog_equals_single_pass():
    rng = np.random.default_rng(0)
    table = [0.0] + rng.normal(size=300).round(1).tolist()  # rounding creates ties
    model = TableScorer(table)
    hist = [rng.integers(1, 301, size=rng.integers(1, 20)).tolist() for _ in range(64)]
    targets = rng.integers(1, 301, size=64).tolist()
    data = _evalset(hist, targets)
    whole = evaluate(model, data, EvalConfig(batch_size=16), max_seq_len=8)
    chunked = evaluate(model, data, EvalConfig(batch_size=16, max_scores=16 * 37), max_seq_len=8)
    assert np.array_equal(whole.ranks, chunked.ranks)


def test_exclusion_uses_whole_history_not_only_model_window():
    model = TableScorer([0.0, 9, 8, 7, 6, 5])
    # the model reads 2 items, but items 1 and 2 (earlier in the history) are still excluded
    res = evaluate(model, _evalset([[1, 2, 4, 5]], [3]), EvalConfig(ks=(1,)), max_seq_len=2)
    assert res.ranks.tolist() == [1]


def test_top_k_chunked_and_excluding():
    model = TableScorer([0.0, 1, 7, 3, 9, 5, 8])
    items, scores = top_k(model, [np.array([1])], [np.array([4])], k=3, max_seq_len=2, max_scores=2)
    assert items[0].tolist() == [6, 2, 5] and scores[0].tolist() == [8, 7, 5]
    items, _ = top_k(model, [np.array([1])], [np.array([1, 2, 3, 4, 5])], k=3, max_seq_len=2)
    assert items[0].tolist() == [6, 0, 0]  # only one allowed item left


def test_popularity_groups_cut_items_into_thirds_by_training_count():
    from darec.evaluation.popularity import item_counts, popularity_groups

    # counts: item 1 x5, item 2 x3, item 3 x2, items 4..6 x1, item 7 never trained on
    train = [np.array([], dtype=np.int64), np.array([1, 1, 2, 3, 4]), np.array([1, 2, 5, 6])]
    train.append(np.array([1, 1, 2, 3]))
    counts = item_counts(train, num_items=7)
    assert counts.tolist() == [0, 5, 3, 2, 1, 1, 1, 0]
    groups = popularity_groups(counts)
    assert groups[0] == -1
    assert groups[1:].tolist() == [0, 0, 0, 1, 1, 2, 2]  # ties (4, 5, 6) split by item id
    assert np.bincount(groups[1:]).tolist() == [3, 2, 2]


def test_metrics_by_group_average_each_groups_users_only():
    from darec.evaluation.popularity import metrics_by_group

    groups = np.array([-1, 0, 1, 2])
    ranks = np.array([1, 1, 3, 20])
    targets = np.array([1, 1, 2, 3])
    out = metrics_by_group(ranks, targets, groups, (10,))
    assert out["head"]["users"] == 2 and out["head"]["HR@10"] == 1.0
    assert out["torso"]["NDCG@10"] == pytest.approx(1 / math.log2(4))
    assert out["tail"]["HR@10"] == 0.0
    assert "users" in out["tail"] and set(out) == {"head", "torso", "tail"}


def test_list_metrics_coverage_and_average_popularity():
    """A scorer that always ranks items 1..k first recommends k items to everyone."""

    class Fixed(SequentialRecommender):
        def encode_users(self, history):
            return torch.zeros(history.shape[0], 1)

        def score_items(self, state, items):
            return -items.float().expand(state.shape[0], -1).clone()

    model = Fixed(ModelConfig(), num_items=50)
    data = EvalSet(
        np.array([1, 2, 3]), [np.array([40]), np.array([41]), np.array([42])], np.array([5, 6, 7])
    )
    counts = np.arange(51)  # item i was trained on i times
    result = evaluate(model, data, EvalConfig(), 10, item_counts=counts, list_k=4)
    assert result.lists["Coverage@4"] == 4 / 50
    assert result.lists["AvgPop@4"] == np.mean([1, 2, 3, 4])
    assert evaluate(model, data, EvalConfig(), 10).lists == {}


@pytest.mark.parametrize("exclude", [True, False])
def test_other_protocol_from_the_same_pass_equals_its_own_evaluation(exclude):
    model = TableScorer([0.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    data = _evalset([[1, 2], [3], [1, 4, 5]], [6, 7, 2])
    cfg = EvalConfig(exclude_history=exclude, max_scores=4)  # chunked catalog too
    both = evaluate(model, data, cfg, 10, other_protocol=True)
    assert both.metrics == evaluate(model, data, cfg, 10).metrics
    flipped = EvalConfig(exclude_history=not exclude, max_scores=4)
    assert both.other_protocol == evaluate(model, data, flipped, 10).metrics
    assert both.other_protocol != both.metrics
