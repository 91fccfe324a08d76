"""The HTTP service's live-write routes (rag_rec/api/http.py includes them): thin calls
of `Recommender.record_interaction`, `upsert_item`, `hide_item` and `unhide_item`.

Writes always need the token: with none configured they are refused with 403 "writes
disabled", even on loopback (a write changes what everybody is recommended). Each
accepted write is logged with the request's id.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from rag_rec.errors import RagRecError
from rag_rec.live import InteractionWrite, ItemBody, ItemWrite, WriteResult
from rag_rec.recommender import Recommender

log = logging.getLogger("rag_rec.api")


class WritesDisabled(RagRecError):
    """A write to a service that has no token (403)."""


def request_id(request: Request) -> str | None:
    """The id `AccessLog` gave the request (echoed in `x-request-id`)."""
    return request.scope.get("state", {}).get("request_id")


def write_routes(recommender: Callable[[], Awaitable[Recommender]], token: bytes | None,
                 bearer: Any) -> APIRouter:
    """The write routes over the app's recommender dependency."""

    def writable() -> None:
        if token is None:
            raise WritesDisabled("writes disabled: set RAG_REC_API__TOKEN to accept "
                                 "interactions and item changes")

    router = APIRouter(dependencies=[bearer, Depends(writable)])
    Rec = Annotated[Recommender, Depends(recommender)]

    async def written(request: Request, call: Callable[..., WriteResult],
                      *args: Any) -> WriteResult:
        result = await asyncio.to_thread(call, *args)
        if result.outcome != "unchanged":
            log.info("write", extra={"fields": {
                "request_id": request_id(request), "kind": result.kind, "id": result.id,
                "outcome": result.outcome}})
        return result

    @router.post("/v1/interactions")
    async def interactions(body: InteractionWrite, request: Request, rec: Rec) -> WriteResult:
        """Record that a user interacted with an item (a rating, or none for a positive
        interaction): their next recommendation reads it. Unknown users are created."""
        return await written(request, rec.record_interaction, body.user_id, body.item_id,
                             body.rating, body.timestamp)

    @router.put("/v1/items/{item_id}")
    async def put_item(item_id: str, body: ItemBody, request: Request,
                       rec: Rec) -> WriteResult:
        """Add an item or update it (title, year, text, categories, facts): it is
        retrievable and scored from its content at once."""
        try:
            write = ItemWrite(id=item_id, **body.model_dump())
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("path", "item_id")}
                                          for e in exc.errors()]) from None
        return await written(request, rec.upsert_item, write)

    @router.post("/v1/items/{item_id}/hide")
    async def hide(item_id: str, request: Request, rec: Rec) -> WriteResult:
        """Never recommend this item from now on."""
        return await written(request, rec.hide_item, item_id)

    @router.post("/v1/items/{item_id}/unhide")
    async def unhide(item_id: str, request: Request, rec: Rec) -> WriteResult:
        """Recommend a hidden item again."""
        return await written(request, rec.unhide_item, item_id)

    return router
