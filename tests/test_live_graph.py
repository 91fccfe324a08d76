"""The live-write queries against the real Neo4j (integration tier: the `graph` fixture):
idempotent outcomes, a created user, links replaced with degrees kept right, hiding.
Each test removes what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rag_rec.graph import GraphClient
from rag_rec.settings import PROJECT_ROOT

USER = "live-test-user"


def _degree(graph: GraphClient, entity_id: str) -> int:
    # The stored degree itself (the candidate queries rank by it), read directly.
    return graph.driver.execute_query("MATCH (e:Entity {id: $id}) RETURN e.degree AS d",
                                      id=entity_id).records[0]["d"]


def test_record_interaction_is_idempotent_and_creates_the_user(graph: GraphClient) -> None:
    try:
        write = dict(user_id=USER, item_id="50", rating=4.0, timestamp=None, now=1_900_000_000)
        assert graph.write("record_interaction", **write)[0]["outcome"] == "created"
        again = graph.write("record_interaction", **{**write, "now": 1_900_000_500})[0]
        assert again == {"outcome": "unchanged", "timestamp": 1_900_000_000}
        assert graph.write("record_interaction", **{**write, "rating": 2.0})[0][
            "outcome"] == "updated"
        assert [(r["item_id"], r["rating"]) for r in graph.user_history(USER)] == [("50", 2.0)]
        assert graph.write("record_interaction", **{**write, "item_id": "no-such"}) == []
    finally:
        graph.query("delete_user", user_id=USER)
    assert graph.user_history(USER) == []


def test_upsert_item_replaces_its_links_and_keeps_degrees(graph: GraphClient) -> None:
    genre, other = "genre:Sci-Fi", "genre:Horror"
    studio = {"id": "entity:Live Test Studio", "name": "Live Test Studio", "kind": "entity"}
    before = {e: _degree(graph, e) for e in (genre, other)}
    entities = graph.query("counts")[0]["entities"]
    item = {"id": "live-test-item", "title": "Star Voyage", "year": 1996,
            "genres": ["Sci-Fi"], "abstract": "A space adventure."}
    try:
        graph.write("upsert_item", item=item, links=[{"type": "HAS_GENRE", "entity_id": genre}],
                    entities=[])
        assert _degree(graph, genre) == before[genre] + 1
        # The second write also creates an entity and links to it.
        graph.write("upsert_item", item={**item, "title": "Star Voyage II"},
                    links=[{"type": "HAS_GENRE", "entity_id": other},
                           {"type": "PRODUCED_BY", "entity_id": studio["id"]}],
                    entities=[studio])
        facts = graph.item_facts("live-test-item")
        assert facts[0]["title"] == "Star Voyage II"
        assert {(f["entity_id"], f["entity_name"], f["entity_kind"]) for f in facts} == {
            (other, "Horror", "genre"), (studio["id"], studio["name"], studio["kind"])}
        assert _degree(graph, studio["id"]) == 1
        assert {e: _degree(graph, e) for e in (genre, other)} == {
            genre: before[genre], other: before[other] + 1}
        assert graph.write("hide_item", item_id="live-test-item", hidden=True) == [
            {"was_hidden": False}]
        assert graph.write("hide_item", item_id="live-test-item", hidden=True) == [
            {"was_hidden": True}]
        assert graph.write("hide_item", item_id="no-such", hidden=True) == []
    finally:
        graph.query("delete_item", item_id="live-test-item")
    assert {e: _degree(graph, e) for e in (genre, other)} == before
    assert graph.query("counts")[0]["entities"] == entities  # the studio went with its item


def test_only_write_queries_go_through_write(graph: GraphClient) -> None:
    with pytest.raises(ValueError, match="not a write query"):
        graph.write("user_history", user_id=USER, limit=1)


def test_graph_status_shows_the_writes_since_the_build(graph: GraphClient) -> None:
    out = subprocess.run([sys.executable, "-m", "rag_rec.cli", "graph", "status", "--json"],
                         env={**os.environ, "RAG_REC_WRITES__RETRAIN_AFTER": "1"},
                         cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    status = json.loads(out.stdout)
    assert status["rebuild_due"] == (status["writes_since_build"] >= 1)
