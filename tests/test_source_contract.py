"""The contract every candidate source keeps, in the shape of implicit's
`TestRecommenderBaseMixin`: each name in `source_resolver` is fit on a tiny synthetic
catalogue built here from arrays (no build, no Neo4j, no LLM) and must score every item
for every query, leave an item added after the fit at -inf unless it reads content,
survive save and load, ignore unknown history items, and fit the same twice under a
seed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rag_rec.index import ItemIndex
from rag_rec.settings import IndexSettings, RetrievalSettings, SourceSettings, updated
from rag_rec.sources import CandidateSource, Catalogue, Query, make_source, source_resolver

NAMES = ["ease", "ials", "sasrec", "markov", "faiss", "kg_path", "popular"]
FALLBACK = "ease-fallback"
"""EASE past `sources.ease.max_items`: implicit's BM25 neighbours in its place."""
CASES = NAMES + [FALLBACK]
CONTENT = {"faiss", "kg_path"}
"""Sources that score an item added after the fit from its vector or KG links."""
SEEDED = {"ials", "sasrec"}
"""Sources whose fit draws at random, so another seed gives other scores."""
N_USERS, N_ITEMS, TEXT_DIM, KG_DIM = 40, 30, 8, 8
SETTINGS = updated(SourceSettings(), {
    "ials": {"factors": (4, 8), "iterations": 3},
    "sasrec": {"d": 8, "max_len": 8, "epochs": 2, "eval_every": 1, "crop": 3,
               "crop_keep": 2, "batch": 16},
})
"""Small enough to fit in well under a second each; SASRec keeps two members and crops."""
FALLBACK_SETTINGS = updated(SETTINGS, {"ease": {"max_items": N_ITEMS - 1,
                                                "fallback_neighbours": 10}})
RETRIEVAL = RetrievalSettings()
INDEX = IndexSettings()


@pytest.fixture(autouse=True)
def one_thread():
    """Multi-threaded float sums change order between runs (see test_sources.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _interactions(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, tune): 8-15 distinct items a user, each user's latest one to tune on."""
    rows = []
    for u in range(N_USERS):
        items = rng.choice(N_ITEMS, size=rng.integers(8, 16), replace=False)
        rows += [(f"u{u}", f"i{i}", float(rng.integers(1, 6)), t) for t, i in enumerate(items)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    tune = inter.sort_values("timestamp").groupby("user_id").tail(1)
    return inter.drop(tune.index), tune


def _catalogue(rng: np.random.Generator) -> Catalogue:
    ids = [f"i{i}" for i in range(N_ITEMS)]
    index = ItemIndex(TEXT_DIM + KG_DIM, INDEX, n_expected=N_ITEMS)
    index.add(ids, rng.normal(size=(N_ITEMS, TEXT_DIM + KG_DIM)).astype(np.float32))
    # Every item shares a genre with a fifth of the catalogue: every history has paths.
    triples = pd.DataFrame(
        [(i, "has_genre", f"genre:{n % 5}") for n, i in enumerate(ids)]
        + [(i, "directed_by", f"person:{n % 7}") for n, i in enumerate(ids)],
        columns=["item_id", "relation", "entity_id"])
    return Catalogue(item_ids=index.ids, index=index, triples=triples, kg_dim=KG_DIM)


@pytest.fixture
def world() -> tuple[Catalogue, pd.DataFrame, pd.DataFrame, list[Query]]:
    """A fresh catalogue (tests add items to it), train and tune, and one query per
    user: their train history."""
    rng = np.random.default_rng(0)
    train, tune = _interactions(rng)
    ordered = train.sort_values(["user_id", "timestamp"])
    queries = [Query(list(zip(g.item_id, g.rating))) for _, g in ordered.groupby("user_id")]
    return _catalogue(rng), train, tune, queries


def _make(name: str, catalogue: Catalogue, settings: SourceSettings = SETTINGS
          ) -> CandidateSource:
    if name == FALLBACK:
        settings = updated(settings, {"ease": FALLBACK_SETTINGS.ease.model_dump()})
        return make_source("ease", catalogue, settings, RETRIEVAL)
    return make_source(name, catalogue, settings, RETRIEVAL)


def _fit(name: str, world, settings: SourceSettings = SETTINGS) -> CandidateSource:
    catalogue, train, tune, _ = world
    source = _make(name, catalogue, settings)
    report = source.fit(train, tune)
    assert isinstance(report, dict)
    return source


def test_the_resolver_knows_every_source_by_its_configured_name() -> None:
    assert sorted(cls.name for cls in source_resolver) == sorted(NAMES)
    assert sorted(NAMES) == sorted(SourceSettings().enabled)
    for name in NAMES:
        assert source_resolver.lookup(name).name == name
    with pytest.raises(KeyError, match="valid: ease, faiss, ials, kg_path, markov"):
        source_resolver.make("eas", catalogue=Catalogue([]))


@pytest.mark.parametrize("name", CASES)
def test_scores_cover_the_catalogue(name: str, world) -> None:
    catalogue, _, _, queries = world
    scores = _fit(name, world).scores(queries)
    assert scores.shape == (len(queries), N_ITEMS) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    assert (scores.std(1) > 0).all() or name == "popular"  # not a constant row
    assert (scores[0] == scores[1:]).all() == (name == "popular")  # one row for all


@pytest.mark.parametrize("name", CASES)
def test_an_item_added_after_the_fit(name: str, world) -> None:
    catalogue, _, _, queries = world
    source = _fit(name, world)
    before = source.scores(queries)
    catalogue.index.add(["new"], np.ones((1, TEXT_DIM + KG_DIM), np.float32))
    source.add_item("new", ["genre:0"])  # the genre of every fifth item: paths lead to it
    after = source.scores(queries)
    assert after.shape == (len(queries), N_ITEMS + 1)
    if name in CONTENT:
        assert np.isfinite(after[:, -1]).all()
    else:
        assert np.isneginf(after[:, -1]).all()
        np.testing.assert_array_equal(after[:, :-1], before)  # the others unchanged


@pytest.mark.parametrize("name", CASES)
def test_save_and_load_reproduce_the_scores(name: str, world, tmp_path: Path) -> None:
    catalogue, _, _, queries = world
    source = _fit(name, world)
    source.save(tmp_path)
    back = _make(name, catalogue)
    back.load(tmp_path)
    np.testing.assert_allclose(back.scores(queries), source.scores(queries), rtol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_unknown_history_items_are_ignored(name: str, world) -> None:
    _, _, _, queries = world
    source = _fit(name, world)
    known = queries[0].history
    mixed = [("nope", 5.0)] + known[:2] + [("also-nope", 1.0)] + known[2:]
    got = source.scores([Query(mixed), Query([("nope", 5.0)])])
    np.testing.assert_allclose(got[0], source.scores([Query(known)])[0], rtol=1e-6)
    assert got.shape == (2, N_ITEMS)
    # Nothing known to score from: only popularity has an answer.
    assert np.isfinite(got[1]).all() if name == "popular" else np.isneginf(got[1]).all()


@pytest.mark.parametrize("name", CASES)
def test_a_seed_fixes_the_fit(name: str, world) -> None:
    queries = world[3]
    runs = [_fit(name, world).scores(queries) for _ in range(2)]
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5, atol=1e-6)
    other = _fit(name, world, updated(SETTINGS, {"seed": 7})).scores(queries)
    assert np.allclose(other, runs[0], rtol=1e-5, atol=1e-6) == (name not in SEEDED)


def test_ease_past_its_limit_fits_neighbours_and_says_so(world, caplog) -> None:
    catalogue, train, tune, queries = world
    source = _make(FALLBACK, catalogue)
    report = source.fit(train, tune)
    assert report["fallback"] == "bm25 item-item, K=10" and "max_items" in report["why"]
    assert "tuning_ndcg@10" in report and "BM25 item-item" in caplog.text
    assert source.item_weights.diagonal().sum() == 0  # no item recommends itself
    dense = make_source("ease", catalogue, SETTINGS, RETRIEVAL)
    dense.fit(train, tune)
    assert isinstance(dense.item_weights, np.ndarray)
    # Both find what co-occurs: their top items for a user overlap well beyond chance.
    top = [np.argsort(-s.scores(queries), axis=1)[:, :5] for s in (source, dense)]
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(*top)])
    assert overlap > 5 / N_ITEMS * 2


def test_sasrec_epochs_are_bounded_by_gradient_steps(world) -> None:
    """A large catalogue's epochs are many small ones': `max_steps` caps the early-stopped
    member's epochs at the steps it allows, and never raises `epochs`."""
    catalogue, train, tune, _ = world
    cfg = SETTINGS.sasrec
    lengths = train.groupby("user_id").size()
    span = cfg.max_len + 1
    windows = sum(math.ceil((n - 1) / (span - 1)) for n in lengths)
    crops = sum(n >= cfg.crop_keep + cfg.crop + 2 for n in lengths)
    steps = math.ceil((windows + crops) / cfg.batch)
    for max_steps, cap in [(3 * steps + 1, 3), (1, 1), (10**6, 20)]:
        settings = updated(SETTINGS, {"sasrec": {"epochs": 20, "patience": 100,
                                                 "max_steps": max_steps, "members": 1}})
        report = _make("sasrec", catalogue, settings).fit(train, tune)
        assert (report["epoch_cap"], report["epochs_run"]) == (cap, cap), max_steps


def test_kg_paths_follow_a_known_items_new_links(world) -> None:
    """An item written again with other links (a live update) leaves its built links: paths
    from it lead where its new entities lead, at once."""
    catalogue, _, _, _ = world
    source = _fit("kg_path", world)
    query = [Query([("i0", 5.0)])]  # i0: genre:0 and person:0, built
    col = source.column
    shares_genre0 = [col[f"i{n}"] for n in range(5, N_ITEMS, 5)]
    shares_genre1 = [col[f"i{n}"] for n in range(1, N_ITEMS, 5)]
    assert (source.scores(query)[0, shares_genre0] > 0).all()
    source.add_item("i0", ["genre:1"])
    after = source.scores(query)[0]
    assert (after[shares_genre1] > 0).all()
    assert (after[[c for c in shares_genre0 if c % 7]] == 0).all()  # nor via person:0
    assert len(source.column) == N_ITEMS  # known: no new column
