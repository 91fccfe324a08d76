"""The offline evaluation's metrics on a case worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from rag_rec.metrics import rank_positions, ranking_metrics, recall_at


def test_metrics_match_a_hand_computed_ranking() -> None:
    scores = np.array([[5.0, 4, 3, 2, 1, 0]])
    seen = np.array([[True, False, False, False, False, False]])
    test = np.array([[False, False, True, False, True, False]])
    tail = np.array([False, False, False, True, True, True])
    m = ranking_metrics(scores, seen, test, tail)
    # Unseen order: items 1, 2*, 3, 4*, 5 (test items starred) -> positions 1 and 3.
    dcg = 1 / np.log2(3) + 1 / np.log2(5)
    assert m["ndcg@10"] == pytest.approx(dcg / (1 + 1 / np.log2(3)))
    assert m["recall@10"] == 1.0 and m["hr@10"] == 1.0
    assert m["mrr"] == pytest.approx(0.5)
    assert m["auc"] == pytest.approx(1 - (1 + 2) / (2 * 3))  # 3 of 6 pairs misordered
    assert m["coverage@10"] == pytest.approx(5 / 6)
    assert m["tail_share@10"] == pytest.approx(3 / 5)
    # The recall ceiling at a budget: one test item in the top 2, both in the top 4.
    assert [recall_at(scores, seen, test, k) for k in (1, 2, 4)] == [0.0, 0.5, 1.0]


def test_seen_items_are_never_ranked_and_perfect_scores_score_one() -> None:
    rng = np.random.default_rng(0)
    test = rng.random((20, 50)) < 0.1
    test[:, 0] = True
    seen = (rng.random((20, 50)) < 0.2) & ~test
    pos = rank_positions(rng.random((20, 50)), seen)
    assert (pos[seen] == -1).all()
    for row, s in zip(pos, seen):
        assert sorted(row[~s]) == list(range((~s).sum()))
    # A seen item with the top score must not push the test items down.
    perfect = test.astype(float) + 10 * seen
    m = ranking_metrics(perfect, seen, test, np.zeros(50, dtype=bool))
    assert m["auc"] == pytest.approx(1.0) and m["mrr"] == 1.0
    assert m["ndcg@20"] == pytest.approx(1.0)
