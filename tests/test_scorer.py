"""The attention scorer as a stacker, from the suite's build: it learns from the sources'
lists, calibration helps, attention is readable, checkpoints are checked against the
build they belong to, and NaN never reaches a score."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rag_rec.build import load_ranker, scorer_sources
from rag_rec.errors import StaleArtifact
from rag_rec.retrieve import Retriever
from rag_rec.scorer import Scorer, sigmoid
from rag_rec.sources import Query
from rag_rec.steps import record_step


@pytest.fixture(scope="module")
def ranker(settings, artifacts):
    return load_ranker(settings, artifacts)


@pytest.fixture(scope="module")
def retrieved(settings, artifacts, ranker, dataset):
    history = [(i.item_id, i.rating) for i in dataset.history("42")]
    retriever = Retriever(artifacts, ranker.sources, ranker.scorer.sources, settings.retrieval)
    return history, retriever.retrieve([Query(history)])[0]


def test_the_stacker_ranks_held_out_lists_at_least_as_well_as_its_best_source(ranker) -> None:
    r = ranker.scorer.report
    best = max(r["holdout_ndcg_sources"].values())
    assert r["holdout_ndcg"] >= 0.95 * best, r
    assert r["lists"] > 800 and r["holdout_rows"] > 0


def test_platt_scaling_calibrates_the_held_out_lists(ranker) -> None:
    r = ranker.scorer.report
    assert r["ece_after"] <= min(r["ece_before"], 0.02), r
    assert 0 < r["base_rate"] < 0.2


def test_probabilities_are_finite_and_attention_reads_the_history(ranker, retrieved) -> None:
    history, r = retrieved
    z = ranker.scorer.logits(history, "42", r)
    assert z.shape == (len(r.items),) and np.isfinite(z).all()
    weights = ranker.scorer.attention(history, r.items[:5])
    for item in r.items[:5]:
        w = weights[item]
        assert set(w) <= {i for i, _ in history}
        assert sum(w.values()) == pytest.approx(1.0, abs=1e-4)
    assert ranker.scorer.attention([], r.items[:2]) == {i: {} for i in r.items[:2]}


def test_checkpoint_round_trip_and_mismatch(settings, artifacts, ranker, retrieved,
                                            tmp_path: Path) -> None:
    history, r = retrieved
    scorer = ranker.scorer
    scorer.save(tmp_path)
    record_step(tmp_path, artifacts.steps["scorer"])
    names = scorer_sources(settings)
    loaded = Scorer.load(tmp_path, artifacts, settings.scorer, names)
    np.testing.assert_allclose(loaded.logits(history, "42", r), scorer.logits(history, "42", r),
                               rtol=1e-5)
    assert loaded.blend is not None and loaded.blend.source == scorer.blend.source
    blend = json.loads((tmp_path / "blend.json").read_text())
    (tmp_path / "blend.json").write_text(json.dumps(blend | {"source": "no-such-source"}))
    with pytest.raises(StaleArtifact, match="blend .* reads a source"):
        Scorer.load(tmp_path, artifacts, settings.scorer, names)
    (tmp_path / "blend.json").write_text("{")
    with pytest.raises(StaleArtifact, match="blend .* is corrupt"):
        Scorer.load(tmp_path, artifacts, settings.scorer, names)
    with pytest.raises(StaleArtifact, match="other feature columns .*popular.score"):
        Scorer.load(tmp_path, artifacts, settings.scorer, names[:-1])
    meta = json.loads((tmp_path / "scorer.json").read_text())
    assert meta["schema"] == list(scorer.schema.names)
    (tmp_path / "scorer.json").write_text(json.dumps(meta | {"schema": meta["schema"][:-1]}))
    with pytest.raises(StaleArtifact, match="other feature columns .*missing history.length"):
        Scorer.load(tmp_path, artifacts, settings.scorer, names)
    record_step(tmp_path, {**artifacts.steps["scorer"], "version": 0})
    with pytest.raises(StaleArtifact, match="built from other inputs.*rag-rec build"):
        Scorer.load(tmp_path, artifacts, settings.scorer, names)
    record_step(tmp_path, artifacts.steps["scorer"])
    (tmp_path / "model.pt").write_bytes(b"garbage")
    with pytest.raises(StaleArtifact, match="missing or corrupt"):
        Scorer.load(tmp_path, artifacts, settings.scorer, names)
    assert (artifacts.folder("scorer") / "step.json").exists()


def test_nan_features_never_reach_the_output(ranker, retrieved) -> None:
    history, r = retrieved
    saved = ranker.scorer.model.features.clone()
    poisoned = type(r)(r.items, r.features.copy(), r.proposed_by)
    poisoned.features[:3] = np.nan
    try:
        ranker.scorer.model.features[1:50] = float("nan")
        probs = sigmoid(ranker.scorer.logits(history, "42", poisoned))
    finally:
        ranker.scorer.model.features.copy_(saved)
    assert np.isfinite(probs).all() and ((0 <= probs) & (probs <= 1)).all()


def test_cross_fitting_folds_join_into_one_training_set() -> None:
    """Each fold's rows keep reading their own list's history: owners are offset."""
    import torch

    from rag_rec.scorer import Lists

    def lists(users: list[str], sizes: list[int], mark: int) -> Lists:
        rows = sum(sizes)
        hist = torch.full((len(users), 4), mark) + torch.arange(len(users))[:, None]
        return Lists(users, hist, torch.zeros(len(users), 2),
                     torch.repeat_interleave(torch.arange(len(users)), torch.tensor(sizes)),
                     torch.arange(rows), torch.zeros(rows, 3), torch.zeros(rows),
                     torch.zeros(rows), np.array(sizes))

    joined = Lists.concat([lists(["1", "2"], [2, 3], 10), lists(["1"], [4], 20)])
    assert joined.users == ["1", "2", "1"] and len(joined.cand) == 9
    _, hist, _, _ = joined.inputs(torch.arange(9))
    assert hist[:, 0].tolist() == [10, 10, 11, 11, 11, 20, 20, 20, 20]
    assert joined.n_pos.tolist() == [2, 3, 4]


def test_list_ndcg_ranks_each_list_alone_ties_in_row_order() -> None:
    """Lists are cut apart by owner and ranked by their own logits; the ideal counts every
    positive of the list, retrieved or not; equal logits keep their row order."""
    import torch

    from rag_rec.scorer import Lists, list_ndcg

    owner = [0, 0, 0, 1, 1, 1, 1, 2, 2]
    label = [0, 1, 0, 1, 0, 0, 1, 0, 1]
    rows = len(owner)
    lists = Lists(["a", "b", "c"], torch.zeros(3, 2), torch.zeros(3, 2), torch.tensor(owner),
                  torch.arange(rows), torch.zeros(rows, 1), torch.tensor(label, dtype=torch.float32),
                  torch.zeros(rows), np.array([1, 3, 1]))
    logits = np.array([0.9, 0.5, 0.1, 1.0, 1.0, 1.0, 1.0, 0.3, 0.2])
    d = 1 / np.log2(np.arange(2, 12))
    expected = {0: d[1] / d[0],  # its positive second
                1: (d[0] + d[3]) / d[:3].sum(),  # a tie: row order; 3 positives, 2 retrieved
                2: d[1] / d[0]}
    assert math.isclose(list_ndcg(logits, lists, np.arange(rows)), np.mean(list(expected.values())))
    # Only the rows given count, whichever lists they leave out.
    some = np.array([0, 1, 2, 7, 8])
    assert math.isclose(list_ndcg(logits[some], lists, some), (expected[0] + expected[2]) / 2)
    assert math.isclose(list_ndcg(logits[:3], lists, np.arange(3), k=1), 0.0)
