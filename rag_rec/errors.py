"""Typed errors. Each one says what went wrong and how to fix it; adapters (CLI, HTTP)
map them to exit codes and status codes in one place."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError


class RagRecError(Exception):
    """Base class of every error rag_rec raises on purpose."""


class DataError(RagRecError):
    """A dataset file is missing or malformed; the message names the file and line."""


class UnknownUser(RagRecError):
    """The user id is not in the data (callers may take the cold-start path instead)."""


class UnknownItem(RagRecError):
    """The item id is not in the data."""


class UnknownName(RagRecError):
    """A name in a request matches no graph entity well, or several different ones
    equally well; `nearest` holds the closest names, to ask again with."""

    def __init__(self, message: str, nearest: list[str] | None = None):
        super().__init__(message)
        self.nearest = nearest or []


class InvalidRequest(RagRecError, ValueError):
    """A request that passes the schema but cannot be answered as asked (constraints that
    contradict each other once names are resolved, a reference to an earlier answer
    without one, k out of range, ...)."""


class GraphUnavailable(RagRecError):
    """Neo4j cannot be reached or started."""


class StaleArtifact(RagRecError):
    """A saved artifact was built from other data or settings than the current ones."""


class LLMUnavailable(RagRecError):
    """The LLM server cannot be reached, timed out, or could not be started."""


class GraphMismatch(RagRecError):
    """The graph holds other data, another split, or an incomplete ingest than the build
    being served; the message names the command that fixes it."""


class WriteNotRecorded(RagRecError):
    """A live write's journal line could not be written (disk full, read-only): the write
    is not acknowledged; the graph may hold it already, and retrying it is harmless."""


class IngestIncomplete(GraphUnavailable):
    """The graph's last ingest did not finish (killed, or a build is still holding ratings
    back), so answers from it would be partial; rerunning the ingest repairs it."""


# --------------------------------------------------------------------------- rendering
# What the adapters send back about an error. Inputs can hold anything JSON allows (NaN,
# lone UTF-16 surrogates, megabytes of text), so an error never echoes them: it names the
# field and the reason only, in text that any JSON encoder and any UTF-8 stream can carry.


def safe_text(value: object, limit: int = 200) -> str:
    """`value` as printable, UTF-8-encodable text of at most `limit` characters."""
    text = str(value)
    if not text.isprintable() or any("\ud800" <= c <= "\udfff" for c in text):
        text = "".join(c if c.isprintable() and not "\ud800" <= c <= "\udfff"
                       else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                       for c in text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def public_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors (pydantic's or FastAPI's) reduced to type, loc and msg: never
    the rejected input or the parser's context, which may hold unencodable values."""
    return [{"type": safe_text(e.get("type", "invalid"), 64),
             "loc": [p if isinstance(p, int) else safe_text(p, 64) for p in e.get("loc", ())],
             "msg": safe_text(e.get("msg", "invalid value"))} for e in errors]


def summarise(errors: Iterable[Mapping[str, Any]]) -> str:
    """One line for text-only channels (MCP, agents): `field: reason; ...`."""
    return "; ".join(".".join(str(p) for p in e["loc"]) + ": " + e["msg"] if e["loc"]
                     else e["msg"] for e in public_errors(errors))


def lone_surrogate(value: object, loc: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """The location of the first string (key or value) in `value` holding a lone UTF-16
    surrogate, which JSON can carry but UTF-8 cannot; None if there is none."""
    if isinstance(value, str):
        return loc if any("\ud800" <= c <= "\udfff" for c in value) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = lone_surrogate(key, loc) or lone_surrogate(item, (*loc, key))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = lone_surrogate(item, (*loc, i))
            if found is not None:
                return found
    return None


SURROGATE_MSG = "String holds a lone UTF-16 surrogate, which UTF-8 cannot encode"


def describe(exc: RagRecError) -> dict[str, Any]:
    """The body every adapter gives for a domain error: its type, its message and, for a
    name the graph does not know, the nearest names."""
    body: dict[str, Any] = {"error": type(exc).__name__, "detail": safe_text(exc, 1000)}
    if isinstance(exc, UnknownName):
        body["nearest"] = [safe_text(name) for name in exc.nearest]
    return body


def error_line(exc: RagRecError | ValidationError) -> str:
    """The same message as one line, for text-only channels (MCP tool errors, agents):
    `UnknownUser: unknown user id 'x'`, `InvalidRequest: k: Input should be ...`."""
    if isinstance(exc, ValidationError):
        return f"InvalidRequest: {summarise(exc.errors())}"
    body = describe(exc)
    return f"{body['error']}: {body['detail']}"
