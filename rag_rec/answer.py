"""The answer to a ranked request: the LLM's rerank score where it is on, the top k, the
graph facts behind each, the explanations, P(like), and the `Recommendations` built from
them, compact unless more is asked for.

`Answering` is mixed into `Recommender` (rag_rec/recommender.py), whose parts it reads:
`settings`, `artifacts`, `graph`, `llm`, `scorer`, `like`, `catalogue`, `names`.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from rag_rec.chat import Plan, RecommendRequest
from rag_rec.explain import explain_many
from rag_rec.explain.phrasing import describe_item
from rag_rec.models import Explanation, Item, Recommendation, Recommendations, User
from rag_rec.rerank import score_candidates
from rag_rec.scorer import sigmoid

if TYPE_CHECKING:
    from rag_rec.recommender import Ranked, Recommender


class Answering:
    def _pool(self: Recommender, k: int) -> int:
        """Candidates kept past `rank`: the LLM score, when on, may reorder its top."""
        return max(k, self.settings.llm.rerank_top) if self.settings.llm.fusion_weight > 0 else k

    async def _finish(self: Recommender, user: User, history: list[tuple[str, float]], ranked: Ranked,
                      request: RecommendRequest, start: float, timings: dict[str, float],
                      plan: Plan, liked: set[str]) -> Recommendations:
        """Top-k, facts, explanations and the answer. `liked`: history items the person
        liked rather than rated: explanations say "you liked" of them, never a rating
        nobody gave."""
        k, explain = request.k, request.explain
        flags = list(ranked.flags)
        degraded = False
        items = self.artifacts.items
        pool = ranked.items[:self._pool(k)]
        scores = dict(zip(ranked.items, ranked.scores.tolist()))
        logits = dict(zip(ranked.items, ranked.logits.tolist()))
        weight = self.settings.llm.fusion_weight
        llm_scores: dict[str, float] = {}
        # Without ratings (implicit feedback) no history item was rated: each was chosen.
        rated = self.artifacts.ds.meta.has_ratings
        told = [(i, None if i in liked or not rated else rating) for i, rating in history]
        history_items = [(items[i], rating) for i, rating in told if i in items]
        if self.llm is not None and weight > 0 and len(pool) > 1:
            t0 = time.perf_counter()
            result = await score_candidates(self.llm, self.settings.llm, user, history_items,
                                            [items[i] for i in pool])
            timings["llm_score"] = _ms(t0)
            if result.degraded:
                degraded = True
                flags.append(f"llm_score_unavailable: {result.error}")
            llm_scores = result.scores
            for i in pool:
                scores[i] += weight * llm_scores.get(i, 0.0)
        elif self.llm is None and explain:
            degraded = True
            flags.append(f"llm_unavailable: {self.llm_error}")
        chosen = sorted(pool, key=lambda i: -scores[i])[:k]
        proposed = dict(zip(ranked.items, ranked.proposed_by))
        facts: dict = {i: [] for i in chosen}
        explanations = [None] * len(chosen)
        if explain and chosen:
            t0 = time.perf_counter()
            facts = await asyncio.to_thread(self.graph.candidate_facts, chosen, dict(told),
                                            scale=self.artifacts.ds.meta.rating_scale)
            timings["facts"] = _ms(t0)
            t0 = time.perf_counter()
            candidates = [items[i] for i in chosen]
            # The history items each candidate's score attended to: the evidence of choice.
            attention = self.scorer.attention(history, chosen)
            about = {item: self._description(item) for item in chosen}
            try:
                explanations = await asyncio.wait_for(
                    explain_many(self.llm, self.settings.llm, user, history_items, candidates,
                                 facts, attention, descriptions=about),
                    timeout=self.settings.llm.stage_budget_s)
            except TimeoutError:
                explanations = await explain_many(None, self.settings.llm, user, history_items,
                                                  candidates, facts, attention,
                                                  descriptions=about)
                degraded = True
                flags.append("explanations_timed_out")
            timings["explain"] = _ms(t0)
            if any(e.note and e.note.startswith("LLM unavailable") for e in explanations):
                degraded = True
                flags.append("explanations_from_templates")
            explanations = [self._name_the_match(ex, item, plan)
                            for ex, item in zip(explanations, chosen)]
        known = user.id if user.id in self.artifacts.ds.users.index else None
        p_like = self.like.predict(history, known, chosen) if chosen else []
        include = set(request.include)
        out = []
        for rank, (item_id, ex, pl) in enumerate(zip(chosen, explanations, p_like), start=1):
            cited = [f for f in facts[item_id] if ex and f.id in ex.fact_ids]
            out.append(Recommendation(
                item=items[item_id] if "abstract" in include
                else self.compact_item(items[item_id]),
                rank=rank, score=scores[item_id],
                p_next=float(sigmoid(logits[item_id] + weight * llm_scores.get(item_id, 0.0)))
                if history else None,
                p_like=None if pl is None else float(pl), llm_score=llm_scores.get(item_id), explanation=ex,
                facts=cited if "facts" in include else [],
                sources=proposed[item_id] if "sources" in include else {}))
        timings["total"] = _ms(start)
        return Recommendations(
            user_id=None if user.id == "new" else user.id, items=out,
            cold_start=ranked.cold_start, degraded=degraded, flags=flags,
            understood=plan.understood,
            timings_ms={n: round(v, 1) for n, v in timings.items()})

    def _name_the_match(self: Recommender, explanation: Explanation | None, item_id: str,
                        plan: Plan) -> Explanation | None:
        """The explanation says which of the request's wishes the item meets."""
        met = plan.met(item_id, self.catalogue, self.names)
        if explanation is None or not met:
            return explanation
        return explanation.model_copy(update={
            "text": f"{explanation.text} It is what you asked for: {', '.join(met)}."})

    def _description(self: Recommender, item_id: str) -> str:
        """The item in the graph's words: its director (or writer) and the first two stars
        the knowledge graph lists (DBpedia's order, not a billing order)."""
        people: dict[str, list[str]] = {}
        for relation, entity in self.catalogue.links.get(item_id, []):
            if relation in ("directed_by", "written_by", "starring"):
                people.setdefault(relation, []).append(self.names.names[entity])
        return describe_item(self.artifacts.items[item_id], people)

    @staticmethod
    def compact_item(item: Item) -> Item:
        """The item without its abstract: answers stay small unless asked for it."""
        return item.model_copy(update={"abstract": None}) if item.abstract else item


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000
