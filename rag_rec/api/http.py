"""The HTTP service (`rag-rec serve`): FastAPI over `Recommender`.

    POST /v1/recommendations        RecommendRequest -> Recommendations (+ Understood)
    GET  /v1/users/{user_id}/history?limit=          -> list[HistoryEntry]
    GET  /v1/items/{item_id}                         -> ItemDetail (with KG facts)
    GET  /v1/items/{item_id}/similar?k=              -> list[SimilarItem]
    GET  /v1/search?q=&k=&kinds=                     -> list[Match] (titles and names)
    POST /v1/interactions           InteractionWrite -> WriteResult  (live writes:
    PUT  /v1/items/{item_id}        ItemBody         -> WriteResult   rag_rec/live/;
    POST /v1/items/{item_id}/hide                    -> WriteResult   they need the
    POST /v1/items/{item_id}/unhide                  -> WriteResult   token, always)
    GET  /healthz                                    -> Health (Neo4j, vLLM, build,
                                                        writes since the build)

Every error, whatever raised it, has one shape: `{"error": type, "detail": text}`, plus
`errors` (each invalid field) for a 422 from validation and `nearest` for a name the graph
does not know.

Each request passes these layers, outermost first, all plain ASGI so they act before
FastAPI parses anything:

- `AccessLog`: one JSON line per request (method, path, status, ms, request id; never
  headers or tokens); an unhandled error becomes a 500 logged with its traceback.
- `BearerAuth`: /v1 needs `Authorization: Bearer <token>` when a token is set (an empty
  token counts as none), checked before the body is read.
- `BufferedBody`: the body is read in full first, within `max_body_bytes` (413, declared
  or streamed, chunked included) and `request_timeout_s` (408 for a slow or partial
  body), so the app only ever sees a complete body.

Paths match exactly (no slash redirects, so no `Location` built from the Host header).
Validation errors are 422s naming the field and reason, never echoing the input; domain
errors map to status codes in one place (`STATUS`); /healthz without the token shows the
status only. The service refuses to listen beyond loopback without a token, and refuses
writes (403 "writes disabled") without one, even on loopback: a write changes what
everybody is recommended. Each accepted write is logged with its request id.
"""


import asyncio
import ipaddress
import json
import logging
import secrets
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer

from rag_rec.errors import (
    SURROGATE_MSG,
    GraphMismatch,
    GraphUnavailable,
    LLMUnavailable,
    RagRecError,
    StaleArtifact,
    InvalidRequest,
    WriteNotRecorded,
    UnknownItem,
    UnknownName,
    UnknownUser,
    describe,
    lone_surrogate,
    public_errors,
    summarise,
)
from rag_rec.chat import MAX_K, RecommendRequest
from rag_rec.api.writes import WritesDisabled, write_routes
from rag_rec.lookups import SEARCH_KINDS, SearchKind
from rag_rec.models import Health, HistoryEntry, ItemDetail, Recommendations, SimilarItem
from rag_rec.recommender import Recommender
from rag_rec.settings import Settings, get_settings

log = logging.getLogger("rag_rec.api")

STATUS: dict[type[RagRecError], int] = {
    WritesDisabled: 403, UnknownUser: 404, UnknownItem: 404, UnknownName: 422, InvalidRequest: 422,
    GraphUnavailable: 503, LLMUnavailable: 503, StaleArtifact: 503, GraphMismatch: 503,
    WriteNotRecorded: 503,
}
PUBLIC_PATHS = ("/healthz", "/docs", "/openapi.json", "/redoc")
"""Paths served without the token (/healthz then shows its status only)."""


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record, with the record's `fields` and, for errors, the
    traceback (a 500 must leave a trace)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname,
                 "logger": record.name, "msg": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["traceback"] = record.exc_text
        return json.dumps(entry, default=str)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bearer_token(settings: Settings) -> bytes | None:
    """The configured token, or None when unset or blank: `RAG_REC_API__TOKEN=""` is no
    token (not a token nobody can send)."""
    token = settings.api.token
    if token is None or not token.get_secret_value().strip():
        return None
    return token.get_secret_value().encode()


def _presented(scope) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            return credentials.strip() if scheme.lower() == b"bearer" else None
    return None


def token_ok(scope, token: bytes | None) -> bool:
    presented = _presented(scope)
    return token is None or (presented is not None and secrets.compare_digest(presented, token))


async def _reply(send, status: int, body: dict[str, Any],
                 headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *headers]})
    await send({"type": "http.response.body", "body": data})


class AccessLog:
    """ASGI middleware: one JSON log line per request, and a logged 500 (traceback
    included) for an unhandled error instead of a dropped connection."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", []))
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if 0 < len(given) <= 64 and given.isprintable() else uuid.uuid4().hex[:12]
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 0

        async def send_logged(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        except Exception:
            log.error("unhandled error", exc_info=True, extra={"fields": {
                "request_id": request_id, "error": traceback.format_exc(limit=1).strip()
                .splitlines()[-1]}})
            if status == 0:
                await _reply(send_logged, 500, {"error": "InternalError", "detail": "internal error; the service log "
                                                "has the traceback", "request_id": request_id})
            else:
                status = 500
        finally:
            log.info("request", extra={"fields": {
                "request_id": request_id, "method": scope["method"], "path": scope["path"],
                "status": status or 500, "ms": round((time.perf_counter() - start) * 1000, 1)}})


class BearerAuth:
    """ASGI middleware: 401 for /v1 without the token, before any body is read or parsed."""

    def __init__(self, app, token: bytes | None):
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send):
        if (scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS
                and not token_ok(scope, self.token)):
            return await _reply(send, 401, {"error": "Unauthorized", "detail": "missing or wrong bearer token"},
                                ((b"www-authenticate", b"Bearer"),))
        return await self.app(scope, receive, send)


class BufferedBody:
    """ASGI middleware: reads the whole body before the app runs. Over `limit` bytes,
    declared or streamed (chunked bodies have no Content-Length): 413. Not complete
    within `timeout_s`: 408, and the connection closes (a client cannot hold a worker
    with a partial body)."""

    def __init__(self, app, limit: int, timeout_s: float):
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(send, self.limit)
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.timeout_s
        more = True
        while more:
            try:
                message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except TimeoutError:
                return await _reply(send, 408, {
                    "error": "RequestTimeout",
                    "detail": f"request body not received within {self.timeout_s:g}s"},
                    ((b"connection", b"close"),))
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await _too_large(send, self.limit)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()  # after the body: only a disconnect can come
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


async def _too_large(send, limit: int) -> None:
    await _reply(send, 413, {"error": "PayloadTooLarge",
                             "detail": f"request body over {limit} bytes"},
                 ((b"connection", b"close"),))


def _serving_recommender(settings: Settings) -> Recommender:
    rec = Recommender.from_settings(settings, use_llm=settings.api.use_llm, autostart=False)
    rec.warm_up()
    return rec


def create_app(settings: Settings | None = None,
               make_recommender: Callable[[Settings], Recommender] | None = None) -> FastAPI:
    """The app. The recommender is built on first use (and again after a failure), without
    starting Neo4j, so the service starts, and answers /healthz and 503s at once, while
    Neo4j is down."""
    settings = settings or get_settings()
    factory = make_recommender or _serving_recommender
    token = bearer_token(settings)
    state: dict[str, Recommender] = {}
    lock = asyncio.Lock()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if "rec" in state:
            state["rec"].close()

    app = FastAPI(title="rag_rec", version="0.1.0", lifespan=lifespan, redirect_slashes=False,
                  description="Explained recommendations from a knowledge graph and an LLM.")
    # add_middleware wraps: the last added runs first.
    app.add_middleware(BufferedBody, limit=settings.api.max_body_bytes,
                       timeout_s=settings.api.request_timeout_s)
    app.add_middleware(BearerAuth, token=token)
    app.add_middleware(AccessLog)
    # Documents the scheme in OpenAPI; BearerAuth has checked the token already.
    bearer = Depends(HTTPBearer(auto_error=False))

    async def recommender() -> Recommender:
        async with lock:
            if "rec" not in state:
                state["rec"] = await asyncio.to_thread(factory, settings)
            return state["rec"]

    Rec = Annotated[Recommender, Depends(recommender)]

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = public_errors(exc.errors())
        return JSONResponse({"error": "InvalidRequest", "detail": summarise(errors),
                             "errors": errors}, status_code=422)

    @app.exception_handler(RagRecError)
    async def domain_error(request: Request, exc: RagRecError) -> JSONResponse:
        status = next((c for t, c in STATUS.items() if isinstance(exc, t)), 500)
        return JSONResponse(describe(exc), status_code=status)

    @app.exception_handler(TimeoutError)
    async def timeout(request: Request, exc: TimeoutError) -> JSONResponse:
        return JSONResponse({"error": "Timeout",
                             "detail": f"request took over {settings.api.request_timeout_s}s"},
                            status_code=504)

    @app.post("/v1/recommendations", dependencies=[bearer])
    async def recommendations(body: RecommendRequest, rec: Rec) -> Recommendations:
        """Explained recommendations for a known user, or a new user's liked items and/or
        free text (cold start). Degraded stages are flagged, not hidden."""
        where = lone_surrogate(body.model_dump(exclude_defaults=True))
        if where is not None:
            raise RequestValidationError([{"type": "string_unicode", "loc": ("body", *where),
                                           "msg": SURROGATE_MSG}])
        return await asyncio.wait_for(rec.arun(body), timeout=settings.api.request_timeout_s)

    @app.get("/v1/users/{user_id}/history", dependencies=[bearer])
    async def history(user_id: str, rec: Rec,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[HistoryEntry]:
        """The user's ratings, newest first, at most `limit`."""
        return await asyncio.to_thread(rec.history, user_id, limit)

    @app.get("/v1/items/{item_id}", dependencies=[bearer])
    async def item(item_id: str, rec: Rec) -> ItemDetail:
        """An item with its knowledge-graph facts."""
        return await asyncio.to_thread(rec.item_detail, item_id)

    @app.get("/v1/items/{item_id}/similar", dependencies=[bearer])
    async def similar(item_id: str, rec: Rec,
                      k: Annotated[int, Query(ge=1, le=MAX_K)] = 10) -> list[SimilarItem]:
        """The items closest to this one in the combined text + knowledge-graph space."""
        hits = await asyncio.to_thread(rec.similar_items, item_id, k)
        return [SimilarItem(item=item, similarity=round(score, 4)) for item, score in hits]

    @app.get("/v1/search", dependencies=[bearer])
    async def search(q: Annotated[str, Query(min_length=1, max_length=200)], rec: Rec,
                     k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
                     kinds: Annotated[list[SearchKind] | None, Query()] = None
                     ) -> list[dict[str, Any]]:
        """Items by title and graph names (genres, people and companies, categories, a
        catalogue's own entities), best first: to turn "Toy Story" into an item id, or
        check a name."""
        hits = await asyncio.to_thread(rec.search, q, k, kinds or list(SEARCH_KINDS))
        return [asdict(hit) for hit in hits]

    app.include_router(write_routes(recommender, token, bearer))

    @app.get("/healthz")
    async def healthz(request: Request) -> JSONResponse:
        """Neo4j, vLLM and build status; 503 when no full answer is possible. Without
        the token (when one is set) only the status: the details name internal
        addresses and paths."""
        try:
            health = await (await recommender()).health()
        except RagRecError as exc:
            health = Health(status="down", neo4j=f"error: {exc}", llm="unknown", build="unknown")
        body = (health.model_dump() if token_ok(request.scope, token)
                else {"status": health.status})
        return JSONResponse(body, status_code=503 if health.status == "down" else 200)

    return app


def serve(settings: Settings | None = None) -> None:
    """Run the service with uvicorn, after checking it is safe to expose."""
    import uvicorn

    settings = settings or get_settings()
    if not is_loopback(settings.api.host) and bearer_token(settings) is None:
        raise RagRecError(f"refusing to listen on {settings.api.host} without a token: set "
                          "RAG_REC_API__TOKEN, or bind 127.0.0.1")
    # The access log goes to stderr as JSON lines; the root logger keeps the CLI's
    # log-file handler (rag_rec/logs.py) for the libraries.
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    uvicorn.run(create_app(settings), host=settings.api.host, port=settings.api.port,
                log_config=None, access_log=False)
