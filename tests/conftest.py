"""Shared fixtures. The graph tests talk to the real Neo4j the settings point at:
`NEO4J_URI` if set, else the bundled server (`rag-rec graph start`; .ci/run starts it)."""

from __future__ import annotations

import os

import pytest

from rag_rec.data import Dataset, load_dataset
from rag_rec.graph import GraphClient
from rag_rec.settings import Settings, get_settings


# The suite fits its own small sources and scorer (a few minutes, not the served ones'
# longer training): the settings key their folders, so they live beside the served ones
# instead of replacing them, and the servers the API tests start inherit the same choice.
os.environ.setdefault("RAG_REC_SCORER__EPOCHS", "4")
os.environ.setdefault("RAG_REC_SOURCES__SASREC__EPOCHS", "6")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def dataset(settings: Settings) -> Dataset:
    return load_dataset(settings.data, settings.home)


@pytest.fixture(scope="session")
def graph(settings: Settings, dataset: Dataset):
    """The real graph holding the full dataset (ingested here; idempotent)."""
    client = GraphClient(settings.graph, settings.home)
    client.ingest(dataset, progress=False)
    yield client
    client.close()


@pytest.fixture(scope="session")
def llm(settings: Settings):
    """The real LLM backend: RAG_REC_LLM_URL, else the local vLLM server (started here if
    `.ci/run` or `rag-rec llm serve` has not started it)."""
    from rag_rec.llm import make_backend, prepare_model

    if settings.llm.backend == "vllm" and not settings.llm.url and settings.llm.model is None:
        prepare_model(settings.llm, settings.home)
    return make_backend(settings.llm, settings.home)


@pytest.fixture(scope="session")
def artifacts(settings: Settings, graph: GraphClient):
    """The full-data build (text + PyKEEN embeddings, FAISS index, sources, scorer); built
    if missing."""
    from rag_rec.build import build

    return build(settings, None, progress=False)
