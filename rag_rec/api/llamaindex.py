"""LlamaIndex integration: the recommender as `FunctionTool`s for agents (recommend, search,
similar), and a retriever that returns recommended items (with their cited KG facts) as
nodes."""

from __future__ import annotations

import asyncio

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.tools import FunctionTool

from pydantic import ValidationError

from rag_rec.errors import RagRecError, error_line
from rag_rec.chat import Filters, RecommendRequest
from rag_rec.models import Recommendations
from rag_rec.recommender import Recommender


def _as_text(result: Recommendations) -> str:
    lines = []
    for r in result.items:
        why = r.explanation.text if r.explanation else ""
        lines.append(f"{r.rank}. [{r.item.id}] {r.item.title} ({r.item.year}) - {why}")
    if result.notes:
        lines.append(f"(note: {'; '.join(result.notes)})")
    if result.understood is not None and result.understood.constraints:
        lines.append("(understood: " + "; ".join(
            f"{c.mode} {c.kind} {', '.join(c.entities) or c.asked}"
            for c in result.understood.constraints) + ")")
    if result.session_id:
        lines.append(f"(session: {result.session_id})")
    if result.degraded:
        lines.append(f"(degraded: {', '.join(result.flags)})")
    return "\n".join(lines)


def recommend_tool(recommender: Recommender) -> FunctionTool:
    """A tool an agent calls with the person's words and whatever it knows of them: the
    same request as HTTP and MCP (`RecommendRequest`), flattened to its main fields."""

    async def recommend_movies(text: str | None = None, user_id: str | None = None,
                               liked_item_ids: list[str] | None = None,
                               exclude_item_ids: list[str] | None = None,
                               session_id: str | None = None,
                               goal: str | None = None,
                               k: int = 5) -> str:
        """Recommend movies with explanations grounded in a knowledge graph. `text`: what
        the person asks, in their words (genres, decades, people, titles, negations such
        as "no horror" become constraints); `user_id`: a known user; `liked_item_ids`:
        items they like; `exclude_item_ids`: items never to show; `session_id`: any id,
        to remember what was shown across turns ("not that one" then works); `goal`:
        "next" (what they will watch) or "enjoy" (also what they will like); k: 1-20."""
        try:
            request = RecommendRequest(
                text=text, user_id=user_id, liked_item_ids=liked_item_ids or [],
                filters=Filters(exclude_item_ids=exclude_item_ids or []),
                session_id=session_id, goal=goal, k=min(k, 20))
            return _as_text(await recommender.arun(request))
        except (ValidationError, RagRecError) as exc:
            # An agent recovers from a readable error; an exception would end its turn.
            return f"error: {error_line(exc)}"

    # LlamaIndex derives the argument schema from the signature and runs the coroutine
    # for sync callers itself.
    return FunctionTool.from_defaults(async_fn=recommend_movies, name="recommend_movies",
                                      description=recommend_movies.__doc__)


def search_tool(recommender: Recommender) -> FunctionTool:
    """A tool that turns titles and names into ids."""

    def search_catalogue(query: str, k: int = 5) -> str:
        """Find movies by title and people, genres or categories by name (typos are
        fine); returns ids to use in recommend_movies."""
        try:
            return "\n".join(f"{hit.kind} {hit.id}: {hit.name}"
                             for hit in recommender.search(query, min(k, 20)))
        except RagRecError as exc:
            return f"error: {error_line(exc)}"

    return FunctionTool.from_defaults(fn=search_catalogue, name="search_catalogue",
                                      description=search_catalogue.__doc__)


def similar_tool(recommender: Recommender) -> FunctionTool:
    """A tool that lists the items closest to one."""

    def similar_movies(item_id: str, k: int = 5) -> str:
        """Movies closest to `item_id` in content and knowledge graph."""
        try:
            return "\n".join(f"[{item.id}] {item.title} ({item.year}) {score:.3f}"
                             for item, score in recommender.similar_items(item_id, min(k, 20)))
        except RagRecError as exc:
            return f"error: {error_line(exc)}"

    return FunctionTool.from_defaults(fn=similar_movies, name="similar_movies",
                                      description=similar_movies.__doc__)


class RecommendationRetriever(BaseRetriever):
    """Retrieves recommended items for a query: a user id (`user:42`) or free taste text."""

    def __init__(self, recommender: Recommender, k: int = 5, explain: bool = False):
        super().__init__()
        self.recommender = recommender
        self.top_k = k
        self.explain = explain

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = query_bundle.query_str.strip()
        request = (RecommendRequest(user_id=query.removeprefix("user:"), k=self.top_k,
                                    explain=self.explain) if query.startswith("user:")
                   else RecommendRequest(text=query, k=self.top_k, explain=self.explain))
        result = asyncio.run(self.recommender.arun(request))
        nodes = []
        for r in result.items:
            text = f"{r.item.title} ({r.item.year}). Genres: {', '.join(r.item.genres)}."
            if r.explanation:
                text += f" Why: {r.explanation.text}"
            node = TextNode(id_=f"item:{r.item.id}", text=text, metadata={
                "item_id": r.item.id, "rank": r.rank,
                "facts": list(r.explanation.facts_in_words) if r.explanation else []})
            nodes.append(NodeWithScore(node=node, score=r.score))
        return nodes
