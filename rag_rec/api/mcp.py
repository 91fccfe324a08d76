"""MCP server (`rag-rec mcp`, stdio) so desktop chat assistants can call rag_rec.

Tools: `recommend` (RecommendRequest's fields: a known user and/or liked items and/or
words, filters, preferences, goal, session), `search` (titles and names to ids),
`explain_item` (an item's KG facts, and the paths linking it to a user's history),
`similar_items`; with a token configured (`RAG_REC_API__TOKEN`: writes are switched on),
also `record_interaction`, `upsert_item` and `hide_item` (rag_rec/live/). Answers are
compact JSON text (no abstracts, defaults left out, no
second copy as structured content); an unknown argument is refused.

Every request gets an answer: a line that is not JSON gets JSON-RPC's -32700, JSON that
is not a JSON-RPC message -32600, a string with a lone UTF-16 surrogate (JSON can carry
one, UTF-8 cannot) -32602 with the request's id. A tool that fails on purpose (unknown
user or item, `k` out of range, Neo4j down, an unfinished ingest) returns a `ToolError`
whose text is the HTTP API's typed message: `UnknownUser: unknown user id 'x'`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from dataclasses import asdict
from functools import cache
from typing import Annotated, Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from pydantic import ConfigDict, Field, ValidationError

from rag_rec.chat import MAX_K, RecommendRequest
from rag_rec.errors import SURROGATE_MSG, RagRecError, error_line, lone_surrogate
from rag_rec.live import ItemWrite
from rag_rec.lookups import SEARCH_KINDS, SearchKind
from rag_rec.recommender import Recommender
from rag_rec.settings import get_settings

server = MCPServer("rag_rec", instructions=(
    "Explained movie recommendations grounded in a knowledge graph. `recommend` takes a "
    "known user id and/or liked item ids and/or the person's own words, plus hard filters "
    "(genres, people in any role, categories, years, excluded ids), soft preferences, the "
    "goal (next / enjoy) and a session_id that remembers what was shown: in a session, "
    "'not that one' or feedback on an item shapes the next answer. Every answer returns "
    "`understood`: check it, and correct the request if a name was taken wrongly. Use "
    "`search` to turn a title or a name into ids, `similar_items` for items like one."))

K = Annotated[int, Field(ge=1, le=MAX_K, description="How many items.")]


@cache
def _recommender() -> Recommender:
    return Recommender.from_settings()


async def _ready() -> Recommender:
    return await asyncio.to_thread(_recommender)


def _tool_error(exc: RagRecError | ValidationError) -> ToolError:
    """The HTTP API's typed message for `exc`, as the error the MCP client reads."""
    return ToolError(error_line(exc))


async def recommend(**arguments: Any) -> dict[str, Any]:
    """Explained recommendations for a person: a known user id and/or liked item ids
    and/or their words, with filters, preferences, a goal and a session. Each item comes
    with its explanation from the knowledge graph; `understood` says how the request was
    read."""
    try:
        request = RecommendRequest(**{k: v for k, v in arguments.items() if v is not None})
        rec = await _ready()
        return (await rec.arun(request)).model_dump(mode="json", exclude_defaults=True)
    except (ValidationError, RagRecError) as exc:
        raise _tool_error(exc) from exc


# The tool's parameters are RecommendRequest's fields, with their types, bounds and
# descriptions: one request model for every entry point, nothing copied by hand.
recommend.__signature__ = inspect.Signature([
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                      annotation=Annotated[(info.annotation | None, *info.metadata,
                                            Field(description=info.description))])
    for name, info in RecommendRequest.model_fields.items()])
server.tool(structured_output=False)(recommend)


@server.tool(structured_output=False)
async def search(query: Annotated[str, Field(min_length=1, max_length=200, description=(
                     "A title or a name, as the person wrote it (typos are fine)."))],
                 k: K = 5,
                 kinds: Annotated[list[SearchKind] | None, Field(description=(
                     "What to search: item (titles), genre, dbpedia (people and "
                     "companies), category, entity (the catalogue's own: authors, "
                     "brands), decade. Default: all but decade."))] = None
                 ) -> dict[str, Any]:
    """Items by title and knowledge-graph names by name, best first, with their ids: use
    it before filtering on a name or liking a title."""
    try:
        rec = await _ready()
        hits = await asyncio.to_thread(rec.search, query, k, kinds or list(SEARCH_KINDS))
    except RagRecError as exc:
        raise _tool_error(exc) from exc
    return {"hits": [asdict(hit) for hit in hits]}


@server.tool(structured_output=False)
async def explain_item(item_id: Annotated[str, Field(min_length=1, max_length=64)],
                       user_id: Annotated[str | None, Field(max_length=64)] = None
                       ) -> dict[str, Any]:
    """An item's knowledge-graph facts; with `user_id`, also the paths that connect it to
    what that user has watched."""
    try:
        rec = await _ready()
        detail = await asyncio.to_thread(rec.item_detail, item_id)
        out: dict[str, Any] = detail.model_dump(mode="json", exclude_defaults=True)
        if user_id is not None:
            history = {h.item.id: h.rating for h in await asyncio.to_thread(rec.history, user_id)}
            facts = await asyncio.to_thread(rec.graph.candidate_facts, [item_id], history, 5)
            out["paths_to_history"] = [f.plain for f in facts[item_id]]
        return out
    except RagRecError as exc:
        raise _tool_error(exc) from exc


@server.tool(structured_output=False)
async def similar_items(item_id: Annotated[str, Field(min_length=1, max_length=64)],
                        k: K = 5) -> dict[str, Any]:
    """Items closest to `item_id` in rag_rec's combined text + knowledge-graph space."""
    try:
        rec = await _ready()
        hits = await asyncio.to_thread(rec.similar_items, item_id, k)
    except RagRecError as exc:
        raise _tool_error(exc) from exc
    return {"similar": [{"item": item.model_dump(mode="json", exclude_defaults=True),
                         "similarity": round(score, 4)} for item, score in hits]}


async def record_interaction(
        user_id: Annotated[str, Field(min_length=1, max_length=64)],
        item_id: Annotated[str, Field(min_length=1, max_length=64)],
        rating: Annotated[float | None, Field(description=(
            "On the catalogue's scale; none for a positive interaction."))] = None,
        timestamp: Annotated[int | None, Field(ge=0, description="Unix seconds.")] = None
) -> dict[str, Any]:
    """Record that a user interacted with an item; their next recommendation reads it.
    Unknown users are created; repeating it changes nothing."""
    try:
        rec = await _ready()
        result = await asyncio.to_thread(rec.record_interaction, user_id, item_id, rating,
                                         timestamp)
    except (ValidationError, RagRecError) as exc:
        raise _tool_error(exc) from exc
    return result.model_dump(mode="json", exclude_defaults=True)


async def upsert_item(
        id: Annotated[str, Field(min_length=1, max_length=64)],
        title: Annotated[str, Field(min_length=1, max_length=500)],
        year: int | None = None, text: str | None = None,
        categories: list[str] | None = None,
        facts: Annotated[list[tuple[str, str]] | None, Field(description=(
            "(relation, entity name) pairs, e.g. [\"directed_by\", \"Ridley Scott\"]."))
        ] = None,
        new_entities: Annotated[bool, Field(description=(
            "Create the entities facts name that the catalogue does not hold (else they "
            "are refused)."))] = False) -> dict[str, Any]:
    """Add an item or update one: recommendable at once, from its text and facts."""
    try:
        write = ItemWrite(id=id, title=title, year=year, text=text,
                          categories=tuple(categories or ()), facts=tuple(facts or ()),
                          new_entities=new_entities)
        rec = await _ready()
        result = await asyncio.to_thread(rec.upsert_item, write)
    except (ValidationError, RagRecError) as exc:
        raise _tool_error(exc) from exc
    return result.model_dump(mode="json", exclude_defaults=True)


async def hide_item(item_id: Annotated[str, Field(min_length=1, max_length=64)],
                    hidden: bool = True) -> dict[str, Any]:
    """Never recommend an item from now on (`hidden=false` shows it again)."""
    try:
        rec = await _ready()
        call = rec.hide_item if hidden else rec.unhide_item
        result = await asyncio.to_thread(call, item_id)
    except RagRecError as exc:
        raise _tool_error(exc) from exc
    return result.model_dump(mode="json", exclude_defaults=True)


def writes_enabled() -> bool:
    """Writes are on where a token is configured (as for the HTTP service)."""
    token = get_settings().api.token
    return token is not None and bool(token.get_secret_value().strip())


if writes_enabled():
    for _tool in (record_interaction, upsert_item, hide_item):
        server.tool(structured_output=False)(_tool)


class _Passthrough(ArgModelBase):
    """`recommend`'s arguments as sent: RecommendRequest validates them itself, so a bad
    `k` and an unknown argument get the typed one-line error every entry point gives
    (`InvalidRequest: k: ...`) rather than the SDK's."""

    model_config = ConfigDict(extra="allow")

    def model_dump_one_level(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _refuse_unknown_arguments() -> None:
    """An argument no tool declares is an error, not silently dropped (a misspelt
    `filter` would otherwise answer as if unfiltered); the published schemas say so."""
    for tool in server._tool_manager.list_tools():  # noqa: SLF001 - the registered tools
        lenient = tool.fn_metadata.arg_model
        strict = type(lenient.__name__, (lenient,), {"model_config": ConfigDict(
            extra="forbid", arbitrary_types_allowed=True)})
        tool.parameters = strict.model_json_schema(by_alias=True)
        tool.fn_metadata.arg_model = _Passthrough if tool.name == "recommend" else strict


_refuse_unknown_arguments()


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
