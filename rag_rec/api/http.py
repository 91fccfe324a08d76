"""The HTTP service (`rag-rec serve`): FastAPI over `Recommender`.

    POST /v1/recommendations        RecommendRequest -> Recommendations
    GET  /v1/users/{user_id}/history                 -> list[HistoryEntry]
    GET  /v1/items/{item_id}                         -> ItemDetail (with KG facts)
    GET  /healthz                                    -> Health (Neo4j, vLLM, build)

/v1 needs `Authorization: Bearer <token>` when a token is configured, and the service
refuses to listen beyond loopback without one. Bodies over `max_body_bytes` get 413, each
request has a timeout (504), errors map to status codes in one place, and every request
is logged as one JSON line (method, path, status, ms; never headers or tokens).
"""


import asyncio
import ipaddress
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag_rec.errors import (
    GraphMismatch,
    GraphUnavailable,
    LLMUnavailable,
    RagRecError,
    StaleArtifact,
    UnknownItem,
    UnknownUser,
)
from rag_rec.models import Health, HistoryEntry, ItemDetail, RecommendRequest, Recommendations
from rag_rec.recommender import Recommender
from rag_rec.settings import Settings, get_settings

log = logging.getLogger("rag_rec.api")

STATUS: dict[type[RagRecError], int] = {
    UnknownUser: 404, UnknownItem: 404, GraphUnavailable: 503, LLMUnavailable: 503,
    StaleArtifact: 503, GraphMismatch: 503,
}


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname,
                 "logger": record.name, "msg": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BodyLimit:
    """ASGI middleware: 413 for bodies over `limit` bytes, declared or streamed."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(send, self.limit)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(send, self.limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send, limit: int) -> None:
    body = json.dumps({"detail": f"request body over {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings | None = None,
               make_recommender: Callable[[Settings], Recommender] | None = None) -> FastAPI:
    """The app. The recommender is built on first use (and again after a failure), so the
    service starts, and answers /healthz and 503s, while Neo4j is still down."""
    settings = settings or get_settings()
    factory = make_recommender or (lambda s: Recommender(s, use_llm=s.api.use_llm))
    state: dict[str, Recommender] = {}
    lock = asyncio.Lock()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if "rec" in state:
            state["rec"].close()

    app = FastAPI(title="rag_rec", version="0.1.0", lifespan=lifespan,
                  description="Explained recommendations from a knowledge graph and an LLM.")
    app.add_middleware(BodyLimit, limit=settings.api.max_body_bytes)
    bearer = HTTPBearer(auto_error=False)

    async def recommender() -> Recommender:
        async with lock:
            if "rec" not in state:
                state["rec"] = await asyncio.to_thread(factory, settings)
            return state["rec"]

    def authorised(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        token = settings.api.token
        if token is None:
            return
        if creds is None or not secrets.compare_digest(creds.credentials.encode(),
                                                       token.get_secret_value().encode()):
            raise _Unauthorised

    Rec = Annotated[Recommender, Depends(recommender)]
    Auth = Depends(authorised)

    @app.exception_handler(_Unauthorised)
    async def unauthorised(request: Request, exc: _Unauthorised) -> JSONResponse:
        return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RagRecError)
    async def domain_error(request: Request, exc: RagRecError) -> JSONResponse:
        status = next((c for t, c in STATUS.items() if isinstance(exc, t)), 500)
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__},
                            status_code=status)

    @app.exception_handler(TimeoutError)
    async def timeout(request: Request, exc: TimeoutError) -> JSONResponse:
        return JSONResponse({"detail": f"request took over {settings.api.request_timeout_s}s"},
                            status_code=504)

    @app.middleware("http")
    async def access_log(request: Request, call_next):
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:12]
        start = time.perf_counter()
        response = await call_next(request)
        response.headers["x-request-id"] = request_id
        log.info("request", extra={"fields": {
            "request_id": request_id, "method": request.method, "path": request.url.path,
            "status": response.status_code,
            "ms": round((time.perf_counter() - start) * 1000, 1)}})
        return response

    @app.post("/v1/recommendations", dependencies=[Auth])
    async def recommendations(body: RecommendRequest, rec: Rec) -> Recommendations:
        """Explained recommendations for a known user, or a new user's liked items and/or
        free text (cold start). Degraded stages are flagged, not hidden."""
        return await asyncio.wait_for(rec.arun(body), timeout=settings.api.request_timeout_s)

    @app.get("/v1/users/{user_id}/history", dependencies=[Auth])
    async def history(user_id: str, rec: Rec) -> list[HistoryEntry]:
        """The user's ratings, newest first."""
        return await asyncio.to_thread(rec.history, user_id)

    @app.get("/v1/items/{item_id}", dependencies=[Auth])
    async def item(item_id: str, rec: Rec) -> ItemDetail:
        """An item with its knowledge-graph facts."""
        return await asyncio.to_thread(rec.item_detail, item_id)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Neo4j, vLLM and build status; 503 when no answer is possible."""
        try:
            health = await (await recommender()).health()
        except RagRecError as exc:
            health = Health(status="down", neo4j=f"error: {exc}", llm="unknown", build="unknown")
        return JSONResponse(health.model_dump(), status_code=503 if health.status == "down" else 200)

    return app


class _Unauthorised(Exception):
    pass


def serve(settings: Settings | None = None) -> None:
    """Run the service with uvicorn, after checking it is safe to expose."""
    import uvicorn

    settings = settings or get_settings()
    if not is_loopback(settings.api.host) and settings.api.token is None:
        raise RagRecError(f"refusing to listen on {settings.api.host} without a token: set "
                          "RAG_REC_API__TOKEN, or bind 127.0.0.1")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    uvicorn.run(create_app(settings), host=settings.api.host, port=settings.api.port,
                log_config=None, access_log=False)
