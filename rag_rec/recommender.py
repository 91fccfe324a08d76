"""`Recommender`: the one place that knows the order of the online stages.

    request: who (user id -> history, one Neo4j query; liked items) and what now (text,
      filters, preferences, goal, session)                          (rag_rec/chat/)
      -> the plan: text parsed, names resolved, constraints in graph ids, the session's
         shown items and feedback; LLM proposals for leftover words, checked
      -> rank: sources (in memory) -> union + features -> scorer -> calibrated p_next,
         never an excluded item or one a hard constraint rules out   (`rank`, in memory)
         [+ long-tail boost] [+ w log P(like) for goal "enjoy"] [+ soft preferences]
      -> llm score: label log-probs over the top candidates (vLLM)    [degradable; only
         when `llm.fusion_weight` > 0: added to the log-odds with that weight]
      -> top-k -> facts for the top-k (one Neo4j query)
      -> explain: structured output citing fact ids (vLLM)            [degradable]
      -> Recommendations, with the request as understood

A `Recommender` is composed from its parts (the build's artifacts, the fitted ranker,
the P(like) head, a graph and an LLM), so tests and benchmarks can hand it the graph in
memory (rag_rec/memory_graph.py) and no LLM; `Recommender.from_settings()` opens the real
ones.

`rank` is the ranking path that serving and the offline evaluation (eval/offline.py)
both call; the build's calibration runs the same retrieve-and-score code on held-out
lists. A served answer never mixes a graph and artifacts from different builds: the
graph must hold a complete ingest of the same data and split (`GraphMismatch` names the
command that fixes it). A stage that falls back says so in `flags`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from rag_rec import like
from rag_rec.artifacts import Artifacts, load_artifacts
from rag_rec.build import Ranker, load_ranker
from rag_rec.chat import Catalogue, NameIndex, Parser, Plan, RecommendRequest, SessionStore
from rag_rec.chat.constraints import plan_request
from rag_rec.chat.propose import propose
from rag_rec.embed import TextCache, make_text_encoder
from rag_rec.errors import GraphMismatch, IngestIncomplete, LLMUnavailable, UnknownUser
from rag_rec.explain import explain_many
from rag_rec.graph import GraphClient
from rag_rec.llm import LLMBackend, make_backend
from rag_rec.lookups import Lookups
from rag_rec.models import Fact, Health, Item, Recommendation, Recommendations, User
from rag_rec.rerank import score_candidates
from rag_rec.retrieve import Retriever
from rag_rec.scorer import sigmoid
from rag_rec.settings import Settings, get_settings
from rag_rec.sources import Query

LIKED = 5.0
"""The rating a liked item stands in with for the sources (they read likes as positives);
explanations are told the truth: liked, not rated."""


@dataclass
class Ranked:
    """One query's ranking: candidates best first, with their calibrated log-odds."""

    items: list[str]
    logits: np.ndarray
    """Calibrated log-odds that the item is among the user's next interactions."""
    scores: np.ndarray
    """What the order follows: the log-odds plus the tail boost, if on."""
    proposed_by: list[dict[str, float]]
    cold_start: bool = False
    flags: list[str] = field(default_factory=list)


class Graph(Protocol):
    """What the recommender reads from and writes to the graph (`GraphClient`; tests
    pass an in-memory fake)."""

    def meta(self) -> dict[str, Any]: ...

    def ingest_problem(self, meta: dict[str, Any] | None = None) -> str | None: ...

    def holds(self, ds: Any, split_name: str, meta: dict[str, Any] | None = None
              ) -> str | None: ...

    def user_history(self, user_id: str, limit: int = 1000) -> list[dict[str, Any]]: ...

    def candidate_facts(self, item_ids: Sequence[str], history: dict[str, float | None],
                        per_candidate: int = 30) -> dict[str, list[Fact]]: ...

    def item_facts(self, item_id: str) -> list[dict[str, Any]]: ...

    def add_item(self, item: Item, links: Sequence[tuple[str, str]]) -> None: ...

    def close(self) -> None: ...


class Recommender(Lookups):
    def __init__(self, settings: Settings, artifacts: Artifacts, ranker: Ranker,
                 like_model: like.LikeModel, *, connect_graph: Callable[[], Graph],
                 llm: LLMBackend | None, llm_error: str | None = None):
        """Composed from its parts; `from_settings` opens the real ones. The graph is
        connected on first use (`connect_graph`): ranking a given history (the
        evaluation) needs none."""
        self.settings = settings
        self.artifacts = artifacts
        self.sources, self.scorer = ranker.sources, ranker.scorer
        self.unavailable = [f"source_unavailable: {n}" for n in self.scorer.sources
                            if n not in self.sources]
        self.retriever = Retriever(self.artifacts, self.sources, self.scorer.sources,
                                   self.settings.retrieval, self.scorer.union_weights)
        self.like = like_model
        self._connect_graph = connect_graph
        self._graph: Graph | None = None
        self._text_cache: TextCache | None = None
        self.llm = llm
        self.llm_error = llm_error if llm is None else None
        ds = artifacts.ds
        self.names = NameIndex(ds.entities[["name", "kind"]].itertuples(),
                               {i: item.title for i, item in artifacts.items.items()})
        self.parser = Parser(self.names)
        self.catalogue = Catalogue.of(ds.items, ds.triples,
                                      [i for i in artifacts.items if self.retriever.is_tail(i)])
        self.sessions = SessionStore(settings.home / "sessions")

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, split: str | None = None,
                      use_llm: bool = True, autostart: bool = True) -> Recommender:
        """The served build of `split` (None: all data) with the real graph and LLM.
        `autostart=False` connects to a running graph only (a service answers 503 at
        once while Neo4j is down, instead of starting it inside a request)."""
        settings = settings or get_settings()
        artifacts = load_artifacts(settings, split)
        llm, llm_error = None, "disabled"
        if use_llm:
            try:
                llm = make_backend(settings.llm, settings.home)
            except LLMUnavailable as exc:
                llm_error = str(exc)
        return cls(settings, artifacts, load_ranker(settings, artifacts),
                   like.load_built(artifacts),
                   connect_graph=lambda: GraphClient(settings.graph, settings.home,
                                                     autostart=autostart),
                   llm=llm, llm_error=llm_error)

    @property
    def graph(self) -> Graph:
        """Connected on first use."""
        if self._graph is None:
            self._graph = self._connect_graph()
        return self._graph

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()

    def __enter__(self) -> Recommender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ranking

    def rank(self, queries: Sequence[Query], user_ids: Sequence[str | None], *,
             k: int | None = None, exclude: Sequence[set[str]] | None = None,
             enjoy_weight: float = 0.0) -> list[Ranked]:
        """Retrieve, featurise and score: each query's top `k` candidates (all of them
        when None), never an item of its history or `exclude`. `enjoy_weight` w ranks by
        log-odds + w log P(like) ("what you will enjoy", not only watch). In memory,
        batched."""
        with _torch_threads(1 if len(queries) == 1 else None):
            return self._rank(queries, user_ids, k, exclude, enjoy_weight)

    def _rank(self, queries, user_ids, k, exclude, enjoy_weight) -> list[Ranked]:
        boost = self.settings.retrieval.tail_boost
        out = []
        for q, user_id, r in zip(queries, user_ids,
                                 self.retriever.retrieve(queries, exclude)):
            logits = self.scorer.logits(q.history, user_id, r)
            scores = logits + boost * np.array([self.retriever.is_tail(i) for i in r.items])
            if not q.history:
                # The scorer never learns from an empty history: the union's fused score
                # (text and KG matches for the words; popularity for nobody) orders it.
                scores = np.asarray(r.fused, dtype=np.float64)
                r.flags.append("union_order")
            if enjoy_weight > 0:
                scores = scores + enjoy_weight * np.log(np.clip(
                    self.like.predict(q.history, user_id, r.items), 1e-6, 1.0))
            top = np.argsort(-scores, kind="stable")[:k]
            flags = r.flags + self.unavailable + (["short_history"]
                                                  if r.cold_start and q.history else [])
            out.append(Ranked([r.items[t] for t in top], logits[top], scores[top],
                              [r.proposed_by[t] for t in top], cold_start=r.cold_start,
                              flags=flags))
        return out

    def graph_problem(self) -> IngestIncomplete | GraphMismatch | None:
        """What stops the graph from serving this build, from one meta read:
        `IngestIncomplete` while its last ingest is unfinished (answers would be partial),
        `GraphMismatch` unless it holds this build's data and split (an evaluation's
        `graph ingest --split` would otherwise leak rated items into the answers)."""
        meta = self.graph.meta()
        problem = self.graph.ingest_problem(meta)
        if problem is not None:
            return IngestIncomplete(problem)
        why = self.graph.holds(self.artifacts.ds, self.artifacts.split_name, meta)
        if why:
            split = self.artifacts.split_name
            fix = "rag-rec graph ingest" + (f" --split {split}" if split != "full" else "")
            return GraphMismatch(f"the graph does not match the build being served ({why}); "
                                 f"run `{fix}`")
        return None

    def check_graph(self) -> None:
        """Every request that reads the graph passes here first (see `graph_problem`)."""
        problem = self.graph_problem()
        if problem is not None:
            raise problem

    def _history(self, user_id: str) -> list[tuple[str, float]]:
        rows = self.graph.user_history(user_id, limit=100_000)
        return [(r["item_id"], float(r["rating"])) for r in reversed(rows)]

    # -- sync API

    def run(self, request: RecommendRequest) -> Recommendations:
        return asyncio.run(self.arun(request))

    def recommend(self, user_id: str, k: int = 10, explain: bool = True,
                  **request: Any) -> Recommendations:
        """Explained recommendations for a known user; `request` takes any other
        `RecommendRequest` field (text, filters, goal, session_id, ...)."""
        return self.run(RecommendRequest(user_id=user_id, k=k, explain=explain, **request))

    def recommend_new_user(self, liked_item_ids: Sequence[str] = (), text: str | None = None,
                           k: int = 10, explain: bool = True,
                           **request: Any) -> Recommendations:
        return self.run(RecommendRequest(liked_item_ids=list(liked_item_ids), text=text, k=k,
                                         explain=explain, **request))

    def recommend_batch(self, user_ids: Sequence[str], k: int = 10,
                        explain: bool = True) -> list[Recommendations]:
        """Several users at once: their LLM requests overlap, so vLLM batches them."""
        async def run() -> list[Recommendations]:
            return list(await asyncio.gather(*(
                self.arun(RecommendRequest(user_id=u, k=k, explain=explain))
                for u in user_ids)))
        return asyncio.run(run())

    # -- a turn

    async def arun(self, request: RecommendRequest) -> Recommendations:
        """The entry point every adapter shares: one turn of a conversation."""
        start = time.perf_counter()
        timings: dict[str, float] = {}
        flags: list[str] = []
        session = None
        if request.session_id is not None:
            session, note = self.sessions.open(request.session_id)
            flags += [note] if note else []
        history: list[tuple[str, float]] = []
        user = User(id="new")
        if request.user_id is not None:
            _, history = await asyncio.gather(asyncio.to_thread(self.check_graph),
                                              asyncio.to_thread(self._history, request.user_id))
            ds = self.artifacts.ds
            if not history and request.user_id not in ds.users.index:
                raise UnknownUser(f"unknown user id {request.user_id!r}; for someone new, "
                                  "send liked_item_ids and/or text instead")
            user = ds.user(request.user_id) if request.user_id in ds.users.index \
                else User(id=request.user_id)
        else:
            await asyncio.to_thread(self.check_graph)
        timings["history"] = _ms(start)
        plan = await self._plan(request, session, flags)
        timings["plan"] = _ms(start) - timings["history"]
        rated = {i for i, _ in history}
        liked = [i for i in plan.liked if i not in rated]
        query = Query(history + [(i, LIKED) for i in liked],
                      text=await asyncio.to_thread(self._text_vector, plan.taste)
                      if plan.taste else None,
                      entities=tuple(sorted(set().union(*plan.groups) | plan.prefer))
                      if plan.groups or plan.prefer else ())
        exclude = set(plan.excluded)
        allowed = plan.allowed(self.catalogue)
        if allowed is not None:
            exclude |= set(self.artifacts.items) - allowed
            plan.understood.matching_items = len(allowed)
        goal = request.goal or self.settings.like.default_goal
        plan.understood.goal = goal
        t0 = time.perf_counter()
        known = user.id if user.id in self.artifacts.ds.users.index else None
        ranked = self.rank([query], [known], exclude=[exclude],
                           enjoy_weight=self.settings.like.enjoy_weight if goal == "enjoy"
                           else 0.0)[0]
        self._prefer(ranked, plan)
        timings["rank"] = _ms(t0)
        ranked.cold_start = ranked.cold_start or request.user_id is None
        if not query.history:
            flags.append("text_only" if request.text else "no_history")
        ranked.flags = flags + ranked.flags
        notes = self._shortfall(plan, allowed, ranked, request.k)
        answer = await self._finish(user, query.history, ranked, request, start, timings,
                                    plan, liked=set(liked))
        answer.notes += notes
        if session is not None:
            self.sessions.record(session, [r.item.id for r in answer.items],
                                 {f.item_id: f.signal for f in request.feedback})
            answer.session_id = session.id
        return answer

    async def _plan(self, request: RecommendRequest, session, flags: list[str]) -> Plan:
        parsed = self.parser.parse(request.text) if request.text else None
        feedback = dict(session.feedback) if session is not None else {}
        feedback.update({f.item_id: f.signal for f in request.feedback})
        plan = plan_request(request, parsed, self.names, self.catalogue,
                            shown=session.shown if session is not None else (),
                            last=session.last if session is not None else (),
                            feedback=feedback)
        if parsed is not None and parsed.left:
            mentions, ignored, why = await propose(self.llm, self.settings.llm, parsed.left,
                                                   self.names)
            if why and self.llm is not None:
                flags.append(f"text_without_llm: {why}")
            if mentions:
                parsed.mentions += mentions
                plan = plan_request(request, parsed, self.names, self.catalogue,
                                    shown=session.shown if session is not None else (),
                                    last=session.last if session is not None else (),
                                    feedback=feedback)
            plan.understood.ignored = ignored
        plan.taste = parsed.taste_text if parsed is not None else None
        return plan

    def _prefer(self, ranked: Ranked, plan: Plan) -> None:
        """Soft preferences move scores; the order follows."""
        if not (plan.prefer or plan.avoid):
            return
        ranked.scores = ranked.scores + np.array(
            [plan.preference(i, self.catalogue) for i in ranked.items])
        order = np.argsort(-ranked.scores, kind="stable")
        ranked.items = [ranked.items[o] for o in order]
        ranked.logits, ranked.scores = ranked.logits[order], ranked.scores[order]
        ranked.proposed_by = [ranked.proposed_by[o] for o in order]

    def _shortfall(self, plan: Plan, allowed: set[str] | None, ranked: Ranked,
                   k: int) -> list[str]:
        """Said, not padded: fewer than k items satisfy the constraints."""
        if allowed is None or len(ranked.items) >= k:
            return []
        if not ranked.items:
            return ["no item satisfies every constraint" + (
                f" that has not been shown or excluded already ({len(allowed)} match "
                "the filters)" if allowed else "")]
        count = len(ranked.items)
        return [f"only {count} item{'s satisfy' if count > 1 else ' satisfies'} every "
                "constraint"]

    def _pool(self, k: int) -> int:
        """Candidates kept past `rank`: the LLM score, when on, may reorder its top."""
        return max(k, self.settings.llm.rerank_top) if self.settings.llm.fusion_weight > 0 else k

    async def _finish(self, user: User, history: list[tuple[str, float]], ranked: Ranked,
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
        told = [(i, None if i in liked else rating) for i, rating in history]
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
            facts = await asyncio.to_thread(self.graph.candidate_facts, chosen, dict(told))
            timings["facts"] = _ms(t0)
            t0 = time.perf_counter()
            candidates = [items[i] for i in chosen]
            # The history items each candidate's score attended to: the evidence of choice.
            attention = self.scorer.attention(history, chosen)
            try:
                explanations = await asyncio.wait_for(
                    explain_many(self.llm, self.settings.llm, user, history_items, candidates,
                                 facts, attention),
                    timeout=self.settings.llm.stage_budget_s)
            except TimeoutError:
                explanations = await explain_many(None, self.settings.llm, user, history_items,
                                                  candidates, facts, attention)
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
                p_like=float(pl), llm_score=llm_scores.get(item_id), explanation=ex,
                facts=cited if "facts" in include else [],
                sources=proposed[item_id] if "sources" in include else {}))
        timings["total"] = _ms(start)
        return Recommendations(
            user_id=None if user.id == "new" else user.id, items=out,
            cold_start=ranked.cold_start, degraded=degraded, flags=flags,
            understood=plan.understood,
            timings_ms={n: round(v, 1) for n, v in timings.items()})

    def _name_the_match(self, explanation, item_id: str, plan: Plan):
        """The explanation says which of the request's wishes the item meets."""
        met = plan.met(item_id, self.catalogue, self.names)
        if explanation is None or not met:
            return explanation
        return explanation.model_copy(update={
            "text": f"{explanation.text} It is what you asked for: {', '.join(met)}."})

    @staticmethod
    def compact_item(item: Item) -> Item:
        """The item without its abstract: answers stay small unless asked for it."""
        return item.model_copy(update={"abstract": None}) if item.abstract else item

    # -- text

    def _texts(self) -> TextCache:
        # Loaded on first use: most answers encode no text, and a CLI call should not pay it.
        if self._text_cache is None:
            encoder = make_text_encoder(self.settings.embed, self.settings.llm,
                                        self.settings.home)
            self._text_cache = TextCache(encoder, self.settings.home / "embeddings")
        return self._text_cache

    def _text_vector(self, text: str) -> np.ndarray:
        return self._texts().embed([text])[0]

    def warm_up(self) -> None:
        """Load the text encoder now (seconds on CPU) rather than inside the first free-text
        request: the HTTP service calls it when it builds its recommender (on the first
        request of any kind, typically a health probe), outside any request's time limit."""
        self._texts().encoder.encode(["warm up"])

    async def health(self) -> Health:
        """`down` when no full answer is possible: Neo4j unreachable, or its last ingest
        unfinished (recommendations are refused with `IngestIncomplete` then);
        `degraded` when only the LLM is missing."""
        try:
            problem = await asyncio.to_thread(self.graph_problem)
            neo4j = ("ok" if problem is None else
                     f"{'incomplete' if isinstance(problem, IngestIncomplete) else 'mismatch'}: "
                     f"{problem}")
        except Exception as exc:  # noqa: BLE001 - health reports, never raises
            neo4j = f"error: {exc}"
        if self.llm is None:
            llm = f"unavailable: {self.llm_error}"
        else:
            llm = "ok" if await self.llm.health() else "unreachable"
        status = "down" if neo4j != "ok" else ("ok" if llm == "ok" else "degraded")
        return Health(status=status, neo4j=neo4j, llm=llm,
                      build=f"{self.artifacts.split_name}:{self.artifacts.key('scorer')}")


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Torch's intra-op threads for a block (None: leave them). One answer's tensors are
    tiny: on 2 cores a second thread cost more in hand-offs than it saved (rank p95 93 ms
    with two, 15 ms with one); batches keep every thread."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000

