"""A chat turn, with no servers: the parser on hand-written requests, hard constraints
never broken over random combinations, soft ones, sessions that survive a restart, the
errors an assistant can act on, and one conversation through each entry point."""

from __future__ import annotations

import asyncio
import json
import random
import tomllib

import pytest
from fastapi.testclient import TestClient

from eval.chat_parser import CASES, constraint_keys, f1
from rag_rec.chat import (
    Catalogue,
    Filters,
    NameFilter,
    NameIndex,
    Parser,
    RecommendRequest,
    Years,
    plan_request,
)
from rag_rec.chat.propose import propose
from rag_rec.errors import InvalidRequest, UnknownItem, UnknownName, UnknownUser
from rag_rec.llm import JsonReply
from rag_rec.recommender import Recommender

RODRIGUEZ = "Robert Rodriguez"  # directed 3, 17 and 33 of the tiny catalogue
USER = "7"


@pytest.fixture(scope="module")
def movielens_parser(dataset):
    names = NameIndex(dataset.entities[["name", "kind"]].itertuples(),
                      dataset.items.title.to_dict())
    return Parser(names), names, Catalogue.of(dataset.items, dataset.triples, [])


def test_the_hand_written_requests_are_read_as_meant(movielens_parser) -> None:
    parser, names, catalogue = movielens_parser
    cases = tomllib.loads(CASES.read_text())["case"]
    assert len(cases) >= 40
    expected, found = [], []
    for case in cases:
        plan = plan_request(RecommendRequest(text=case["text"]), parser.parse(case["text"]),
                            names, catalogue)
        expected.append(set(case["expect"]))
        found.append(constraint_keys(plan.understood))
    precision, recall, score = f1(expected, found)
    assert score >= 0.95, (precision, recall)
    # A negation is never read as a wish: no expected "none" comes back as "any".
    for wanted, got in zip(expected, found):
        flipped = {key.replace("|none|", "|any|") for key in wanted if "|none|" in key}
        assert not flipped & got


def test_negated_words_never_reach_the_text_similarity(movielens_parser) -> None:
    parser, _, _ = movielens_parser
    parsed = parser.parse("no horror please, I hate gore")
    assert parsed.taste_text is None  # nothing positive: "horror" must not pull horror in
    assert "nothing" not in (parser.parse("a comedy, nothing with Jim Carrey").taste_text
                             or "")


def _satisfies(item, request: RecommendRequest, ds) -> bool:
    """Checked against the dataset itself, not the code under test."""
    linked = set(ds.entities.loc[ds.triples[ds.triples.item_id == item.id].entity_id,
                                 "name"])
    filters = request.filters
    for names in (filters.genres, filters.people):
        if names.any and not linked & set(names.any):
            return False
        if linked & set(names.none):
            return False
    years = filters.years
    if years.start is not None and (item.year is None or item.year < years.start):
        return False
    if years.end is not None and (item.year is None or item.year > years.end):
        return False
    return item.id not in filters.exclude_item_ids


def test_hard_constraints_hold_over_random_combinations(tiny_recommender) -> None:
    ds = tiny_recommender.artifacts.ds
    rng = random.Random(0)
    genres = sorted(ds.entities[ds.entities.kind == "genre"].name)
    people = sorted(ds.entities.loc[ds.triples[ds.triples.relation.isin(
        ["directed_by", "starring"])].entity_id.unique(), "name"])
    users = sorted(ds.interactions.user_id.unique())
    for _ in range(60):
        filters = Filters(
            genres=NameFilter(any=rng.sample(genres, rng.choice([0, 1, 2])),
                              none=rng.sample(genres, rng.choice([0, 0, 1]))),
            people=NameFilter(none=rng.sample(people, rng.choice([0, 2]))),
            years=rng.choice([Years(), Years(start=1995), Years(end=1995),
                              Years(start=1990, end=1999)]),
            exclude_item_ids=rng.sample(sorted(ds.items.index), 3))
        if set(filters.genres.any) & set(filters.genres.none):
            continue
        request = RecommendRequest(user_id=rng.choice(users), filters=filters, k=5,
                                   explain=False)
        answer = tiny_recommender.run(request)
        assert all(_satisfies(r.item, request, ds) for r in answer.items)
        matching = answer.understood.matching_items
        if len(answer.items) < 5:  # short only when the catalogue has too few left
            assert answer.notes and matching is not None


def test_a_narrow_filter_is_filled_from_the_entities_own_items(tiny_recommender) -> None:
    answer = tiny_recommender.recommend(USER, k=5, filters={"people": {"any": [RODRIGUEZ]}},
                                        explain=False)
    rated = {row["item_id"] for row in tiny_recommender.graph.user_history(USER)}
    directed = {"3", "17", "33"} - rated
    assert {r.item.id for r in answer.items} == directed
    assert len(answer.notes) == 1 and answer.notes[0].startswith(f"only {len(directed)} item")


def test_soft_preferences_move_without_excluding(tiny_recommender) -> None:
    plain = tiny_recommender.recommend(USER, k=10, explain=False)
    avoided = plain.items[0].item
    genre = avoided.genres[0]
    steered = tiny_recommender.recommend(USER, k=10, explain=False, avoid={"any": [genre]})
    ranks = {r.item.id: r.rank for r in steered.items}
    assert ranks.get(avoided.id, 11) > 1  # moved down, not necessarily out
    assert {r.item.id for r in steered.items} & {r.item.id for r in plain.items}


def test_a_text_only_request_has_real_scores_and_no_invented_rating(tiny_recommender) -> None:
    answer = tiny_recommender.recommend_new_user(text="Robert Rodriguez, no horror", k=3)
    assert {r.item.id for r in answer.items} == {"3", "33"}  # 17 is his horror film
    assert len({r.score for r in answer.items}) == 2  # ranked by real scores    assert all(r.p_next is None for r in answer.items)
    for r in answer.items:
        assert "you rated" not in r.explanation.text
        assert RODRIGUEZ in r.explanation.text  # the constraint it meets is named
    texts = [r.explanation.text for r in answer.items]
    assert len(set(texts)) == len(texts)  # no path to link, yet no sentence twice
    assert all(r.explanation.text.startswith(r.item.title) for r in answer.items)
    gore = tiny_recommender.recommend_new_user(text="no horror please, I hate gore", k=2)
    assert [(c.kind, c.mode, c.entities) for c in gore.understood.constraints] == [
        ("genres", "none", ["Horror"])]  # said twice, understood once


def test_a_session_remembers_across_turns_and_a_restart(tiny_recommender, tiny_settings,
                                                        tiny_build) -> None:
    from rag_rec.memory_graph import InMemoryGraph
    from rag_rec import like
    from rag_rec.build import load_ranker

    session = "s-restart"
    tiny_recommender.sessions.clear(session)
    first = tiny_recommender.recommend(USER, k=3, explain=False, session_id=session)
    assert first.session_id == session and "session_new" in first.flags
    second = tiny_recommender.recommend(USER, k=3, explain=False, session_id=session,
                                        text="not that one")
    shown = [r.item.id for r in first.items]
    assert not {r.item.id for r in second.items} & set(shown)
    assert any(c.origin == "session" and c.entities == [shown[0]]
               for c in second.understood.constraints)
    restarted = Recommender(tiny_settings, tiny_build, load_ranker(tiny_settings, tiny_build),
                            like.load_built(tiny_build),
                            connect_graph=lambda: InMemoryGraph(tiny_build.ds), llm=None)
    third = restarted.recommend(USER, k=3, explain=False, session_id=session,
                                text="more like the second")
    seen = set(shown) | {r.item.id for r in second.items}
    assert not {r.item.id for r in third.items} & seen
    assert second.items[1].item.id in third.understood.liked_item_ids
    fourth = restarted.recommend(USER, k=3, explain=False, session_id=session)
    assert second.items[1].item.id in fourth.understood.liked_item_ids  # remembered
    everything = seen | {r.item.id for r in third.items}
    rejected = set(fourth.understood.excluded_item_ids)  # "not that one", remembered
    assert rejected == {shown[0]}
    assert fourth.understood.already_shown == len(everything - rejected)


def test_a_session_keeps_what_the_words_asked_until_they_change_it(tiny_recommender) -> None:
    session = "s-standing"
    tiny_recommender.sessions.clear(session)
    first = tiny_recommender.recommend(USER, k=2, explain=False, session_id=session,
                                       text="a comedy, nothing with Robert Rodriguez")
    later = tiny_recommender.recommend(USER, k=2, explain=False, session_id=session,
                                       text="not that one")
    kept = {(c.kind, c.mode, tuple(c.entities), c.origin)
            for c in later.understood.constraints}
    assert ("genres", "any", ("Comedy",), "session") in kept
    assert ("people", "none", (RODRIGUEZ,), "session") in kept
    assert all("Comedy" in r.item.genres for r in first.items + later.items)
    changed = tiny_recommender.recommend(USER, k=2, explain=False, session_id=session,
                                         text="a drama instead")
    genres = {c.entities[0] for c in changed.understood.constraints if c.kind == "genres"}
    assert genres == {"Drama"}  # the new genre replaces the old; the ban on people stays
    assert any(c.kind == "people" for c in changed.understood.constraints)


def test_an_item_the_graph_knows_no_people_of_is_never_shown_under_a_ban() -> None:
    import pandas as pd

    items = pd.DataFrame({"year": [1995, 1995]}, index=["known", "unknown"])
    triples = pd.DataFrame({"item_id": ["known", "known", "unknown"],
                            "relation": ["has_genre", "starring", "has_genre"],
                            "entity_id": ["genre:Comedy", "person:x", "genre:Comedy"]})
    catalogue = Catalogue.of(items, triples, [])
    names = NameIndex([("genre:Comedy", "Comedy", "genre"), ("person:x", "Ann X", "dbpedia"),
                       ("person:y", "Bo Y", "dbpedia")], {"known": "K", "unknown": "U"})
    banned = plan_request(RecommendRequest(text="a comedy", filters={"people": {
        "none": ["Bo Y"]}}), None, names, catalogue)
    assert banned.allowed(catalogue) == {"known"} and banned.unchecked(catalogue) == 1
    plain = plan_request(RecommendRequest(text="a comedy", filters={"genres": {
        "any": ["Comedy"]}}), None, names, catalogue)
    assert plain.allowed(catalogue) == {"known", "unknown"}  # a genre is known for all


def test_errors_an_assistant_can_act_on(tiny_recommender) -> None:
    forgiven = tiny_recommender.recommend(USER, explain=False,
                                          filters={"people": {"any": ["robert rodrigues"]}})
    assert forgiven.understood.constraints[0].entities == [RODRIGUEZ]  # one letter off
    with pytest.raises(UnknownName, match="several names equally") as ambiguous:
        tiny_recommender.recommend(USER, filters={"people": {"any": ["Robert"]}})
    assert RODRIGUEZ in ambiguous.value.nearest
    with pytest.raises(UnknownName, match="not in the knowledge graph") as unknown:
        tiny_recommender.recommend(USER, filters={"people": {"any": ["Zzyzx Qqq"]}})
    assert len(unknown.value.nearest) == 5
    with pytest.raises(InvalidRequest, match="both asked for and excluded"):
        tiny_recommender.recommend(USER, text="Robert Rodriguez but no Robert Rodriguez")
    with pytest.raises(ValueError, match="both includes and excludes"):
        RecommendRequest(user_id=USER, filters={"genres": {"any": ["Comedy"],
                                                           "none": ["comedy"]}})
    with pytest.raises(ValueError, match="years.start 2000 is after years.end 1990"):
        RecommendRequest(user_id=USER, filters={"years": {"start": 2000, "end": 1990}})
    with pytest.raises(UnknownUser):
        tiny_recommender.recommend("no-such-user")
    with pytest.raises(UnknownItem):
        tiny_recommender.recommend_new_user(liked_item_ids=["nope"])
    with pytest.raises(InvalidRequest, match="no session"):
        tiny_recommender.recommend(USER, text="not that one")
    nothing = tiny_recommender.recommend(USER, explain=False, filters={
        "years": {"start": 2050}})
    assert nothing.items == [] and nothing.notes[0].startswith("no item satisfies")


class _InventingLLM:
    """Proposes a name the words never said, and one they did."""

    async def generate_json(self, messages, schema, max_tokens, temperature=0.0):
        return JsonReply(json.dumps({"want": ["Quentin Tarantino", "Bruce Willis"],
                                     "exclude": []}), "stop")


def test_an_llm_proposal_applies_only_what_the_words_and_graph_hold(tiny_recommender) -> None:
    mentions, ignored, why = asyncio.run(propose(
        _InventingLLM(), tiny_recommender.settings.llm, "something tarantino wrote",
        tiny_recommender.names))
    assert why is None
    assert [tiny_recommender.names.names[i] for m in mentions for i in m.ids] == [
        "Quentin Tarantino"]
    assert ignored == ["Bruce Willis (not in the knowledge graph)"] or ignored == [
        "Bruce Willis (not in the request)"]


def test_search_turns_titles_and_names_into_ids(tiny_recommender) -> None:
    hits = tiny_recommender.search("usual suspects", k=3)
    assert hits[0].kind == "item" and hits[0].id == "12"
    assert tiny_recommender.search("robert rodrigez", k=1)[0].name == RODRIGUEZ


def test_a_conversation_over_http(tiny_settings, tiny_recommender) -> None:
    from rag_rec.api.http import create_app

    app = create_app(tiny_settings, make_recommender=lambda _: tiny_recommender)
    with TestClient(app) as client:
        turn = client.post("/v1/recommendations", json={
            "user_id": USER, "text": "a comedy", "k": 2, "session_id": "http-1",
            "explain": False})
        body = turn.json()
        assert turn.status_code == 200 and body["understood"]["constraints"][0]["entities"] \
            == ["Comedy"]
        assert all(r["item"].get("abstract") is None for r in body["items"])
        again = client.post("/v1/recommendations", json={
            "user_id": USER, "text": "not that one", "k": 2, "session_id": "http-1",
            "explain": False}).json()
        assert body["items"][0]["item"]["id"] not in {r["item"]["id"] for r in again["items"]}
        bad = client.post("/v1/recommendations", json={"user_id": USER, "filter": {}})
        assert bad.status_code == 422 and bad.json()["error"] == "InvalidRequest"
        typo = client.post("/v1/recommendations", json={
            "user_id": USER, "explain": False, "filters": {"genres": {"any": ["thriler"]}}})
        assert typo.status_code == 200  # one letter off: forgiven
        assert typo.json()["understood"]["constraints"][0]["entities"] == ["Thriller"]
        nowhere = client.post("/v1/recommendations", json={
            "user_id": USER, "filters": {"genres": {"any": ["Polka"]}}})
        assert nowhere.status_code == 422 and "nearest" in nowhere.json()
        assert client.get("/v1/search", params={"q": "Toy Story"}).json()[0]["id"] == "1"
        assert len(client.get("/v1/items/1/similar", params={"k": 3}).json()) == 3
        assert len(client.get(f"/v1/users/{USER}/history", params={"limit": 2}).json()) == 2


def test_a_conversation_over_mcp(tiny_recommender, monkeypatch) -> None:
    from rag_rec.api import mcp

    async def ready():
        return tiny_recommender

    monkeypatch.setattr(mcp, "_ready", ready)
    tools = {tool.name: tool for tool in asyncio.run(mcp.server.list_tools())}
    schema = tools["recommend"].input_schema
    assert schema["additionalProperties"] is False
    assert "constraints" in json.dumps(schema) or "Hard constraints" in json.dumps(schema)
    assert schema["properties"]["text"]["description"].startswith("What the person asks")

    def call(name, arguments):
        return asyncio.run(mcp.server.call_tool(name, arguments))

    first = json.loads(call("recommend", {"user_id": USER, "k": 2, "explain": False,
                                          "session_id": "mcp-1"}).content[0].text)
    second = json.loads(call("recommend", {"user_id": USER, "k": 2, "explain": False,
                                           "session_id": "mcp-1",
                                           "feedback": [{"item_id": first["items"][0]["item"]["id"],
                                                         "signal": "not_interested"}]}
                             ).content[0].text)
    assert first["items"][0]["item"]["id"] not in {r["item"]["id"] for r in second["items"]}
    with pytest.raises(Exception, match="InvalidRequest: exclude: Extra inputs are not"):
        call("recommend", {"user_id": USER, "exclude": ["1"]})  # refused, not dropped
    with pytest.raises(Exception, match="InvalidRequest: k: Input should be less than or"):
        call("recommend", {"user_id": USER, "k": 1000})
    hits = json.loads(call("search", {"query": "toy story", "k": 1}).content[0].text)["hits"]
    assert hits[0]["id"] == "1"


def test_a_conversation_through_the_llamaindex_tool(tiny_recommender) -> None:
    from rag_rec.api.llamaindex import recommend_tool, search_tool

    tool = recommend_tool(tiny_recommender)
    first = asyncio.run(tool.acall(text="a comedy", user_id=USER, session_id="li-1"))
    assert "understood: any genres Comedy" in str(first)
    second = asyncio.run(tool.acall(text="not that one", user_id=USER, session_id="li-1"))
    assert "error" not in str(second)
    assert "12" in str(search_tool(tiny_recommender).call(query="usual suspects"))
