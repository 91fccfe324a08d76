"""The generic catalogue format (docs/data-format.md): the reader, the validator's errors
on planted faults (each kind, all reported at once, no traceback), the refusals on data
without ratings or timestamps, and examples/catalogue (a shop: no ratings, no timestamps)
through build and recommend with the in-memory graph."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rag_rec.data import load_dataset, make_split
from rag_rec.data.generic import parse
from rag_rec.data.validate import validate
from rag_rec.errors import DataError, InvalidRequest
from rag_rec.settings import DataSettings, Settings

EXAMPLE = Path(__file__).parents[1] / "examples" / "catalogue"


def _load(folder: Path):
    return load_dataset(DataSettings(source=folder), folder)


def _write(folder: Path, **files: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = folder / name.replace("_csv", ".csv").replace("_toml", ".toml")
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return folder


def test_the_example_reads_with_its_meta_and_facts() -> None:
    ds = _load(EXAMPLE)
    stats = ds.stats()
    assert (ds.name, stats["users"], stats["items"], stats["interactions"]) == (
        "shop", 40, 30, 290)
    meta = ds.meta
    assert meta.item_noun == "product" and not meta.has_ratings and not meta.has_timestamps
    assert meta.rating_scale is None and meta.like_threshold is None
    assert meta.relation_phrases["made_by"] == "made by {tail}"
    # Item-to-entity facts join the item triples; entity-to-entity facts their own frame.
    assert {"made_by", "made_of", "has_genre"} <= set(ds.triples.relation)
    assert ("entity:Nordweave", "based_in", "entity:Norway") in set(
        ds.entity_triples.itertuples(index=False, name=None))
    assert ds.entities.loc["entity:Nordweave", "kind"] == "brand"
    item = ds.item("p01")
    assert item.genres == ("clothing", "summer") and item.abstract.startswith("A breathable")
    # Without ratings every interaction is a positive at the top of the stand-in scale.
    assert set(ds.interactions.rating) == {meta.top_rating}


def test_ratings_timestamps_and_scale_from_dataset_toml(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "books",
        dataset_toml='name = "books"\nitem_noun = "book"\n[ratings]\nscale = [1, 10]\n'
                     'like_threshold = 8\n',
        items_csv="item_id,title,year\nb1,Emma,1815\nb2,Persuasion,1817\nb3,Dracula,1897\n",
        interactions_csv="user_id,item_id,rating,timestamp\n"
                         "u1,b1,9,2020-01-01T10:00:00\nu1,b2,3,2020-01-02T10:00:00Z\n"
                         "u1,b3,10,1577960000\n",
    )
    ds = _load(folder)
    assert ds.meta.rating_scale == (1.0, 10.0) and ds.meta.like_threshold == 8.0
    assert ds.meta.has_timestamps and ds.meta.item_noun == "book"
    assert list(ds.interactions.timestamp) == [1577872800, 1577959200, 1577960000]
    split = make_split(ds, "loo")  # timestamps exist: leave-last-out is allowed
    assert list(split.test.item_id) == ["b3"]


def test_leave_last_out_is_refused_without_timestamps() -> None:
    ds = _load(EXAMPLE)
    with pytest.raises(DataError, match="leave-last-out needs timestamps.*kfold"):
        make_split(ds, "loo")
    assert len(make_split(ds, "kfold0").test)  # k-fold needs no time


FAULTS = {
    "dataset_toml": 'name = "broken"\ncolour = "red"\n',
    "items_csv": "item_id,title,year,colour,hidden\ni1,One,2001,red,TRUE\n"
                 "i2,Two,20x1,blue,maybe\ni1,One again,2002,red,\n",
    "users_csv": "user_id,age\nu1,31\nu1,32\n",
    "interactions_csv": "user_id,item_id,timestamp,rating\n"
                        "u1,i1,1600000000,4\nu1,i9,1600000001,5\nu2,i2,yesterday,3\n"
                        "u3,i2,1600000002,lots\nu1,i1,1600000003,2\n",
    "triples_csv": "head,relation,tail\ni1,made_by,Acme\nghost,made_by,Acme\n"
                   "Acme,based_in,Oslo\ni2,bad relation,X\n",
}


def test_every_planted_fault_is_reported_with_its_line(tmp_path: Path) -> None:
    folder = _write(tmp_path / "broken", **FAULTS)
    (folder / "interactions.csv").write_bytes(
        (folder / "interactions.csv").read_bytes() + b"u4,i2,1600000004,4 \xff\n")
    checked = validate(folder)
    text = "\n".join(checked.problems)
    expected = [
        "dataset.toml: unknown key 'colour'",
        "items.csv:3: bad year '20x1'",
        "items.csv:3: bad hidden 'maybe'",
        "items.csv:4: duplicate item_id 'i1' (first at line 2)",
        "users.csv:3: duplicate user_id 'u1' (first at line 2)",
        "interactions.csv:3: unknown item 'i9'",
        "interactions.csv:4: bad timestamp 'yesterday'",
        "interactions.csv:5: bad rating 'lots'",
        "interactions.csv:6: user 'u1' rated item 'i1' again (first at line 2)",
        "interactions.csv:7: not valid UTF-8: byte 0xff",
        "triples.csv:3: head 'ghost' is neither an item_id",
        "triples.csv:5: relation 'bad relation' must be a name",
    ]
    for line in expected:
        assert line in text, f"{line!r} not reported in:\n{text}"
    assert len(checked.problems) == len(expected)
    assert checked.stats["hidden_items"] == 1  # i1's TRUE; i2's "maybe" is a problem
    assert "items.csv:1: column 'colour' is ignored" in "\n".join(checked.warnings)
    # Loading refuses the folder, naming its problems.
    with pytest.raises(DataError, match="unknown item 'i9'"):
        _load(folder)


def test_missing_columns_files_and_scale(tmp_path: Path) -> None:
    folder = _write(tmp_path / "cols", dataset_toml="[ratings]\nscale = [1, 5]\n",
                    items_csv="item_id,name\ni1,One\n",
                    interactions_csv="user,item_id,rating\nu1,i1,7\n")
    problems = "\n".join(validate(folder).problems)
    assert "items.csv:1: missing required column(s) title" in problems
    assert "interactions.csv:1: missing required column(s) user_id" in problems
    ok_items = _write(tmp_path / "scale", items_csv="item_id,title\ni1,One\n",
                      dataset_toml="[ratings]\nscale = [1, 5]\n",
                      interactions_csv="user_id,item_id,rating\nu1,i1,7\n")
    assert "interactions.csv:2: rating 7 is outside the scale [1, 5]" in "\n".join(
        validate(ok_items).problems)
    assert validate(tmp_path / "nowhere").problems


def test_cli_validate_and_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag_rec.cli import app
    from rag_rec.settings import get_settings

    home = tmp_path / "home"
    monkeypatch.setenv("RAG_REC_HOME", str(home))
    monkeypatch.delenv("RAG_REC_DATA__SOURCE", raising=False)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        broken = _write(tmp_path / "broken", **FAULTS)
        out = runner.invoke(app, ["data", "validate", str(broken)])
        assert out.exit_code == 1 and "Traceback" not in out.output
        assert "interactions.csv:3: unknown item 'i9'" in out.output
        assert "triples.csv:3: head 'ghost'" in out.output  # all of them, not the first
        refused = runner.invoke(app, ["data", "import", str(broken)])
        assert refused.exit_code == 1 and not (home / "data" / "imported.json").exists()
        ok = runner.invoke(app, ["data", "import", str(EXAMPLE)])
        assert ok.exit_code == 0, ok.output
        get_settings.cache_clear()
        assert get_settings().data.source == EXAMPLE.resolve()
    finally:
        get_settings.cache_clear()


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def shop_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The example shop in a fresh home, every training step cut short."""
    folder = tmp_path_factory.mktemp("shop") / "catalogue"
    shutil.copytree(EXAMPLE, folder)
    return Settings(home=tmp_path_factory.mktemp("shop-home"), data={"source": folder},
                    embed={"kg_epochs": 3, "kg_eval_triples": 50},
                    sources={"sasrec": {"epochs": 2, "members": 1}},
                    scorer={"epochs": 2}, like={"epochs": 2})


@pytest.fixture(scope="module")
def shop(shop_settings: Settings):
    from rag_rec import like
    from rag_rec.build import build, load_ranker
    from rag_rec.memory_graph import InMemoryGraph
    from rag_rec.recommender import Recommender

    artifacts = build(shop_settings, None, progress=False, ingest=False)
    graph = InMemoryGraph(artifacts.ds)
    with Recommender(shop_settings, artifacts, load_ranker(shop_settings, artifacts),
                     like.load_built(artifacts), connect_graph=lambda: graph, llm=None,
                     llm_error="no LLM in the fast tier") as rec:
        yield rec


def test_the_shop_builds_and_recommends_without_ratings(shop) -> None:
    history = {row["item_id"] for row in shop.graph.user_history("u01")}
    result = shop.recommend("u01", k=5)
    assert len(result.items) == 5 and not {r.item.id for r in result.items} & history
    # No ratings: P(like) is null, never invented, and the answer says why.
    assert all(r.p_like is None for r in result.items)
    assert any(f.startswith("p_like_unavailable: P(like) is unavailable") for f in result.flags)
    assert all(r.explanation is not None and r.explanation.text for r in result.items)
    # Nobody rated anything: no explanation speaks of stars or a rating.
    assert not any("star" in r.explanation.text or "rated" in r.explanation.text
                   for r in result.items)


def test_the_shop_like_step_records_why_it_was_skipped(shop) -> None:
    assert not shop.like.available
    assert "has no ratings" in shop.like.reason


def test_parse_collects_rather_than_raises(tmp_path: Path) -> None:
    folder = _write(tmp_path / "empty", items_csv="item_id,title\n",
                    interactions_csv="user_id,item_id\n")
    cat = parse(folder)
    assert any("items.csv:1: no rows" in p for p in cat.problems)
    assert any("interactions.csv:1: no rows" in p for p in cat.problems)


def test_relations_read_from_their_names_or_the_dataset() -> None:
    from rag_rec.explain.phrasing import attribute, genre_phrase
    from rag_rec.wording import speaking_of
    from rag_rec.models import Fact

    def fact(relation: str) -> Fact:
        return Fact(candidate_id="b1", candidate_title="Emma", relation=relation,
                    entity_id="entity:Jane Austen", entity_name="Jane Austen",
                    entity_kind="author", history_relation=relation, history_item_id="b2",
                    history_title="Persuasion")

    assert attribute(fact("penned_by")) == "penned by Jane Austen"  # nobody phrased it
    assert attribute(fact("has_author")) == "with author Jane Austen"
    assert attribute(fact("directed_by")) == "directed by Jane Austen"  # phrasing.toml
    assert genre_phrase("Comedy") == "a comedy film"  # MovieLens outside a dataset
    with speaking_of("book", {"penned_by": "from the pen of {tail}"}, has_ratings=True):
        assert attribute(fact("penned_by")) == "from the pen of Jane Austen"
        assert genre_phrase("Comedy") == "a comedy book"
        assert genre_phrase("adventure") == "an adventure book"
    assert attribute(fact("penned_by")) == "penned by Jane Austen"  # the block ended


def test_prompts_speak_of_the_dataset() -> None:
    from rag_rec.llm import render
    from rag_rec.models import User
    from rag_rec.wording import speaking_of

    def rerank() -> str:
        messages = render("rerank", user=User(id="1"), history=[], candidates=[], labels=["A"])
        return "\n".join(m["content"] for m in messages)

    assert "movie recommender" in rerank() and "rated (newest first, rating 1-5)" in rerank()
    with speaking_of("product", {}, has_ratings=False):
        text = rerank()
    assert "product recommender" in text and "movie" not in text.lower()
    assert "Products the user chose (newest first, no ratings: each was chosen)" in text


def test_movielens_round_trips_through_the_generic_format(tmp_path: Path) -> None:
    from rag_rec.data.export import export_generic

    tiny = Path(__file__).parent / "data" / "tiny"
    adapter = load_dataset(DataSettings(source=tiny, kg_dir=tiny / "kg"), tmp_path)
    export_generic(adapter, tmp_path / "exported")
    assert validate(tmp_path / "exported").problems == []
    generic = _load(tmp_path / "exported")
    assert generic.meta == adapter.meta
    a, g = adapter.stats(), generic.stats()
    # Entities are keyed by name in the generic format: resources sharing one merge.
    assert {k: v for k, v in g.items() if k != "entities"} == \
        {k: v for k, v in a.items() if k != "entities"}
    assert g["entities"] <= a["entities"]
    pd.testing.assert_frame_equal(generic.interactions, adapter.interactions)
    pd.testing.assert_frame_equal(generic.items, adapter.items)


def test_a_new_shopper_is_told_what_they_liked(shop) -> None:
    result = shop.recommend_new_user(liked_item_ids=["p07", "p08"], k=3)
    texts = [r.explanation.text for r in result.items]
    assert all(r.p_like is None for r in result.items)
    # They said they liked these: "liked" is true here, "chose" is for known histories.
    assert not any("chose" in t or "star" in t for t in texts), texts


def test_the_shop_filters_by_its_own_entities_and_categories(shop) -> None:
    by_brand = shop.recommend("u01", k=3, explain=False,
                              filters={"entities": {"any": ["Forgehouse"]}})
    made_by = {i for i, rel, e in shop.artifacts.ds.triples.itertuples(index=False)
               if rel == "made_by" and e == "entity:Forgehouse"}
    assert by_brand.items and {r.item.id for r in by_brand.items} <= made_by
    both = shop.recommend("u01", k=3, explain=False,
                          filters={"genres": {"all": ["kitchen", "gifts"]}})
    assert both.items and all({"kitchen", "gifts"} <= set(r.item.genres) for r in both.items)


def test_the_shop_finds_its_own_entities_by_name(shop) -> None:
    """A catalogue's own kinds (brand, material) are searched by default and by `entity`;
    MovieLens' kinds alone do not find them."""
    assert shop.search("forgehose", k=1)[0].id == "entity:Forgehouse"  # a typo
    material = shop.search("cast iron", k=3, kinds=["entity"])
    assert material[0].name == "cast iron" and material[0].kind == "material"
    assert "entity:Forgehouse" not in {m.id for m in shop.search(
        "forgehouse", k=3, kinds=["genre", "dbpedia", "category"])}


def test_the_shop_records_a_purchase_live_but_refuses_a_rating(shop) -> None:
    shown = [r.item.id for r in shop.recommend("u02", k=3).items]
    with pytest.raises(InvalidRequest, match="has no ratings"):
        shop.record_interaction("u02", shown[0], rating=4)
    assert shop.record_interaction("u02", shown[0]).outcome == "created"
    assert shown[0] not in {r.item.id for r in shop.recommend("u02", k=3).items}
