"""`Recommender`: the one place that knows the order of the online stages.

    history (Neo4j) or cold-start input
      -> retrieve: FAISS ∪ KG paths ∪ collaborative ∪ backfill      (retrieve.py)
      -> score: calibrated log-odds per candidate                    (scorer.py)
      -> llm score: label log-probs over the scorer's top candidates (vLLM)  [degradable;
         only when `llm.fusion_weight` > 0: it is added to the log-odds with that weight]
      -> rank (+ optional long-tail boost) -> facts for the top-k (Neo4j)
      -> explain: structured output citing fact ids (vLLM)           [degradable]
      -> Recommendations

The LLM score is late-fused rather than a scorer input: a scorer feature would need an
LLM call for every training sample, while the fused weight is fitted on validation
candidates in the offline evaluation. A stage that falls back says so in `flags` and sets
`degraded`; nothing is silently dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from rag_rec.build import load_artifacts
from rag_rec.errors import LLMUnavailable, UnknownItem, UnknownUser
from rag_rec.graph import GraphClient
from rag_rec.llm import LLMBackend, make_backend
from rag_rec.models import (
    Health,
    HistoryEntry,
    MAX_K,
    Item,
    ItemDetail,
    ItemFact,
    Recommendation,
    RecommendRequest,
    Recommendations,
    User,
)
from rag_rec.rerank import cold_start_profile, explain_many, score_candidates
from rag_rec.retrieve import CandidateGenerator, Retrieval
from rag_rec.scorer import Scorer, scorer_dir, sigmoid
from rag_rec.settings import Settings, get_settings


class Recommender:
    def __init__(self, settings: Settings | None = None, *, split: str | None = None,
                 use_llm: bool = True):
        self.settings = settings or get_settings()
        self.graph = GraphClient(self.settings.graph, self.settings.home)
        self.artifacts = load_artifacts(self.settings, split)
        self.retriever = CandidateGenerator(self.artifacts, self.graph, self.settings)
        self.scorer = Scorer.load(scorer_dir(self.artifacts, self.settings.scorer),
                                  self.artifacts, self.settings.scorer)
        self.llm: LLMBackend | None = None
        self.llm_error: str | None = None
        if use_llm:
            try:
                self.llm = make_backend(self.settings.llm, self.settings.home)
            except LLMUnavailable as exc:
                self.llm_error = str(exc)

    def close(self) -> None:
        self.graph.close()

    def __enter__(self) -> Recommender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sync API

    def recommend(self, user_id: str, k: int = 10, explain: bool = True) -> Recommendations:
        return asyncio.run(self.arecommend(user_id, k, explain))

    def recommend_new_user(self, liked_item_ids: Sequence[str] = (), text: str | None = None,
                           k: int = 10, explain: bool = True) -> Recommendations:
        return asyncio.run(self.arecommend_new_user(liked_item_ids, text, k, explain))

    def recommend_batch(self, user_ids: Sequence[str], k: int = 10,
                        explain: bool = True) -> list[Recommendations]:
        """Several users at once: their LLM requests overlap, so vLLM batches them."""
        async def run() -> list[Recommendations]:
            return list(await asyncio.gather(*(self.arecommend(u, k, explain)
                                               for u in user_ids)))
        return asyncio.run(run())

    # -- async API

    async def arun(self, request: RecommendRequest) -> Recommendations:
        """The entry point the adapters (HTTP, MCP, LlamaIndex) share."""
        if request.user_id is not None:
            return await self.arecommend(request.user_id, request.k, request.explain)
        return await self.arecommend_new_user(request.liked_item_ids, request.text, request.k,
                                              request.explain)

    async def arecommend(self, user_id: str, k: int = 10, explain: bool = True
                         ) -> Recommendations:
        _check_k(k)
        start = time.perf_counter()
        retrieval = await asyncio.to_thread(self.retriever.for_user, user_id)
        return await self._finish(user_id, retrieval, k, explain, start)

    async def arecommend_new_user(self, liked_item_ids: Sequence[str] = (),
                                  text: str | None = None, k: int = 10,
                                  explain: bool = True) -> Recommendations:
        _check_k(k)
        start = time.perf_counter()
        profile = None
        if text:
            profile = await cold_start_profile(self.llm, self.settings.llm, text,
                                               self.artifacts.ds.genres)
        retrieval = await asyncio.to_thread(self.retriever.for_new_user, liked_item_ids, text,
                                            profile=profile)
        if profile is not None and profile.degraded:
            retrieval.flags.append("profile_without_llm")
        return await self._finish(None, retrieval, k, explain, start)

    async def _finish(self, user_id: str | None, retrieval: Retrieval, k: int, explain: bool,
                      start: float) -> Recommendations:
        timings = {"retrieve": (time.perf_counter() - start) * 1000}
        flags = list(retrieval.flags)
        degraded = False
        candidates = retrieval.candidates
        ds = self.artifacts.ds
        known = user_id is not None and user_id in ds.users.index
        user = ds.user(user_id) if known else User(id=user_id or "new")
        history = [(self.artifacts.items[i], rating) for i, rating in retrieval.history
                   if i in self.artifacts.items]
        ids = [c.item.id for c in candidates]
        t0 = time.perf_counter()
        logits = dict(zip(ids, self.scorer.logits(retrieval.history,
                                                  user_id if known else None, ids).tolist()))
        timings["score"] = (time.perf_counter() - t0) * 1000
        weight = self.settings.llm.fusion_weight
        llm_scores: dict[str, float] = {}
        if self.llm is not None and weight > 0 and len(candidates) > 1:
            t0 = time.perf_counter()
            by_logit = sorted(candidates, key=lambda c: -logits[c.item.id])
            top = [c.item for c in by_logit[:self.settings.llm.rerank_top]]
            result = await score_candidates(self.llm, self.settings.llm, user, history, top)
            timings["llm_score"] = (time.perf_counter() - t0) * 1000
            if result.degraded:
                degraded = True
                flags.append(f"llm_score_unavailable: {result.error}")
            llm_scores = result.scores
        elif self.llm is None:
            degraded = True
            flags.append(f"llm_unavailable: {self.llm_error or 'disabled'}")
        fused = {i: logits[i] + weight * llm_scores.get(i, 0.0) for i in ids}
        boost = self.settings.retrieval.tail_boost
        scores = {i: fused[i] + (boost if self.retriever.is_tail(i) else 0.0) for i in ids}
        ranked = sorted(candidates, key=lambda c: -scores[c.item.id])[:k]
        t0 = time.perf_counter()
        ratings = dict(retrieval.history)
        facts = await asyncio.to_thread(self.graph.candidate_facts,
                                        [c.item.id for c in ranked], ratings)
        timings["facts"] = (time.perf_counter() - t0) * 1000
        explanations = [None] * len(ranked)
        if explain:
            t0 = time.perf_counter()
            chosen = [c.item.id for c in ranked]
            try:
                explanations = await asyncio.wait_for(
                    explain_many(self.llm, self.settings.llm, user, history,
                                 [c.item for c in ranked], facts, None),
                    timeout=self.settings.llm.stage_budget_s)
            except TimeoutError:
                explanations = await explain_many(None, self.settings.llm, user, history,
                                                  [c.item for c in ranked], facts, None)
                degraded = True
                flags.append("explanations_timed_out")
            timings["explain"] = (time.perf_counter() - t0) * 1000
            if any(e.note and e.note.startswith("LLM unavailable") for e in explanations):
                degraded = True
                flags.append("explanations_from_templates")
        items = []
        for rank, (cand, ex) in enumerate(zip(ranked, explanations), start=1):
            cited = [f for f in facts[cand.item.id] if ex and f.id in ex.fact_ids]
            i = cand.item.id
            items.append(Recommendation(item=cand.item, rank=rank, score=scores[i],
                                        probability=float(sigmoid(fused[i])),
                                        llm_score=llm_scores.get(i), explanation=ex,
                                        facts=cited, sources=cand.sources))
        timings["total"] = (time.perf_counter() - start) * 1000
        return Recommendations(user_id=user_id, items=items, cold_start=retrieval.cold_start,
                               degraded=degraded, flags=flags,
                               timings_ms={k: round(v, 1) for k, v in timings.items()})


    # -- lookups

    def history(self, user_id: str, limit: int = 1000) -> list[HistoryEntry]:
        """A user's ratings, newest first. `UnknownUser` if the graph has none."""
        rows = self.graph.user_history(user_id, limit=limit)
        if not rows:
            raise UnknownUser(f"unknown user id {user_id!r}")
        return [HistoryEntry(item=self.artifacts.items[r["item_id"]], rating=r["rating"],
                             timestamp=r["timestamp"]) for r in rows
                if r["item_id"] in self.artifacts.items]

    def item_detail(self, item_id: str) -> ItemDetail:
        """An item with its KG facts. `UnknownItem` if the catalogue lacks it."""
        rows = self.graph.query("item_facts", item_id=item_id)
        if not rows or item_id not in self.artifacts.items:
            raise UnknownItem(f"unknown item id {item_id!r}")
        facts = [ItemFact(relation=r["relation"], entity_id=r["entity_id"],
                          entity_name=r["entity_name"], entity_kind=r["entity_kind"])
                 for r in rows if r["entity_id"] is not None]
        return ItemDetail(item=self.artifacts.items[item_id], popularity=rows[0]["popularity"] or 0,
                          facts=facts)

    def similar_items(self, item_id: str, k: int = 10) -> list[tuple[Item, float]]:
        """Nearest items in the fused text+KG space."""
        _check_k(k)
        index = self.artifacts.index
        if item_id not in index:
            raise UnknownItem(f"unknown item id {item_id!r}")
        hits = index.search(index.vector(item_id), k, exclude=[{item_id}])[0]
        return [(self.artifacts.items[i], s) for i, s in hits]

    async def health(self) -> Health:
        try:
            await asyncio.to_thread(self.graph.counts)
            neo4j = "ok"
        except Exception as exc:  # noqa: BLE001 - health reports, never raises
            neo4j = f"error: {exc}"
        if self.llm is None:
            llm = f"unavailable: {self.llm_error or 'disabled'}"
        else:
            llm = "ok" if await self.llm.health() else "unreachable"
        status = "down" if neo4j != "ok" else ("ok" if llm == "ok" else "degraded")
        return Health(status=status, neo4j=neo4j, llm=llm,
                      build=f"{self.artifacts.split_name}:{self.artifacts.folder.name}")


def _check_k(k: int) -> None:
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
