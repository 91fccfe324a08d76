"""Embeddings, the FAISS index and candidate generation on the real data and graph."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from rag_rec.build import load_artifacts
from rag_rec.data import Dataset
from rag_rec.embed import TextCache, item_node, make_text_encoder, user_node
from rag_rec.errors import StaleArtifact
from rag_rec.graph import GraphClient
from rag_rec.index import ItemIndex
from rag_rec.models import ColdStartProfile, Item
from rag_rec.retrieve import CandidateGenerator
from rag_rec.settings import Settings

RIDLEY_SCOTT = "http://dbpedia.org/resource/Ridley_Scott"


@pytest.fixture
def generator(artifacts, graph: GraphClient, settings: Settings) -> CandidateGenerator:
    return CandidateGenerator(artifacts, graph, settings)


def test_index_round_trip(artifacts, settings: Settings, tmp_path: Path) -> None:
    ids = list(artifacts.items)[:300]
    vectors = np.stack([artifacts.index.vector(i) for i in ids])
    index = ItemIndex(artifacts.index.dim, settings.retrieval)
    index.add(ids, vectors)
    index.save(tmp_path, "fp")
    loaded = ItemIndex.load(tmp_path, settings.retrieval, "fp")
    queries = vectors[:20]
    assert loaded.ids == ids
    assert loaded.search(queries, 10) == index.search(queries, 10)
    assert [hits[0][0] for hits in loaded.search(queries, 1)] == ids[:20]


def test_corrupt_or_mismatched_index_is_refused(artifacts, settings: Settings,
                                                tmp_path: Path) -> None:
    shutil.copytree(artifacts.folder / "index", tmp_path / "index")
    with pytest.raises(StaleArtifact, match="other data or settings.*rag-rec build"):
        ItemIndex.load(tmp_path / "index", settings.retrieval, "another-fingerprint")
    good = artifacts.folder.name
    (tmp_path / "index" / "items.faiss").write_bytes(b"not an index")
    with pytest.raises(StaleArtifact, match=r"items\.faiss is missing or corrupt.*rag-rec build"):
        ItemIndex.load(tmp_path / "index", settings.retrieval, good)


def test_index_rejects_duplicates_and_bad_vectors(settings: Settings) -> None:
    index = ItemIndex(4, settings.retrieval)
    index.add(["a"], np.ones((1, 4)))
    with pytest.raises(ValueError, match="already in the index"):
        index.add(["a"], np.ones((1, 4)))
    with pytest.raises(ValueError, match="NaN"):
        index.add(["b"], np.full((1, 4), np.nan))
    with pytest.raises(ValueError, match="dim 4"):
        index.add(["c"], np.ones((1, 3)))


def test_kg_embeddings_match_the_graph(artifacts, dataset: Dataset) -> None:
    kg = artifacts.kg
    assert kg.vectors.shape == (len(kg.index), kg.dim) and kg.dim == 64
    assert sorted(kg.index.values()) == list(range(len(kg.index)))
    assert all(item_node(i) in kg.index for i in dataset.items.index)
    assert all(user_node(u) in kg.index for u in dataset.user_ids)
    assert all(e in kg.index for e in dataset.entities.index)
    assert np.isfinite(kg.vectors).all()
    assert 0 < kg.report["mrr"] <= 1 and 0 < kg.report["hits_at_10"] <= 1
    assert len(artifacts.index) == len(dataset.items)


def test_text_cache_only_encodes_new_texts(settings: Settings, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = make_text_encoder(settings.embed, settings.llm, settings.home)
    cache = TextCache(encoder, tmp_path)
    first = cache.embed(["Alien (1979). Genres: Horror, Sci-Fi", "Heat (1995)"])
    assert first.shape == (2, 384)
    assert np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    monkeypatch.setattr(encoder, "encode", lambda *a, **k: pytest.fail("re-encoded"))
    again = TextCache(encoder, tmp_path).embed(["Heat (1995)"])
    assert np.allclose(again[0], first[1])


def test_llm_hidden_state_encoder(settings: Settings) -> None:
    encoder = make_text_encoder(settings.embed.model_copy(update={"text_encoder": "smollm2"}),
                                settings.llm, settings.home)
    vecs = encoder.encode(["Blade Runner (1982). Directed by Ridley Scott",
                           "Toy Story (1995). Animation"])
    assert vecs.shape == (2, 576) and np.isfinite(vecs).all()
    with pytest.raises(ValueError, match="valid: minilm, smollm2"):
        make_text_encoder(settings.embed.model_copy(update={"text_encoder": "nope"}),
                          settings.llm, settings.home)


@pytest.mark.parametrize("user_id", ["1", "42", "405", "833"])
def test_seen_items_never_returned(generator: CandidateGenerator, dataset: Dataset,
                                   user_id: str) -> None:
    result = generator.for_user(user_id)
    seen = set(dataset.interactions[dataset.interactions.user_id == user_id].item_id)
    ids = [c.item.id for c in result.candidates]
    assert len(ids) == len(set(ids)) == generator.r.budget
    assert not seen & set(ids)
    assert not result.cold_start and result.flags == []
    assert all(c.sources and set(c.sources) <= {"faiss", "kg_path", "collaborative", "popular"}
               for c in result.candidates)
    tail = [i for i in ids if generator.is_tail(i)]
    assert len(tail) >= int(generator.r.tail_share * generator.r.budget)


def test_unknown_user_goes_cold(generator: CandidateGenerator) -> None:
    result = generator.for_user("no-such-user")
    assert result.cold_start and result.flags == ["unknown_user", "empty_history"]
    assert len(result.candidates) == generator.r.budget
    assert result.candidates[0].item.title == "Star Wars"  # the most rated movie


def test_cold_user_with_liked_items(generator: CandidateGenerator) -> None:
    liked = ["89", "183"]  # Blade Runner, Alien
    result = generator.for_new_user(liked)
    ids = {c.item.id for c in result.candidates}
    assert result.cold_start and not ids & set(liked)
    assert {"faiss", "kg_path", "collaborative"} <= {s for c in result.candidates
                                                      for s in c.sources}
    assert {"326", "924"} & ids  # other Ridley Scott films


def test_cold_user_with_free_text_only(generator: CandidateGenerator) -> None:
    profile = ColdStartProfile(genres=("Sci-Fi",), people=("Ridley Scott",))
    result = generator.for_new_user([], "gritty sci-fi, anything by Ridley Scott",
                                    profile=profile)
    assert result.flags == ["text_only"]
    top = [c.item.id for c in result.candidates[:20]]
    assert "89" in top  # Blade Runner: Sci-Fi and Ridley Scott


def test_new_item_is_retrievable_at_once(settings: Settings, graph: GraphClient) -> None:
    fresh = load_artifacts(settings)
    gen = CandidateGenerator(fresh, graph, settings)
    item = Item(id="new-prometheus", title="Prometheus", year=2012, genres=("Sci-Fi", "Horror"),
                abstract="A science fiction horror film directed by Ridley Scott.")
    try:
        gen.add_item(item, [("directed_by", RIDLEY_SCOTT), ("has_genre", "genre:Sci-Fi")])
        assert fresh.index.search(fresh.index.vector(item.id), 1)[0][0][0] == item.id
        result = gen.for_new_user([], "Prometheus, a 2012 science fiction horror film by "
                                      "Ridley Scott")
        assert item.id in [c.item.id for c in result.candidates[:10]]
        facts = graph.candidate_facts([item.id], {"89": 5.0})[item.id]
        assert any(f.entity_id == RIDLEY_SCOTT for f in facts)
        with pytest.raises(ValueError, match="already exists"):
            gen.add_item(item, [])
    finally:
        graph.query("delete_item", item_id=item.id)
