"""The knowledge graph in the real Neo4j: ingest counts, idempotency, splits, named
queries on known users from the real data, injection-shaped ids, and the no-server error."""

from __future__ import annotations

import pytest

from rag_rec.data import Dataset, leave_last_out_split
from rag_rec.errors import GraphMismatch, GraphUnavailable
from rag_rec.graph import QUERIES, GraphClient
from rag_rec.settings import GraphSettings, Settings

RIDLEY_SCOTT = "http://dbpedia.org/resource/Ridley_Scott"


def expected_counts(ds: Dataset, interactions: int | None = None) -> dict[str, int]:
    return {"users": ds.interactions.user_id.nunique(), "items": len(ds.items),
            "entities": len(ds.entities), "triples": len(ds.triples),
            "entity_facts": len(ds.entity_triples),
            "interactions": len(ds.interactions) if interactions is None else interactions}


def test_counts_equal_the_dataset(graph: GraphClient, dataset: Dataset) -> None:
    assert graph.counts() == expected_counts(dataset)
    meta = graph.meta()
    assert meta["complete"] is True and meta["split"] == "full"
    assert meta["fingerprint"] == dataset.fingerprint


def test_entity_facts_are_merged_once(graph: GraphClient, dataset: Dataset) -> None:
    # ML-100K has no entity-to-entity facts: write one between two of its entities, the
    # way a triples.csv catalogue's ingest does, twice (MERGE: one relationship).
    head, tail = dataset.triples.entity_id.iloc[0], dataset.triples.entity_id.iloc[-1]
    row = {"head_id": head, "type": "TEST_BASED_IN", "tail_id": tail}
    try:
        for _ in range(2):
            graph.query("ingest_entity_triples", rows=[row])
            assert graph.counts()["entity_facts"] == 1
    finally:  # the session's graph must stay the dataset's (test_counts_equal_the_dataset)
        graph.driver.execute_query("MATCH (:Entity)-[r:TEST_BASED_IN]->(:Entity) DELETE r")
    assert graph.counts() == expected_counts(dataset)


def test_second_ingest_changes_nothing(graph: GraphClient, dataset: Dataset) -> None:
    before = graph.counts()
    graph.ingest(dataset, progress=False)
    assert graph.counts() == before


def test_interrupted_ingest_is_completed_by_a_rerun(graph: GraphClient, dataset: Dataset,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # What a killed ingest leaves: the incomplete mark and part of the ratings.
    graph._run_autocommit("clear_interactions")
    graph.query("set_meta", key="ingest", props={"complete": False})
    real_query = GraphClient.query
    calls = {"n": 0}

    def failing(self, name, **params):
        if name == "ingest_interactions":
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("simulated crash mid-ingest")
        return real_query(self, name, **params)

    monkeypatch.setattr(GraphClient, "query", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        graph.ingest(dataset, progress=False)
    monkeypatch.undo()
    partial = graph.counts()["interactions"]
    assert 0 < partial < len(dataset.interactions)
    assert graph.meta()["complete"] is False
    assert "did not finish" in graph.holds(dataset, "full")
    graph.ingest(dataset, progress=False)
    assert graph.counts() == expected_counts(dataset)
    assert graph.meta()["complete"] is True


def test_split_ingest_keeps_held_out_items_out_and_serving_refuses_it(
        graph: GraphClient, dataset: Dataset, settings, artifacts) -> None:
    """A graph holding another split than the served build is refused with the fix named
    (it once served rated items silently); the full graph is restored even on failure."""
    from rag_rec.recommender import Recommender

    split = leave_last_out_split(dataset)
    try:
        graph.ingest(dataset, split, progress=False)
        assert graph.counts() == expected_counts(dataset, len(split.train))
        assert graph.meta()["split"] == "loo"
        for row in split.test.head(20).itertuples():
            history = {h["item_id"] for h in graph.user_history(row.user_id)}
            assert row.item_id not in history
        with Recommender.from_settings(settings, use_llm=False) as rec:
            with pytest.raises(GraphMismatch, match="holds split 'loo'.*rag-rec graph ingest`"):
                rec.recommend("42", k=5, explain=False)
    finally:
        graph.ingest(dataset, progress=False)
    assert graph.counts() == expected_counts(dataset)
    assert graph.holds(dataset, "full") is None


def test_user_history(graph: GraphClient, dataset: Dataset) -> None:
    rows = graph.user_history("1", limit=10_000)
    expected = dataset.interactions[dataset.interactions.user_id == "1"]
    assert len(rows) == len(expected) == 272
    assert {r["item_id"] for r in rows} == set(expected.item_id)
    stamps = [r["timestamp"] for r in rows]
    assert stamps == sorted(stamps, reverse=True)


def test_kg_path_candidates(graph: GraphClient, dataset: Dataset) -> None:
    seen = set(dataset.interactions[dataset.interactions.user_id == "1"].item_id)
    rows = graph.query("kg_path_candidates", user_id="1", max_entity_degree=200, limit=50)
    assert len(rows) == 50
    assert not seen & {r["item_id"] for r in rows}
    assert all(r["paths"] >= 1 and r["relations"] for r in rows)
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_facts_are_readable_triples_with_stable_ids(graph: GraphClient) -> None:
    facts = graph.candidate_facts(["326"], {"89": 5.0}, per_candidate=10)["326"]
    texts = {f.text for f in facts}
    assert ("(G.I. Jane)-[directed_by]->(Ridley Scott)<-[directed_by]-(Blade Runner)"
            in texts)
    again = graph.candidate_facts(["326"], {"89": 5.0}, per_candidate=10)["326"]
    assert [f.id for f in facts] == [f.id for f in again]
    assert len({f.id for f in facts}) == len(facts)


def test_item_facts(graph: GraphClient) -> None:
    rows = graph.query("item_facts", item_id="183")
    assert rows[0]["title"] == "Alien"
    assert {r["relation"] for r in rows} == {"has_genre", "released_in_decade"}
    assert graph.query("item_facts", item_id="nope") == []


@pytest.mark.parametrize("evil", [
    "1' OR 1=1 //", '1"}) MATCH (n) DETACH DELETE n //', "1}) RETURN 1 UNION MATCH (n) RETURN n",
    "$user_id", "`x`", "' ; DROP CONSTRAINT user_id ; //",
])
def test_injection_shaped_ids_are_harmless(graph: GraphClient, dataset: Dataset,
                                           evil: str) -> None:
    before = graph.counts()
    assert graph.user_history(evil) == []
    assert graph.query("kg_path_candidates", user_id=evil, max_entity_degree=200,
                       limit=5) == []
    assert graph.query("item_facts", item_id=evil) == []
    assert graph.candidate_facts([evil], {evil: 5.0}) == {evil: []}
    assert graph.counts() == before


def test_unknown_query_name_lists_the_valid_ones(graph: GraphClient) -> None:
    with pytest.raises(ValueError, match="valid: .*user_history"):
        graph.query("drop_everything")
    assert "user_history" in QUERIES


def test_no_server_error_names_the_uri(settings: Settings) -> None:
    remote = GraphSettings(uri="bolt://127.0.0.1:1", password="whatever")
    with pytest.raises(GraphUnavailable, match=r"bolt://127\.0\.0\.1:1.*NEO4J_URI"):
        GraphClient(remote, settings.home)
    bundled = settings.graph.model_copy(update={"uri": None, "bolt_port": 2})
    with pytest.raises(GraphUnavailable, match=r"bolt://127\.0\.0\.1:2.*rag-rec graph start"):
        GraphClient(bundled, settings.home, autostart=False)


@pytest.mark.integration  # starts a bundled Neo4j of its own
def test_bundled_server_restarts_on_its_own_store(settings: Settings, tmp_path) -> None:
    import socket

    from rag_rec.graph import BundledNeo4j

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    own = settings.graph.model_copy(update={"uri": None, "bolt_port": port, "password": None})
    server = BundledNeo4j(own, tmp_path)
    try:
        for _ in range(2):  # the second start finds the password already set
            server.start()
            with GraphClient(own, tmp_path, autostart=False) as client:
                assert client.counts()["items"] == 0
            assert server.stop()
        assert oct((tmp_path / "neo4j" / "password").stat().st_mode & 0o777) == "0o600"
    finally:
        server.stop()
