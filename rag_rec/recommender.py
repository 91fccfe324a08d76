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
from typing import Any

import numpy as np
import torch

from rag_rec import like
from rag_rec.artifacts import Artifacts, load_artifacts
from rag_rec.build import Ranker, load_ranker
from rag_rec.chat import (
    Catalogue,
    NameIndex,
    ParsedText,
    Parser,
    Plan,
    RecommendRequest,
    Session,
    SessionStore,
)
from rag_rec.chat.constraints import plan_request
from rag_rec.chat.propose import propose
from rag_rec.chat.sessions import carried, standing
from rag_rec.embed import TextCache, make_text_encoder
from rag_rec.errors import LLMUnavailable, UnknownUser
from rag_rec.wording import speaking_of
from rag_rec.graph import Graph, GraphClient
from rag_rec.llm import LLMBackend, make_backend
from rag_rec.answer import Answering
from rag_rec.lookups import Lookups
from rag_rec.models import Recommendations, User
from rag_rec.retrieve import Retriever
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


class Recommender(Lookups, Answering):
    def __init__(self, settings: Settings, artifacts: Artifacts, ranker: Ranker,
                 like_model: like.LikeModel | like.UnavailableLike, *, connect_graph: Callable[[], Graph],
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
        if not like_model.available:  # no ratings: P(like) is null, and the answer says why
            self.unavailable = [*self.unavailable, f"p_like_unavailable: {like_model.reason}"]
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
            if enjoy_weight > 0 and self.like.available:
                scores = scores + enjoy_weight * np.log(np.clip(
                    self.like.predict(q.history, user_id, r.items), 1e-6, 1.0))
            top = np.argsort(-scores, kind="stable")[:k]
            flags = r.flags + self.unavailable + (["short_history"]
                                                  if r.cold_start and q.history else [])
            out.append(Ranked([r.items[t] for t in top], logits[top], scores[top],
                              [r.proposed_by[t] for t in top], cold_start=r.cold_start,
                              flags=flags))
        return out

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

    def recommend_batch(self, user_ids: Sequence[str], k: int = 10, explain: bool = True,
                        **request: Any) -> list[Recommendations]:
        """Several users at once: their LLM requests overlap, so vLLM batches them."""
        async def run() -> list[Recommendations]:
            return list(await asyncio.gather(*(
                self.arun(RecommendRequest(user_id=u, k=k, explain=explain, **request))
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
        unchecked = plan.unchecked(self.catalogue)
        if unchecked:
            notes.append(f"{unchecked} items whose people and categories the knowledge graph "
                         "does not know were left out: they cannot be checked against what "
                         "you excluded")
        meta = self.artifacts.ds.meta
        # A new user's history is what they said they liked: "liked" is true even where
        # the data has no ratings (a known user's history there was only chosen).
        with speaking_of(meta.item_noun, meta.relation_phrases,
                         meta.has_ratings or user.id == "new", meta.rating_scale):
            answer = await self._finish(user, query.history, ranked, request, start, timings,
                                        plan, liked=set(liked))
        answer.notes += notes
        if session is not None:
            self.sessions.record(session, [r.item.id for r in answer.items], plan.feedback,
                                 plan.standing)
            answer.session_id = session.id
        return answer

    async def _plan(self, request: RecommendRequest, session: Session | None,
                    flags: list[str]) -> Plan:
        """The words read (rules, then the LLM for what is left, checked), the session's
        standing wishes carried where this turn says nothing of their kind, and the
        request's filters and feedback: one `Plan`."""
        parsed = self.parser.parse(request.text) if request.text else ParsedText([], None,
                                                                                 None)
        ignored: list[str] = []
        if parsed.left:
            mentions, ignored, why = await propose(self.llm, self.settings.llm, parsed.left,
                                                   self.names)
            if why and self.llm is not None:
                flags.append(f"text_without_llm: {why}")
            parsed.mentions += mentions
        feedback = {}
        if session is not None:
            parsed.mentions = carried(session, parsed.mentions)
            feedback = dict(session.feedback)
        feedback.update({f.item_id: f.signal for f in request.feedback})
        plan = plan_request(request, parsed, self.names, self.catalogue,
                            shown=session.shown if session is not None else (),
                            last=session.last if session is not None else (),
                            feedback=feedback)
        plan.understood.ignored = ignored
        plan.taste = parsed.taste_text
        plan.standing = standing(parsed.mentions)
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

