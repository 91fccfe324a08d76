"""`Recommender`: the one place that knows the order of the online stages.

    history (one Neo4j query) or cold-start input (liked items, free text + LLM profile)
      -> rank: sources (in memory) -> union + features -> scorer -> calibrated p_next
         [+ optional long-tail boost]                                 (`rank`, in memory)
      -> llm score: label log-probs over the top candidates (vLLM)    [degradable; only
         when `llm.fusion_weight` > 0: added to the log-odds with that weight]
      -> top-k -> facts for the top-k (one Neo4j query)
      -> explain: structured output citing fact ids (vLLM)            [degradable]
      -> Recommendations

A `Recommender` is composed from its parts (the build's artifacts, the fitted ranker,
the P(like) head, a graph and an LLM), so tests and adapters can hand it fakes of the graph
and the LLM; `Recommender.from_settings()` opens the real ones.

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
from rag_rec.embed import TextCache, make_text_encoder
from rag_rec.errors import (
    GraphMismatch,
    IngestIncomplete,
    LLMUnavailable,
    UnknownItem,
    UnknownUser,
)
from rag_rec.graph import GraphClient
from rag_rec.llm import LLMBackend, make_backend
from rag_rec.models import (
    MAX_K,
    ColdStartProfile,
    Health,
    HistoryEntry,
    Item,
    ItemDetail,
    ItemFact,
    Recommendation,
    RecommendRequest,
    Fact,
    Recommendations,
    User,
)
from rag_rec.explain import explain_many
from rag_rec.rerank import cold_start_profile, score_candidates
from rag_rec.retrieve import Retriever
from rag_rec.scorer import sigmoid
from rag_rec.settings import Settings, get_settings
from rag_rec.sources import Query


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


class Recommender:
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
             k: int | None = None, exclude: Sequence[set[str]] | None = None) -> list[Ranked]:
        """Retrieve, featurise and score: each query's top `k` candidates (all of them
        when None), never an item of its history or `exclude`. In memory, batched."""
        with _torch_threads(1 if len(queries) == 1 else None):
            return self._rank(queries, user_ids, k, exclude)

    def _rank(self, queries, user_ids, k, exclude) -> list[Ranked]:
        boost = self.settings.retrieval.tail_boost
        enjoy = self.settings.like.rank_weight
        out = []
        for q, user_id, r in zip(queries, user_ids,
                                 self.retriever.retrieve(queries, exclude)):
            logits = self.scorer.logits(q.history, user_id, r)
            scores = logits + boost * np.array([self.retriever.is_tail(i) for i in r.items])
            if not q.history:
                # The scorer never learns from an empty history: keep the union's order
                # (text and KG matches for a taste profile; popularity for nobody).
                scores = -np.arange(len(r.items), dtype=np.float64)
                r.flags.append("union_order")
            if enjoy > 0:  # "films you will enjoy, not just watch"
                scores = scores + enjoy * np.log(np.clip(
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
        # Two round trips at once: the history is dropped if the graph fails its check.
        _, history = await asyncio.gather(asyncio.to_thread(self.check_graph),
                                          asyncio.to_thread(self._history, user_id))
        timings = {"history": _ms(start)}
        t0 = time.perf_counter()
        ranked = self.rank([Query(history)], [user_id], k=self._pool(k))[0]
        timings["rank"] = _ms(t0)
        if not history:
            ranked.flags.insert(0, "unknown_user")
        ds = self.artifacts.ds
        user = ds.user(user_id) if user_id in ds.users.index else User(id=user_id)
        return await self._finish(user, history, ranked, k, explain, start, timings)

    async def arecommend_new_user(self, liked_item_ids: Sequence[str] = (),
                                  text: str | None = None, k: int = 10,
                                  explain: bool = True) -> Recommendations:
        _check_k(k)
        start = time.perf_counter()
        await asyncio.to_thread(self.check_graph)
        liked = [i for i in dict.fromkeys(liked_item_ids) if i in self.artifacts.items]
        profile = None
        flags = []
        if text:
            profile = await cold_start_profile(self.llm, self.settings.llm, text,
                                               self.artifacts.ds.genres)
            if profile.degraded:
                flags.append("profile_without_llm")
        query = Query([(i, 5.0) for i in liked],
                      text=await asyncio.to_thread(self._text_vector, text) if text else None,
                      entities=tuple(self.profile_entities(profile)) if profile else ())
        timings = {"profile": _ms(start)}
        t0 = time.perf_counter()
        ranked = self.rank([query], [None], k=self._pool(k))[0]
        timings["rank"] = _ms(t0)
        ranked.cold_start = True
        if not liked:
            flags.append("text_only" if text else "empty_history")
        ranked.flags = flags + ranked.flags
        return await self._finish(User(id="new"), query.history, ranked, k, explain, start,
                                  timings)

    def _pool(self, k: int) -> int:
        """Candidates kept past `rank`: the LLM score, when on, may reorder its top."""
        return max(k, self.settings.llm.rerank_top) if self.settings.llm.fusion_weight > 0 else k

    async def _finish(self, user: User, history: list[tuple[str, float]], ranked: Ranked,
                      k: int, explain: bool, start: float,
                      timings: dict[str, float]) -> Recommendations:
        flags = list(ranked.flags)
        degraded = False
        items = self.artifacts.items
        scores = dict(zip(ranked.items, ranked.scores.tolist()))
        logits = dict(zip(ranked.items, ranked.logits.tolist()))
        weight = self.settings.llm.fusion_weight
        llm_scores: dict[str, float] = {}
        history_items = [(items[i], rating) for i, rating in history if i in items]
        if self.llm is not None and weight > 0 and len(ranked.items) > 1:
            t0 = time.perf_counter()
            result = await score_candidates(self.llm, self.settings.llm, user, history_items,
                                            [items[i] for i in ranked.items])
            timings["llm_score"] = _ms(t0)
            if result.degraded:
                degraded = True
                flags.append(f"llm_score_unavailable: {result.error}")
            llm_scores = result.scores
            for i in ranked.items:
                scores[i] += weight * llm_scores.get(i, 0.0)
        elif self.llm is None and explain:
            degraded = True
            flags.append(f"llm_unavailable: {self.llm_error}")
        chosen = sorted(ranked.items, key=lambda i: -scores[i])[:k]
        proposed = dict(zip(ranked.items, ranked.proposed_by))
        facts: dict = {i: [] for i in chosen}
        explanations = [None] * len(chosen)
        if explain:
            t0 = time.perf_counter()
            facts = await asyncio.to_thread(self.graph.candidate_facts, chosen, dict(history))
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
        known = user.id if user.id in self.artifacts.ds.users.index else None
        p_like = self.like.predict(history, known, chosen) if chosen else []
        out = []
        for rank, (item_id, ex, pl) in enumerate(zip(chosen, explanations, p_like), start=1):
            cited = [f for f in facts[item_id] if ex and f.id in ex.fact_ids]
            out.append(Recommendation(
                item=items[item_id], rank=rank, score=scores[item_id],
                p_next=float(sigmoid(logits[item_id] + weight * llm_scores.get(item_id, 0.0))),
                p_like=float(pl), llm_score=llm_scores.get(item_id), explanation=ex, facts=cited,
                sources=proposed[item_id]))
        timings["total"] = _ms(start)
        return Recommendations(user_id=None if user.id == "new" else user.id, items=out,
                               cold_start=ranked.cold_start, degraded=degraded, flags=flags,
                               timings_ms={n: round(v, 1) for n, v in timings.items()})

    # -- cold start and new items

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

    def profile_entities(self, profile: ColdStartProfile) -> list[str]:
        """Entity ids for a text profile: its genres, and people matched by exact name."""
        ents = self.artifacts.ds.entities
        by_name = {n.lower(): e for e, n in zip(ents.index, ents["name"])}
        ids = [f"genre:{g}" for g in profile.genres if f"genre:{g}" in ents.index]
        ids += [by_name[p.lower()] for p in profile.people if p.lower() in by_name]
        return list(dict.fromkeys(ids))

    def add_item(self, item: Item, links: Sequence[tuple[str, str]]) -> None:
        """Make a new item recommendable at once: a graph node with its links (facts), an
        index vector from its text and a KG vector from the items sharing its entities
        (the content sources find it; the interaction-trained ones cannot score it until
        the next build)."""
        from rag_rec.embed import fuse, item_text, new_item_kg_vector

        a = self.artifacts
        if item.id in a.items:
            raise ValueError(f"item {item.id!r} already exists")
        known = [(rel, e) for rel, e in links if e in a.ds.entities.index]
        self.graph.add_item(item, known)
        names = [a.ds.entities.loc[e, "name"] for _, e in known]
        text_vec = self._text_vector(item_text(item, names))
        kg_vec = new_item_kg_vector(a.kg, a.ds.triples, [e for _, e in known],
                                    self.settings.retrieval.max_entity_degree)
        a.index.add([item.id], fuse(text_vec, kg_vec)[None, :])
        a.items[item.id] = item
        a.popularity[item.id] = 0
        a.text[item.id] = text_vec
        for source in self.sources.values():
            source.add_item(item.id, [e for _, e in known])
        self.retriever.refresh_tail()

    # -- lookups

    def history(self, user_id: str, limit: int = 1000) -> list[HistoryEntry]:
        """A user's ratings, newest first. `UnknownUser` if the graph has none."""
        self.check_graph()
        rows = self.graph.user_history(user_id, limit=limit)
        if not rows:
            raise UnknownUser(f"unknown user id {user_id!r}")
        return [HistoryEntry(item=self.artifacts.items[r["item_id"]], rating=r["rating"],
                             timestamp=r["timestamp"]) for r in rows
                if r["item_id"] in self.artifacts.items]

    def item_detail(self, item_id: str) -> ItemDetail:
        """An item with its KG facts. `UnknownItem` if the catalogue lacks it."""
        self.check_graph()
        rows = self.graph.item_facts(item_id)
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


def _check_k(k: int) -> None:
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
