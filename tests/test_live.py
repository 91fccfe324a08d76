"""Live writes (rag_rec/live/) on the tiny build with the in-memory graph: each write's
effect on the next answer, idempotence, the journal across a restart, a failed graph
write leaving nothing behind, concurrent writes, and the HTTP routes' auth and errors.

Every test gets its own recommender (fresh artifacts, a home of its own for the journal),
so no write leaks into the shared `tiny_recommender`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr
from fastapi.testclient import TestClient

from rag_rec import like
from rag_rec.api.http import create_app
from rag_rec.artifacts import load_artifacts
from rag_rec.build import load_ranker
from rag_rec.errors import (
    GraphUnavailable,
    InvalidRequest,
    UnknownItem,
    UnknownName,
    WriteNotRecorded,
)
from rag_rec.data import load_dataset
from rag_rec.data.export import export_generic
from rag_rec.live import ItemWrite
from rag_rec.live.fold import fold_writes
from rag_rec.memory_graph import InMemoryGraph
from rag_rec.recommender import Recommender
from rag_rec.settings import PROJECT_ROOT, DataSettings, Settings

USER = "7"
TOKEN = "live-test-token"


def _serve(settings: Settings, tiny_build, graph: InMemoryGraph | None = None) -> Recommender:
    # Entities a write creates join the dataset's table in place: each recommender gets
    # its own table, so none leaks into the shared tiny build.
    ds = dataclasses.replace(tiny_build.ds, entities=tiny_build.ds.entities.copy())
    artifacts = load_artifacts(settings.model_copy(update={"home": tiny_build.home}),
                               ds=ds, text=dict(tiny_build.text))
    graph = graph or InMemoryGraph(ds)
    return Recommender(settings, artifacts, load_ranker(settings, artifacts),
                       like.load_built(artifacts), connect_graph=lambda: graph, llm=None,
                       llm_error="no LLM in the fast tier")


@pytest.fixture
def live_settings(tiny_settings: Settings, tmp_path: Path) -> Settings:
    """The tiny settings, with the journal (and sessions) in a home of this test's own:
    the build is read from the tiny home (artifacts carry it)."""
    return tiny_settings.model_copy(update={"home": tmp_path})


@pytest.fixture
def rec(live_settings: Settings, tiny_build):
    with _serve(live_settings, tiny_build) as r:
        yield r


def _top(rec: Recommender, user: str = USER, k: int = 5) -> list[str]:
    return [r.item.id for r in rec.recommend(user, k=k, explain=False).items]


def _new_item(**kw) -> ItemWrite:
    return ItemWrite(**{"id": "live-1", "title": "Star Voyage", "year": 1996,
                        "text": "A science fiction space adventure.",
                        "categories": ("Sci-Fi",), **kw})


def test_an_interaction_changes_the_next_recommendation(rec: Recommender) -> None:
    before = _top(rec)
    result = rec.record_interaction(USER, before[0], rating=5)
    assert (result.outcome, result.writes_since_build) == ("created", 1)
    assert rec.graph.user_history(USER, limit=1)[0]["item_id"] == before[0]
    after = _top(rec)
    assert before[0] not in after and after != before
    # The same write again changes nothing, and is not counted.
    assert rec.record_interaction(USER, before[0], rating=5).outcome == "unchanged"
    assert rec.record_interaction(USER, before[0], rating=3).outcome == "updated"
    assert rec.write_status().writes_since_build == 2


def test_an_unknown_user_is_created_and_bad_writes_are_refused(rec: Recommender) -> None:
    item = next(iter(rec.artifacts.items))
    assert rec.record_interaction("brand-new", item).outcome == "created"
    assert rec.graph.user_history("brand-new")[0]["rating"] == rec.live.meta.top_rating
    assert item not in _top(rec, "brand-new")
    with pytest.raises(UnknownItem, match="'no-such-item'"):
        rec.record_interaction(USER, "no-such-item")
    with pytest.raises(InvalidRequest, match="outside the catalogue's scale"):
        rec.record_interaction(USER, item, rating=11)
    assert rec.write_status().writes_since_build == 1


def test_a_new_item_is_retrievable_and_scored_at_once(rec: Recommender) -> None:
    person = rec.artifacts.ds.entities.query("kind == 'dbpedia'").iloc[0]["name"]
    result = rec.upsert_item(_new_item(facts=(("directed_by", person),)))
    assert result.outcome == "created"
    assert rec.similar_items("live-1", k=1)  # in the index, with a vector
    index = rec.artifacts.index
    assert index.search(index.vector("live-1"), 1)[0][0][0] == "live-1"
    ranked = rec.recommend_new_user(text="science fiction space adventure", k=40,
                                    explain=False)
    assert "live-1" in [r.item.id for r in ranked.items]
    assert {f.entity_name for f in rec.item_detail("live-1").facts} == {
        person, "Sci-Fi", "1990s"}  # the decade linked from the year, as in a build
    assert rec.upsert_item(_new_item(facts=(("directed_by", person),))).outcome == "unchanged"
    assert rec.upsert_item(_new_item(title="Star Voyage II")).outcome == "updated"
    assert rec.artifacts.items["live-1"].title == "Star Voyage II"
    assert rec.search("Star Voyage II", k=1, kinds=["item"])[0].id == "live-1"
    with pytest.raises(UnknownName, match="Nobody Anybody"):
        rec.upsert_item(_new_item(facts=(("directed_by", "Nobody Anybody"),)))
    assert "not a genre" in rec.upsert_item(_new_item(categories=("Cosy",))).notes[0]


def test_an_updated_items_new_links_lead_its_kg_paths_at_once(rec: Recommender) -> None:
    """A built item written again with other facts: the KG-path source drops its built
    links for the written ones, so paths from it follow them on the next request."""
    from rag_rec.sources import Query

    ds, kg_paths = rec.artifacts.ds, rec.sources["kg_path"]
    built = rec.artifacts.items[ds.triples.item_id.iloc[0]]
    own = set(ds.triples.entity_id[ds.triples.item_id == built.id])
    person = next(e for e in ds.entities.query("kind == 'dbpedia'").index if e not in own)
    sharing = set(ds.triples.item_id[ds.triples.entity_id == person]) - {built.id}
    write = ItemWrite(id=built.id, title=built.title, year=built.year,
                      categories=built.genres, text=built.abstract,
                      facts=(("directed_by", person),))
    written = {e for _, e in rec._resolve(write)[1]}
    assert own - written  # some built links are not in the write

    def paths() -> tuple[np.ndarray, set[str]]:
        row = kg_paths.item_entity[kg_paths.column[built.id]].indices
        linked = {e for e, c in kg_paths.entity_column.items() if c in set(row)}
        return kg_paths.scores([Query([(built.id, 5.0)])])[0], linked

    before, linked = paths()
    assert linked <= own
    rec.upsert_item(write)
    after, linked = paths()
    assert linked == written & set(kg_paths.entity_column)  # the built ones gone
    assert sharing and all(after[kg_paths.column[i]] > before[kg_paths.column[i]]
                           for i in sharing)


def test_a_write_creates_the_entities_it_is_told_to(rec: Recommender, live_settings: Settings,
                                                   tiny_build) -> None:
    from rag_rec.sources import Query

    studio = "Nova Pictures"
    with pytest.raises(UnknownName, match=studio):  # a misspelling stays an error
        rec.upsert_item(_new_item(facts=(("produced_by", studio),)))
    result = rec.upsert_item(_new_item(facts=(("produced_by", studio),), new_entities=True))
    assert result.outcome == "created" and result.notes == [
        f"new entity {studio!r} (entity:{studio})"]
    assert studio in {f.entity_name for f in rec.item_detail("live-1").facts}
    # Known from now on: another item names it plainly, and KG paths join the two.
    rec.upsert_item(ItemWrite(id="live-2", title="Nova Two", facts=(("produced_by", studio),)))
    kg_paths = rec.sources["kg_path"]
    assert kg_paths.scores([Query([("live-1", 5.0)])])[0, kg_paths.column["live-2"]] > 0
    assert studio not in set(tiny_build.ds.entities.name)  # the build's data untouched
    with _serve(live_settings, tiny_build) as again:  # the journal brings it back
        assert studio in {f.entity_name for f in again.item_detail("live-2").facts}
    folded, _ = fold_writes(tiny_build.ds, rec.live.journal.entries())
    linked = folded.triples[folded.triples.entity_id == f"entity:{studio}"]
    assert set(linked.item_id) == {"live-1", "live-2"}
    assert folded.entities.loc[f"entity:{studio}", "name"] == studio


def test_a_hidden_item_is_never_recommended(rec: Recommender) -> None:
    top = _top(rec)[0]
    assert rec.hide_item(top).outcome == "updated"
    assert rec.hide_item(top).outcome == "unchanged"
    assert top not in _top(rec, k=40)
    assert all(i != top for i, _ in rec.similar_items(_top(rec)[0], k=39))
    assert rec.unhide_item(top).outcome == "updated"
    assert _top(rec)[0] == top


def test_writes_folded_into_the_data_for_the_next_build(rec: Recommender,
                                                          tmp_path: Path) -> None:
    """`rag-rec data export --with-writes`: the journal's writes become a generic
    catalogue the next build reads (a new fingerprint, so its journal starts empty)."""
    ds = rec.artifacts.ds
    person = ds.entities.query("kind == 'dbpedia'").iloc[0]["name"]
    seen = ds.interactions.iloc[0]
    new_rating = 1.0 if seen.rating != 1 else 2.0
    rec.upsert_item(_new_item(facts=(("directed_by", person),)))
    rec.record_interaction("brand-new", "live-1", rating=4)
    rec.record_interaction(seen.user_id, seen.item_id, rating=new_rating)
    hidden = _top(rec)[0]
    rec.hide_item(hidden)
    folded, counts = fold_writes(ds, rec.live.journal.entries())
    assert counts == {"item": 1, "interaction": 2, "hide": 1}
    export_generic(folded, tmp_path / "folded")
    again = load_dataset(DataSettings(source=tmp_path / "folded"), tmp_path)
    assert again.fingerprint != ds.fingerprint and again.hidden == {hidden}
    ratings = {(u, i): r for u, i, r in
               again.interactions[["user_id", "item_id", "rating"]].itertuples(index=False)}
    assert len(ratings) == len(ds.interactions) + 1
    assert ratings["brand-new", "live-1"] == 4 and ratings[seen.user_id, seen.item_id] == \
        new_rating
    assert again.item("live-1").title == "Star Voyage"
    facts = again.triples.query("item_id == 'live-1'").merge(
        again.entities, left_on="entity_id", right_index=True)
    assert set(zip(facts["relation"], facts["name"])) == {
        ("directed_by", person), ("has_genre", "Sci-Fi"), ("released_in_decade", "1990s")}


def test_items_hidden_in_the_data_are_never_recommended(live_settings: Settings,
                                                        tiny_build, monkeypatch) -> None:
    with _serve(live_settings, tiny_build) as first:
        top = _top(first)[0]
    monkeypatch.setattr(tiny_build, "ds", dataclasses.replace(tiny_build.ds,
                                                              hidden=frozenset({top})))
    with _serve(live_settings, tiny_build) as rec:
        assert top not in _top(rec, k=40)
        assert rec.unhide_item(top).outcome == "updated"  # live writes still override


def test_a_restart_loses_nothing(live_settings: Settings, tiny_build) -> None:
    with _serve(live_settings, tiny_build) as first:
        item = _top(first)[0]
        first.record_interaction(USER, item, rating=4, timestamp=2_000_000_000)
        first.upsert_item(_new_item())
        first.record_interaction("brand-new", "live-1")
        first.hide_item(_top(first)[0])
        hidden, top = set(first.live.hidden), _top(first)
    # A new process: fresh artifacts, a graph that forgot everything, the same journal.
    with _serve(live_settings, tiny_build) as again:
        assert again.write_status().writes_since_build == 4
        assert again.live.hidden == hidden and "live-1" in again.artifacts.index
        assert again.graph.user_history(USER, limit=1)[0]["item_id"] == item
        assert again.graph.user_history("brand-new")[0]["item_id"] == "live-1"
        assert _top(again) == top


class FailingGraph(InMemoryGraph):
    """Neo4j going away mid-write: the transaction commits nothing."""

    def write(self, name, **params):
        raise GraphUnavailable("Neo4j at bolt://127.0.0.1:7687 went away")


def test_a_failed_graph_write_leaves_nothing_behind(live_settings: Settings,
                                                    tiny_build) -> None:
    graph = FailingGraph(tiny_build.ds)
    with _serve(live_settings, tiny_build, graph) as rec:
        before = (len(rec.artifacts.index), len(rec.artifacts.items))
        with pytest.raises(GraphUnavailable):
            rec.upsert_item(_new_item())
        with pytest.raises(GraphUnavailable):
            rec.record_interaction(USER, next(iter(rec.artifacts.items)))
        with pytest.raises(GraphUnavailable):
            rec.hide_item(next(iter(rec.artifacts.items)))
        assert (len(rec.artifacts.index), len(rec.artifacts.items)) == before
        assert "live-1" not in rec.names.titles and not rec.live.hidden
        assert rec.write_status().writes_since_build == 0
        assert not rec.live.journal.path.exists()


def test_a_journal_that_cannot_be_written_refuses_the_write(rec: Recommender,
                                                           monkeypatch) -> None:
    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rec.live.journal, "append", full)
    with pytest.raises(WriteNotRecorded, match="No space left"):
        rec.upsert_item(_new_item())
    assert "live-1" not in rec.artifacts.items and rec.write_status().writes_since_build == 0
    monkeypatch.undo()
    assert rec.upsert_item(_new_item()).outcome == "created"  # the retry goes through


def test_concurrent_writes_for_one_user_lose_nothing(rec: Recommender) -> None:
    seen = {r["item_id"] for r in rec.graph.user_history(USER)}
    items = [i for i in rec.artifacts.items if i not in seen][:16]
    threads = [threading.Thread(target=rec.record_interaction, args=(USER, i, 4.0))
               for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r["item_id"] for r in rec.graph.user_history(USER)} == seen | set(items)
    assert rec.live.journal.count() == len(items)


def test_http_writes_need_the_token(live_settings: Settings, rec: Recommender,
                                    caplog: pytest.LogCaptureFixture) -> None:
    item = next(iter(rec.artifacts.items))
    body = {"user_id": USER, "item_id": item, "rating": 4}
    with TestClient(create_app(live_settings, make_recommender=lambda _: rec)) as client:
        r = client.post("/v1/interactions", json=body)
        assert r.status_code == 403 and "writes disabled" in r.json()["detail"]
    settings = live_settings.model_copy(update={"api": live_settings.api.model_copy(
        update={"token": SecretStr(TOKEN)})})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(settings, make_recommender=lambda _: rec)) as client:
        assert client.post("/v1/interactions", json=body).status_code == 401
        with caplog.at_level(logging.INFO, logger="rag_rec.api"):
            r = client.post("/v1/interactions", json=body,
                            headers={**auth, "x-request-id": "req-live-1"})
        assert r.status_code == 200 and r.json()["outcome"] == "created", r.text
        logged = [getattr(rec_, "fields", {}) for rec_ in caplog.records
                  if rec_.getMessage() == "write"]
        assert logged == [{"request_id": "req-live-1", "kind": "interaction",
                           "id": f"{USER}/{item}", "outcome": "created"}]
        assert client.post("/v1/interactions", json=body,
                           headers=auth).json()["outcome"] == "unchanged"
        r = client.post("/v1/interactions", json={**body, "item_id": "nope"}, headers=auth)
        assert r.status_code == 404 and "'nope'" in r.json()["detail"]
        r = client.post("/v1/interactions", json={**body, "rating": 9}, headers=auth)
        assert r.status_code == 422 and "scale" in r.json()["detail"]
        r = client.put("/v1/items/live-1", headers=auth, json={
            "title": "Star Voyage", "text": "A space adventure.", "categories": ["Sci-Fi"]})
        assert r.status_code == 200 and r.json()["outcome"] == "created", r.text
        assert client.post("/v1/items/live-1/hide", headers=auth).json()["outcome"] == \
            "updated"
        assert client.post("/v1/items/nope/hide", headers=auth).status_code == 404
        assert client.post("/v1/items/live-1/unhide", headers=auth).status_code == 200
        health = client.get("/healthz", headers=auth).json()
        assert health["writes_since_build"] == 4 and health["rebuild_due"] is False


def test_a_graph_down_write_is_503(live_settings: Settings, tiny_build) -> None:
    settings = live_settings.model_copy(update={"api": live_settings.api.model_copy(
        update={"token": SecretStr(TOKEN)})})
    with _serve(live_settings, tiny_build, FailingGraph(tiny_build.ds)) as rec, \
            TestClient(create_app(settings, make_recommender=lambda _: rec)) as client:
        r = client.put("/v1/items/live-1", headers={"Authorization": f"Bearer {TOKEN}"},
                       json={"title": "Star Voyage"})
        assert r.status_code == 503 and "went away" in r.json()["detail"]
        assert "live-1" not in rec.artifacts.items


def test_mcp_offers_write_tools_only_with_a_token() -> None:
    def tools(**env: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", "import json, rag_rec.api.mcp as m; print(json.dumps("
             "sorted(t.name for t in m.server._tool_manager.list_tools())))"],
            env={**os.environ, "RAG_REC_API__TOKEN": "", **env}, cwd=PROJECT_ROOT,
            capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    assert "record_interaction" not in tools()
    assert {"record_interaction", "upsert_item", "hide_item"} <= set(
        tools(RAG_REC_API__TOKEN=TOKEN))


def test_mcp_write_tools_call_the_recommender(rec: Recommender, monkeypatch) -> None:
    from mcp.server.mcpserver.exceptions import ToolError

    from rag_rec.api import mcp

    async def ready() -> Recommender:
        return rec

    monkeypatch.setattr(mcp, "_ready", ready)
    item = next(iter(rec.artifacts.items))
    out = asyncio.run(mcp.record_interaction(user_id=USER, item_id=item, rating=4))
    assert out["outcome"] == "created"
    out = asyncio.run(mcp.upsert_item(id="live-1", title="Star Voyage", categories=["Sci-Fi"]))
    assert out["outcome"] == "created"
    assert asyncio.run(mcp.hide_item(item_id="live-1"))["outcome"] == "updated"
    assert "live-1" in rec.live.hidden
    with pytest.raises(ToolError, match="UnknownItem: unknown item id 'nope'"):
        asyncio.run(mcp.record_interaction(user_id=USER, item_id="nope"))
