"""The scorer's named feature columns, without a build, Neo4j or an LLM: the schema's
names and order, the retrieval and the featurizer writing columns by name, and a
checkpoint that records its schema and is refused by a version whose schema differs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rag_rec.errors import StaleArtifact
from rag_rec.retrieve import Retrieval, Retriever
from rag_rec.scorer import AttentionScorer, Featurizer, Scorer, _standardised
from rag_rec.scorer.features import FeatureSchema
from rag_rec.settings import RetrievalSettings, ScorerSettings, SourceSettings
from rag_rec.sources import Query
from rag_rec.steps import digest, record_step

SOURCES = ["ease", "sasrec", "kg_path"]
ITEMS = ["a", "b", "c", "d", "e", "f"]
CFG = ScorerSettings(d=8, id_dim=2, max_history=4)


def _artifacts() -> SimpleNamespace:
    """What the featurizer, the retriever and `Scorer.load` read of a build: six items
    with 3 text and 2 KG dimensions, no user KG vectors."""
    vectors = np.random.default_rng(0).normal(size=(len(ITEMS), 5)).astype(np.float32)
    index = SimpleNamespace(ids=list(ITEMS), dim=5,
                            vector=lambda item_id: vectors[ITEMS.index(item_id)])
    kg = SimpleNamespace(dim=2, of=lambda node: None)
    return SimpleNamespace(index=index, kg=kg, popularity={i: 1 for i in ITEMS},
                           key=lambda step: digest(RECORD), validation_kind="holdout",
                           rebuild="rag-rec build", split=None)


RECORD = {"step": "scorer"}
"""The scorer step's inputs, as far as these tests' fake build has any."""


def _save(scorer: Scorer, folder: Path) -> None:
    scorer.save(folder)
    record_step(folder, RECORD)  # as the build does once the checkpoint is written


def test_the_schema_names_every_source_s_score_and_rank_then_the_history() -> None:
    schema = FeatureSchema(SOURCES)
    assert schema.names == ("ease.score", "ease.rank", "sasrec.score", "sasrec.rank",
                            "kg_path.score", "kg_path.rank", "history.length")
    assert len(schema) == 7
    assert [schema.index(n) for n in schema.names] == list(range(7))
    # The retrieval writes the source columns: they come first, at the same indices.
    assert schema.indices(schema.columns()) == list(range(6))
    assert schema.columns("rank") == ("ease.rank", "sasrec.rank", "kg_path.rank")
    assert schema.columns(source="sasrec") == ("sasrec.score", "sasrec.rank")
    assert FeatureSchema(["sasrec", "ease"]).index("ease.score") == 2
    with pytest.raises(KeyError, match="no feature column 'ials.score'"):
        schema.index("ials.score")


def test_the_default_sources_give_fifteen_columns() -> None:
    schema = FeatureSchema(SourceSettings().enabled)
    assert schema.names[:4] == ("ease.score", "ease.rank", "ials.score", "ials.rank")
    assert schema.names[-3:] == ("popular.score", "popular.rank", "history.length")
    assert len(schema) == 2 * len(SourceSettings().enabled) + 1


def test_a_schema_names_how_saved_columns_differ() -> None:
    schema = FeatureSchema(["ease", "sasrec"])
    assert schema.difference(schema.names) == ""
    assert schema.difference([n for n in schema.names if n != "sasrec.rank"]) == (
        "missing sasrec.rank")
    assert schema.difference([*schema.names, "ease.popularity"]) == "extra ease.popularity"
    swapped = ["ease.rank", "ease.score", *schema.names[2:]]
    assert schema.difference(swapped) == "reordered ease.rank, ease.score"


class _Fixed:
    """A fitted source whose scores are the same for every query: item a best."""

    def scores(self, queries: list[Query]) -> np.ndarray:
        return np.tile(np.arange(len(ITEMS), 0, -1, dtype=np.float64), (len(queries), 1))


def test_the_retrieval_writes_each_source_into_its_named_columns(tmp_path: Path) -> None:
    # "popular" comes first and is not fitted: ease's columns are the second pair.
    names = ["popular", "ease"]
    settings = RetrievalSettings(budget=4, per_source=4, tail_share=0.0, cold_floor=0)
    retriever = Retriever(_artifacts(), {"ease": _Fixed()}, names, settings)
    r = retriever.retrieve([Query([("a", 5.0)])])[0]
    schema = retriever.schema
    assert schema == FeatureSchema(names) and r.features.shape == (4, 4)
    assert r.items == ["b", "c", "d", "e"]
    # Ranked among the unseen items b..f: b first.
    np.testing.assert_allclose(r.features[:, schema.index("ease.rank")],
                               1.0 / np.log2(np.arange(4) + 2.0), rtol=1e-6)
    score = r.features[:, schema.index("ease.score")]
    assert (np.diff(score) < 0).all() and score[0] > 0
    assert not r.features[:, schema.indices(schema.columns(source="popular"))].any()


def test_the_featurizer_appends_the_history_column_by_name(tmp_path: Path) -> None:
    feat = Featurizer(_artifacts(), CFG, SOURCES)
    source_features = np.arange(12, dtype=np.float32).reshape(2, 6)
    source_features[1, 0] = np.nan
    side = feat.side([("a", 4.0), ("b", 3.0), ("c", 5.0)], source_features)
    schema = feat.schema
    assert side.shape == (2, 7) and side.dtype == np.float32
    np.testing.assert_allclose(side[:, schema.index("history.length")],
                               np.log1p(3) / np.log1p(1000), rtol=1e-6)
    assert side[0, schema.index("kg_path.rank")] == 5.0
    assert side[1, schema.index("ease.score")] == 0.0  # NaN never reaches the model
    # The blend reads a source's score column by name, from either layout.
    trained = np.ones(2, dtype=bool)
    owner = np.zeros(2, dtype=int)
    for layout in (side, source_features):
        np.testing.assert_array_equal(_standardised(layout, SOURCES, "sasrec", trained, owner),
                                      [2.0, 8.0])


def _scorer() -> tuple[Scorer, SimpleNamespace]:
    artifacts = _artifacts()
    feat = Featurizer(artifacts, CFG, SOURCES)
    torch.manual_seed(0)
    model = AttentionScorer(feat.features, artifacts.kg.dim, len(feat.schema), CFG)
    return Scorer(feat, model, (0.5, -1.0), SOURCES, {"ease": 1.0}, {}), artifacts


def test_a_checkpoint_round_trip_keeps_the_schema_and_the_scores(tmp_path: Path) -> None:
    scorer, artifacts = _scorer()
    folder = tmp_path / "scorer"
    _save(scorer, folder)
    assert json.loads((folder / "scorer.json").read_text())["schema"] == list(
        scorer.schema.names)
    loaded = Scorer.load(folder, artifacts, CFG, SOURCES)
    assert loaded.schema == scorer.schema and loaded.platt == (0.5, -1.0)
    for key, value in scorer.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value)
    features = np.random.default_rng(1).normal(size=(3, 6)).astype(np.float32)
    retrieval = Retrieval(["d", "e", "f"], features, [{}, {}, {}])
    history = [("a", 5.0), ("b", 4.0)]
    expected = scorer.logits(history, None, retrieval)
    assert np.isfinite(expected).all() and len(set(expected.tolist())) == 3
    np.testing.assert_allclose(loaded.logits(history, None, retrieval), expected, rtol=1e-6)


@pytest.mark.parametrize("edit, named", [
    (lambda names: [n for n in names if n != "sasrec.rank"], "missing sasrec.rank"),
    (lambda names: [*names, "ease.popularity"], "extra ease.popularity"),
    (lambda names: [names[1], names[0], *names[2:]], "reordered ease.rank, ease.score"),
])
def test_a_checkpoint_with_another_schema_is_refused_naming_the_columns(
        tmp_path: Path, edit, named: str) -> None:
    scorer, artifacts = _scorer()
    folder = tmp_path / "scorer"
    _save(scorer, folder)
    meta = json.loads((folder / "scorer.json").read_text())
    (folder / "scorer.json").write_text(json.dumps(meta | {"schema": edit(meta["schema"])}))
    with pytest.raises(StaleArtifact, match=f"other feature columns .*{named}.*rag-rec build"):
        Scorer.load(folder, artifacts, CFG, SOURCES)


def test_a_checkpoint_from_before_schemas_is_refused(tmp_path: Path) -> None:
    scorer, artifacts = _scorer()
    folder = tmp_path / "scorer"
    _save(scorer, folder)
    meta = json.loads((folder / "scorer.json").read_text())
    del meta["schema"]
    (folder / "scorer.json").write_text(json.dumps(meta | {"n_side": 7}))
    with pytest.raises(StaleArtifact, match="saved before feature schemas.*rag-rec build"):
        Scorer.load(folder, artifacts, CFG, SOURCES)
