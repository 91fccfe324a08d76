"""The attention scorer on a slice of the real data: it learns, calibration helps, and
checkpoints are checked against the build they belong to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag_rec.errors import StaleArtifact
from rag_rec.scorer import Featurizer, Scorer, ece, fit_temperature, scorer_dir, sigmoid, train
from rag_rec.settings import ScorerSettings

# Random negatives only: a separable slice a few epochs can learn (hard negatives, the
# default, are what the full training adds).
CFG = ScorerSettings(epochs=6, positives_per_user=10, hard_share=0.0)


@pytest.fixture(scope="module")
def trained(artifacts):
    users = {str(u) for u in range(1, 201)}
    feat = Featurizer(artifacts, CFG)
    model, temperature, report, valid = train(feat, CFG, users=users, progress=False)
    return Scorer(feat, model, temperature, report.__dict__), report, valid


def test_scorer_learns_a_real_slice(trained) -> None:
    _, report, _ = trained
    assert report.valid_auc > 0.7, report
    assert report.train_samples == 200 * 10 * (1 + CFG.negatives)


def test_temperature_scaling_lowers_ece(trained) -> None:
    _, report, (logits, labels) = trained
    assert report.brier_after <= report.brier_before + 1e-4
    probs = 1 / (1 + np.exp(-logits))
    assert ece(probs, labels) == pytest.approx(report.ece_before, abs=1e-4)
    # The scorer's own logits are nearly calibrated already; an over-confident version of
    # them shows what the temperature repairs.
    sharp = logits * 4
    t = fit_temperature(sharp, labels)
    assert t > 2.0
    before = ece(1 / (1 + np.exp(-sharp)), labels)
    after = ece(1 / (1 + np.exp(-sharp / t)), labels)
    assert after < 0.5 * before


def test_probabilities_are_finite_and_ordered(trained, dataset) -> None:
    scorer, _, _ = trained
    history = [(i.item_id, i.rating) for i in dataset.history("42")]
    candidates = ["89", "326", "1", "50", "1500"]
    probs = scorer.probabilities(history, "42", candidates)
    assert probs.shape == (5,) and np.isfinite(probs).all()
    assert ((0 <= probs) & (probs <= 1)).all()
    assert scorer.probabilities([], None, candidates).shape == (5,)  # cold user


def test_checkpoint_round_trip_and_mismatch(trained, artifacts, dataset, tmp_path: Path) -> None:
    scorer, _, _ = trained
    scorer.save(tmp_path)
    loaded = Scorer.load(tmp_path, artifacts)
    history = [(i.item_id, i.rating) for i in dataset.history("7")]
    np.testing.assert_allclose(loaded.probabilities(history, "7", ["1", "2", "3"]),
                               scorer.probabilities(history, "7", ["1", "2", "3"]), rtol=1e-5)
    meta = json.loads((tmp_path / "scorer.json").read_text())
    meta["fingerprint"] = "another-build"
    (tmp_path / "scorer.json").write_text(json.dumps(meta))
    with pytest.raises(StaleArtifact, match="does not match.*rag-rec build"):
        Scorer.load(tmp_path, artifacts)
    (tmp_path / "model.pt").write_bytes(b"garbage")
    with pytest.raises(StaleArtifact, match="missing or corrupt"):
        Scorer.load(tmp_path, artifacts)


def test_nan_features_never_reach_the_output(trained, dataset) -> None:
    scorer, _, _ = trained
    history = [(i.item_id, i.rating) for i in dataset.history("42")]
    saved = scorer.model.features.clone()
    try:
        scorer.model.features[1:5] = float("nan")
        probs = scorer.probabilities(history, "42", ["1", "2", "3", "4", "50"])
    finally:
        scorer.model.features.copy_(saved)
    assert np.isfinite(probs).all() and ((0 <= probs) & (probs <= 1)).all()


def test_build_calibrates_on_candidate_lists(settings, artifacts, dataset) -> None:
    """The build's scorer is Platt-scaled on retrieval's candidates against held-out
    items: the temperature alone (fitted on 1:4 sampled negatives) overstates the chance
    of a candidate list's item by far, the Platt scaling does not."""
    scorer = Scorer.load(scorer_dir(artifacts, settings.scorer), artifacts, settings.scorer)
    r = scorer.report
    assert scorer.platt is not None and r["candidate_pairs"] >= 150 * 50
    assert r["candidate_ece_platt"] < 0.5 * r["candidate_ece_temperature"]
    assert r["candidate_ece_platt"] <= 0.02
    history = [(i.item_id, i.rating) for i in dataset.history("42")]
    served = scorer.probabilities(history, "42", ["1", "50", "100"])
    tempered = sigmoid(scorer.logits(history, "42", ["1", "50", "100"], on_candidates=False))
    assert served.mean() < tempered.mean()
