"""Typed errors. Each one says what went wrong and how to fix it; adapters (CLI, HTTP)
map them to exit codes and status codes in one place."""

from __future__ import annotations


class RagRecError(Exception):
    """Base class of every error rag_rec raises on purpose."""


class DataError(RagRecError):
    """A dataset file is missing or malformed; the message names the file and line."""


class UnknownUser(RagRecError):
    """The user id is not in the data (callers may take the cold-start path instead)."""


class UnknownItem(RagRecError):
    """The item id is not in the data."""


class GraphUnavailable(RagRecError):
    """Neo4j cannot be reached or started."""


class StaleArtifact(RagRecError):
    """A saved artifact was built from other data or settings than the current ones."""


class LLMUnavailable(RagRecError):
    """The LLM server cannot be reached, timed out, or could not be started."""


class GraphMismatch(RagRecError):
    """The graph holds other data, another split, or an incomplete ingest than the build
    being served; the message names the command that fixes it."""
