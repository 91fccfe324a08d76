"""Shared fixtures, in two tiers.

- The fast tier (`pytest -m "not integration"`): no Neo4j, no vLLM, no MovieLens build.
  `tiny_build` builds every artifact of tests/data/tiny (40 films, 60 invented users) in
  a temporary home, and `tiny_recommender` serves it with an in-memory graph
  (rag_rec/memory_graph.py) and no LLM.
- The integration tier: every test that uses the real graph, the real LLM or the full
  MovieLens build (the `graph`, `llm` and `artifacts` fixtures) is marked `integration`
  here. The graph tests talk to the real Neo4j the settings point at: `NEO4J_URI` if
  set, else the bundled server (`rag-rec graph start`; .ci/run starts it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rag_rec.data import Dataset, load_dataset
from rag_rec.graph import GraphClient
from rag_rec.settings import Settings, get_settings


# The suite fits its own small sources and scorer (a few minutes, not the served ones'
# longer training): the settings key their folders, so they live beside the served ones
# instead of replacing them, and the servers the API tests start inherit the same choice.
os.environ.setdefault("RAG_REC_SCORER__EPOCHS", "4")
os.environ.setdefault("RAG_REC_SOURCES__SASREC__EPOCHS", "6")

TINY = Path(__file__).parent / "data" / "tiny"
SERVER_FIXTURES = {"graph", "llm", "artifacts"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if (SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
                or item.get_closest_marker("llm")):
            item.add_marker(pytest.mark.integration)


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


@pytest.fixture(scope="session")
def tiny_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for tests/data/tiny in a fresh home, every training step cut short."""
    return Settings(
        home=tmp_path_factory.mktemp("tiny-home"),
        data={"source": TINY, "kg_dir": TINY / "kg"},
        embed={"kg_epochs": 3, "kg_eval_triples": 50},
        sources={"sasrec": {"epochs": 2, "members": 1}},
        scorer={"epochs": 2},
        like={"epochs": 2},
    )


@pytest.fixture(scope="session")
def tiny_build(tiny_settings: Settings):
    """Every build step on the tiny catalogue (no graph: the build ingests none)."""
    from rag_rec.build import build

    return build(tiny_settings, None, progress=False, ingest=False)


@pytest.fixture(scope="session")
def tiny_recommender(tiny_settings: Settings, tiny_build):
    """The tiny build served with an in-memory graph and no LLM."""
    from rag_rec.memory_graph import InMemoryGraph
    from rag_rec import like
    from rag_rec.build import load_ranker
    from rag_rec.recommender import Recommender

    graph = InMemoryGraph(tiny_build.ds)
    with Recommender(tiny_settings, tiny_build, load_ranker(tiny_settings, tiny_build),
                     like.load_built(tiny_build),
                     connect_graph=lambda: graph, llm=None,
                     llm_error="no LLM in the fast tier") as rec:
        yield rec
