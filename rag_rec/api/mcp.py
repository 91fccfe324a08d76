"""MCP server (`rag-rec mcp`, stdio) so desktop chat assistants can call rag_rec.

Tools: `recommend` (known user or new user's liked items / text), `explain_item` (an
item's KG facts, and the paths linking it to a user's history), `similar_items`.

Every request gets an answer: a line that is not JSON gets JSON-RPC's -32700, JSON that
is not a JSON-RPC message -32600, a string with a lone UTF-16 surrogate (JSON can carry
one, UTF-8 cannot) -32602 with the request's id. A tool that fails on purpose (unknown
user or item, `k` out of range, Neo4j down, an unfinished ingest) returns a `ToolError`
whose text is the HTTP API's typed message: `UnknownUser: unknown user id 'x'`.
"""

from __future__ import annotations

import asyncio
import json
from functools import cache
from typing import Annotated, Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from pydantic import Field, ValidationError

from rag_rec.errors import SURROGATE_MSG, RagRecError, error_line, lone_surrogate
from rag_rec.models import MAX_K, RecommendRequest
from rag_rec.recommender import Recommender

server = MCPServer("rag_rec", instructions=(
    "Movie recommendations with explanations grounded in a knowledge graph. Use `recommend` "
    "for a known MovieLens user id, or for a new user's liked item ids and/or taste text."))

K = Annotated[int, Field(ge=1, le=MAX_K)]


@cache
def _recommender() -> Recommender:
    return Recommender.from_settings()


async def _ready() -> Recommender:
    return await asyncio.to_thread(_recommender)


def _tool_error(exc: RagRecError | ValidationError) -> ToolError:
    """The HTTP API's typed message for `exc`, as the error the MCP client reads."""
    return ToolError(error_line(exc))


@server.tool()
async def recommend(user_id: str | None = None, liked_item_ids: list[str] | None = None,
                    text: str | None = None, k: int = 5, explain: bool = True) -> dict[str, Any]:
    """Explained recommendations for a user (by id) or a new user (liked item ids and/or a
    description of their taste). Each item comes with a calibrated probability, an
    explanation and the knowledge-graph facts it cites."""
    try:
        request = RecommendRequest(user_id=user_id, liked_item_ids=liked_item_ids or [],
                                   text=text, k=k, explain=explain)
        rec = await _ready()
        return (await rec.arun(request)).model_dump(mode="json")
    except (ValidationError, RagRecError) as exc:
        raise _tool_error(exc) from exc


@server.tool()
async def explain_item(item_id: str, user_id: str | None = None) -> dict[str, Any]:
    """An item's knowledge-graph facts; with `user_id`, also the paths that connect it to
    what that user has watched."""
    try:
        rec = await _ready()
        detail = await asyncio.to_thread(rec.item_detail, item_id)
        out: dict[str, Any] = detail.model_dump(mode="json")
        if user_id is not None:
            history = {h.item.id: h.rating for h in await asyncio.to_thread(rec.history, user_id)}
            facts = await asyncio.to_thread(rec.graph.candidate_facts, [item_id], history, 5)
            out["paths_to_history"] = [f.model_dump(mode="json") for f in facts[item_id]]
        return out
    except RagRecError as exc:
        raise _tool_error(exc) from exc


@server.tool()
async def similar_items(item_id: str, k: K = 5) -> list[dict[str, Any]]:
    """Items closest to `item_id` in rag_rec's combined text + knowledge-graph space."""
    try:
        rec = await _ready()
        hits = await asyncio.to_thread(rec.similar_items, item_id, k)
    except RagRecError as exc:
        raise _tool_error(exc) from exc
    return [{"item": item.model_dump(mode="json"), "similarity": round(score, 4)}
            for item, score in hits]


# --------------------------------------------------------------------------- transport


_UNREADABLE = object()


def _rejection(exc: Exception) -> types.JSONRPCError:
    """The JSON-RPC error for a line the SDK's transport could not read (it hands the
    parse error on, and would otherwise answer nothing)."""
    errors = exc.errors() if isinstance(exc, ValidationError) else []
    invalid_json = [e["input"] for e in errors if e["type"] == "json_invalid"]
    message: Any = _UNREADABLE
    if invalid_json:  # not JSON to the SDK's parser: maybe JSON with a lone surrogate
        try:
            message = json.loads(invalid_json[0])
        except (ValueError, TypeError, RecursionError):
            pass
    elif errors:  # JSON, but not a JSON-RPC message
        message = errors[0].get("input")
    if message is _UNREADABLE:
        error = types.ErrorData(code=types.PARSE_ERROR, message="Parse error: not JSON")
        return types.JSONRPCError(jsonrpc="2.0", id=None, error=error)
    request_id = message.get("id") if isinstance(message, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, (int, str)) or \
            lone_surrogate(request_id) is not None:
        request_id = None
    where = lone_surrogate(message)
    if where is not None:
        error = types.ErrorData(code=types.INVALID_PARAMS, message=(
            f"Invalid params: {'.'.join(map(str, where)) or 'message'}: {SURROGATE_MSG}"))
    else:
        error = types.ErrorData(code=types.INVALID_REQUEST, message=(
            "Invalid Request: not a JSON-RPC 2.0 request, notification or response "
            "(batches are not supported)"))
    return types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error)


async def run_stdio() -> None:
    """`MCPServer.run_stdio_async`, with every unreadable line answered."""
    lowlevel = server._lowlevel_server  # noqa: SLF001 - what run_stdio_async runs too
    async with stdio_server() as (read_stream, write_stream):
        screened_writer, screened = anyio.create_memory_object_stream[
            SessionMessage | Exception](0)

        async def screen() -> None:
            async with screened_writer:
                async for item in read_stream:
                    if isinstance(item, Exception):
                        await write_stream.send(SessionMessage(_rejection(item)))
                    else:
                        await screened_writer.send(item)

        async with anyio.create_task_group() as tg:
            tg.start_soon(screen)
            await lowlevel.run(screened, write_stream,
                               lowlevel.create_initialization_options())
            tg.cancel_scope.cancel()


def main() -> None:
    anyio.run(run_stdio)


if __name__ == "__main__":
    main()
