"""`Recommender.recommend` end to end on the real graph, index and vLLM server."""

from __future__ import annotations

import pytest

from rag_rec.data import Dataset
from rag_rec.models import Recommendations
from rag_rec.recommender import Recommender
from rag_rec.settings import Settings


@pytest.fixture(scope="module")
def recommender(settings: Settings, artifacts, llm) -> Recommender:
    rec = Recommender(settings)
    yield rec
    rec.close()


def _assert_valid(result: Recommendations, k: int, seen: set[str]) -> None:
    Recommendations.model_validate(result.model_dump())
    ids = [r.item.id for r in result.items]
    assert len(ids) == len(set(ids)) == k
    assert not seen & set(ids)
    assert [r.rank for r in result.items] == list(range(1, k + 1))
    scores = [r.score for r in result.items]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.llm
def test_known_user_gets_explained_unseen_candidates(recommender: Recommender,
                                                     dataset: Dataset) -> None:
    result = recommender.recommend("42", k=5)
    seen = set(dataset.interactions[dataset.interactions.user_id == "42"].item_id)
    _assert_valid(result, 5, seen)
    assert not result.cold_start and not result.degraded, result.flags
    for r in result.items:
        assert r.explanation is not None and r.sources
        assert {f.id for f in r.facts} == set(r.explanation.fact_ids)
    retrieval = recommender.retriever.for_user("42")
    assert {r.item.id for r in result.items} <= {c.item.id for c in retrieval.candidates}


@pytest.mark.llm
def test_unknown_and_new_users_take_the_cold_path(recommender: Recommender) -> None:
    unknown = recommender.recommend("no-such-user", k=3, explain=False)
    _assert_valid(unknown, 3, set())
    assert unknown.cold_start and "unknown_user" in unknown.flags
    new = recommender.recommend_new_user(["89", "183"], "dark science fiction", k=4)
    _assert_valid(new, 4, {"89", "183"})
    assert new.cold_start and all(r.explanation for r in new.items)


def test_k_is_validated(recommender: Recommender) -> None:
    for bad in (0, -1, 101, 10**9):
        with pytest.raises(ValueError, match="k must be an integer between 1 and 100"):
            recommender.recommend("42", k=bad)


def test_llm_down_degrades_with_flags(settings: Settings, artifacts) -> None:
    down = settings.model_copy(deep=True)
    down.llm.url = "http://127.0.0.1:9/v1"
    rec = Recommender(down)
    try:
        result = rec.recommend("42", k=3)
    finally:
        rec.close()
    assert result.degraded and len(result.items) == 3
    assert any(f.startswith("llm_score_unavailable") for f in result.flags)
    assert all(r.explanation.source == "template" for r in result.items)


@pytest.mark.llm
def test_slow_llm_stages_fall_back_within_their_budget(settings: Settings, artifacts,
                                                       llm) -> None:
    hurried = settings.model_copy(deep=True)
    hurried.llm.stage_budget_s = 0.05
    rec = Recommender(hurried)
    try:
        result = rec.recommend("42", k=3)
    finally:
        rec.close()
    assert result.degraded and len(result.items) == 3
    assert "explanations_timed_out" in result.flags
    assert any(f.startswith("llm_score_unavailable") for f in result.flags)
    assert all(r.explanation.source == "template" for r in result.items)
