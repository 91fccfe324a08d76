"""MCP server (`rag-rec mcp`, stdio) so desktop chat assistants can call rag_rec.

Tools: `recommend` (known user or new user's liked items / text), `explain_item` (an
item's KG facts, and the paths linking it to a user's history), `similar_items`.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

from mcp.server.mcpserver import MCPServer

from rag_rec.models import RecommendRequest
from rag_rec.recommender import Recommender

server = MCPServer("rag_rec", instructions=(
    "Movie recommendations with explanations grounded in a knowledge graph. Use `recommend` "
    "for a known MovieLens user id, or for a new user's liked item ids and/or taste text."))


@cache
def _recommender() -> Recommender:
    return Recommender()


@server.tool()
async def recommend(user_id: str | None = None, liked_item_ids: list[str] | None = None,
                    text: str | None = None, k: int = 5, explain: bool = True) -> dict[str, Any]:
    """Explained recommendations for a user (by id) or a new user (liked item ids and/or a
    description of their taste). Each item comes with a calibrated probability, an
    explanation and the knowledge-graph facts it cites."""
    request = RecommendRequest(user_id=user_id, liked_item_ids=liked_item_ids or [], text=text,
                               k=k, explain=explain)
    rec = await asyncio.to_thread(_recommender)
    return (await rec.arun(request)).model_dump(mode="json")


@server.tool()
async def explain_item(item_id: str, user_id: str | None = None) -> dict[str, Any]:
    """An item's knowledge-graph facts; with `user_id`, also the paths that connect it to
    what that user has watched."""
    rec = await asyncio.to_thread(_recommender)
    detail = await asyncio.to_thread(rec.item_detail, item_id)
    out: dict[str, Any] = detail.model_dump(mode="json")
    if user_id is not None:
        history = {h.item.id: h.rating for h in await asyncio.to_thread(rec.history, user_id)}
        facts = await asyncio.to_thread(rec.graph.candidate_facts, [item_id], history, 5)
        out["paths_to_history"] = [f.model_dump(mode="json") for f in facts[item_id]]
    return out


@server.tool()
async def similar_items(item_id: str, k: int = 5) -> list[dict[str, Any]]:
    """Items closest to `item_id` in rag_rec's combined text + knowledge-graph space."""
    rec = await asyncio.to_thread(_recommender)
    hits = await asyncio.to_thread(rec.similar_items, item_id, k)
    return [{"item": item.model_dump(mode="json"), "similarity": round(score, 4)}
            for item, score in hits]


def main() -> None:
    server.run()


if __name__ == "__main__":
    main()
