"""LlamaIndex integration: the recommender as a `FunctionTool` for agents, and a retriever
that returns recommended items (with their cited KG facts) as nodes."""

from __future__ import annotations

import asyncio

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.tools import FunctionTool

from pydantic import ValidationError

from rag_rec.errors import RagRecError, error_line
from rag_rec.models import RecommendRequest, Recommendations
from rag_rec.recommender import Recommender


def _as_text(result: Recommendations) -> str:
    lines = []
    for r in result.items:
        why = r.explanation.text if r.explanation else ""
        facts = "; ".join(f.plain for f in r.facts)
        lines.append(f"{r.rank}. {r.item.title} ({r.item.year}) - {why}"
                     + (f" [facts: {facts}]" if facts else ""))
    if result.degraded:
        lines.append(f"(degraded: {', '.join(result.flags)})")
    return "\n".join(lines)


def recommend_tool(recommender: Recommender) -> FunctionTool:
    """A tool an agent calls with a user id, or liked item ids and/or taste text."""

    async def recommend_movies(user_id: str | None = None, liked_item_ids: list[str] | None = None,
                               text: str | None = None, k: int = 5) -> str:
        """Recommend movies with explanations grounded in a knowledge graph. Give a
        MovieLens user_id, or for a new user liked_item_ids and/or a text describing
        their taste. k is how many movies to return (1-20)."""
        try:
            request = RecommendRequest(user_id=user_id, liked_item_ids=liked_item_ids or [],
                                       text=text, k=min(k, 20))
            return _as_text(await recommender.arun(request))
        except (ValidationError, RagRecError) as exc:
            # An agent recovers from a readable error; an exception would end its turn.
            return f"error: {error_line(exc)}"

    # LlamaIndex derives the argument schema from the signature and runs the coroutine
    # for sync callers itself.
    return FunctionTool.from_defaults(async_fn=recommend_movies, name="recommend_movies",
                                      description=recommend_movies.__doc__)


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
                "facts": [f.plain for f in r.facts], "sources": list(r.sources)})
            nodes.append(NodeWithScore(node=node, score=r.p_next))
        return nodes
