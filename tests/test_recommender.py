"""`Recommender.recommend` end to end on the real graph, sources and vLLM server, and
the one `rank` path it shares with the offline evaluation."""

from __future__ import annotations

import math

import pytest

from rag_rec.data import Dataset
from rag_rec.errors import StaleArtifact, UnknownUser
from rag_rec.models import Recommendations
from rag_rec.recommender import Recommender
from rag_rec.settings import Settings
from rag_rec.sources import Query


@pytest.fixture(scope="module")
def recommender(settings: Settings, artifacts, llm) -> Recommender:
    with Recommender.from_settings(settings) as rec:
        yield rec


def _assert_valid(result: Recommendations, k: int, seen: set[str]) -> None:
    Recommendations.model_validate(result.model_dump())
    ids = [r.item.id for r in result.items]
    assert len(ids) == len(set(ids)) == k
    assert not seen & set(ids)
    assert [r.rank for r in result.items] == list(range(1, k + 1))
    scores = [r.score for r in result.items]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= r.p_next <= 1.0 and math.isfinite(r.score) for r in result.items)


def test_known_users_get_scored_unseen_candidates_only(recommender: Recommender,
                                                       dataset: Dataset) -> None:
    users = ["1", "42", "405", "655", "943"]
    results = recommender.recommend_batch(users, k=10, explain=False, goal="next")
    inter = dataset.interactions
    for user_id, result in zip(users, results):
        _assert_valid(result, 10, set(inter[inter.user_id == user_id].item_id))
        # Serving and the offline evaluation share one ranking path: the same history
        # handed to `rank` gives the same top 10.
        history = [(i.item_id, i.rating) for i in dataset.history(user_id)]
        ranked = recommender.rank([Query(history)], [user_id], k=10)[0]
        assert [r.item.id for r in result.items] == ranked.items
        # Without a tail boost or LLM weight the ranking is the scorer's probability.
        probs = [r.p_next for r in result.items]
        assert probs == sorted(probs, reverse=True)
        assert result.timings_ms["rank"] < 1000


def test_tail_boost_moves_long_tail_items_up(settings: Settings, artifacts) -> None:
    boosted = settings.model_copy(deep=True)
    boosted.retrieval.tail_boost = 5.0
    users = ["42", "100", "200"]
    with Recommender.from_settings(settings, use_llm=False) as plain_rec:
        plain = plain_rec.recommend_batch(users, k=10, explain=False, goal="next")
    with Recommender.from_settings(boosted, use_llm=False) as rec:
        tail = rec.recommend_batch(users, k=10, explain=False, goal="next")
    share = [sum(rec.retriever.is_tail(r.item.id) for r in res.items) for res in (*plain, *tail)]
    assert sum(share[3:]) > sum(share[:3])
    # The boost changes the order, not the probabilities.
    for res in tail:
        for r in res.items:
            assert r.score == pytest.approx(math.log(r.p_next / (1 - r.p_next))
                                            + (5.0 if rec.retriever.is_tail(r.item.id) else 0),
                                            abs=1e-4)


def test_scorer_trained_with_other_settings_is_refused(settings: Settings, artifacts) -> None:
    other = settings.model_copy(deep=True)
    other.scorer = other.scorer.model_copy(update={"epochs": 99})
    with pytest.raises(StaleArtifact, match="rag-rec build"):
        Recommender.from_settings(other, use_llm=False)


@pytest.mark.llm
def test_known_user_gets_explained_unseen_candidates(recommender: Recommender,
                                                     dataset: Dataset) -> None:
    result = recommender.recommend("42", k=5, include=["facts", "sources"])
    seen = set(dataset.interactions[dataset.interactions.user_id == "42"].item_id)
    _assert_valid(result, 5, seen)
    assert not result.cold_start and not result.degraded, result.flags
    for r in result.items:
        assert r.explanation is not None and r.sources
        assert {f.id for f in r.facts} == set(r.explanation.fact_ids)


@pytest.mark.llm
def test_unknown_and_new_users_take_the_cold_path(recommender: Recommender) -> None:
    with pytest.raises(UnknownUser, match="for someone new, send liked_item_ids"):
        recommender.recommend("no-such-user", k=3, explain=False)
    new = recommender.recommend_new_user(["89", "183"], "dark science fiction", k=4)
    _assert_valid(new, 4, {"89", "183"})
    assert new.cold_start and all(r.explanation for r in new.items)


def test_k_is_validated(recommender: Recommender) -> None:
    for bad in (0, -1, 101, 10**9):
        with pytest.raises(ValueError, match="k\n  Input should be (greater|less) than"):
            recommender.recommend("42", k=bad)


def test_llm_down_degrades_with_flags(settings: Settings, artifacts) -> None:
    down = settings.model_copy(deep=True)
    down.llm.url = "http://127.0.0.1:9/v1"
    with Recommender.from_settings(down) as rec:
        result = rec.recommend("42", k=3)
    assert result.degraded and len(result.items) == 3
    assert "explanations_from_templates" in result.flags
    assert all(r.explanation.source == "template" for r in result.items)
    down.llm.fusion_weight = 0.5  # now the rerank score is asked for, and missed
    with Recommender.from_settings(down) as rec:
        result = rec.recommend("42", k=3, explain=False)
    assert result.degraded and any(f.startswith("llm_score_unavailable") for f in result.flags)
    assert all(r.llm_score is None for r in result.items)


@pytest.mark.llm
def test_llm_score_is_fused_with_its_weight(settings: Settings, artifacts, llm) -> None:
    fused = settings.model_copy(deep=True)
    fused.llm.fusion_weight = 1.0
    fused.llm.rerank_top = 10
    with Recommender.from_settings(fused) as rec:
        result = rec.recommend("42", k=5, explain=False, goal="next")
        ranked = rec.rank([Query(rec._history("42"))], ["42"])[0]
        logits = dict(zip(ranked.items, ranked.logits))
    assert not result.degraded, result.flags
    for r in result.items:
        llm = r.llm_score or 0.0
        assert r.score == pytest.approx(logits[r.item.id] + llm, abs=1e-4)
    assert any(r.llm_score is not None for r in result.items)


@pytest.mark.llm
def test_slow_llm_stages_fall_back_within_their_budget(settings: Settings, artifacts,
                                                       llm) -> None:
    hurried = settings.model_copy(deep=True)
    hurried.llm.stage_budget_s = 0.05
    with Recommender.from_settings(hurried) as rec:
        result = rec.recommend("42", k=3)
    assert result.degraded and len(result.items) == 3
    assert "explanations_timed_out" in result.flags
    assert all(r.explanation.source == "template" for r in result.items)


def test_the_evaluation_ranks_without_touching_the_graph(settings: Settings, dataset: Dataset,
                                                         artifacts, graph) -> None:
    """eval/offline.py ranks every test user through `Recommender.rank` with the histories
    it is given: the graph stays closed and holds what it held (its split builds never
    ingest either: `build` ingests only the full data)."""
    from eval.offline import Protocol, _rank_rows
    from rag_rec.data import make_split

    before = (graph.meta(), graph.counts())
    proto = Protocol.of(dataset, make_split(dataset, "loo"), settings.retrieval.head_mass)
    with Recommender.from_settings(settings, use_llm=False) as rec:
        rows, ranked = _rank_rows(rec, proto)
        assert rec._graph is None
    assert len(ranked) == len(proto.users) and rows.shape[0] == len(proto.users)
    assert (graph.meta(), graph.counts()) == before
