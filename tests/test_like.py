"""The P(like) head: it learns held-out likes, is calibrated, reads a history it never saw
(cold start), never sees the rating it predicts, and checks its saved files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from rag_rec.data import make_split
from rag_rec.errors import StaleArtifact
from rag_rec.like import LikeModel, LikeNet, _Featurizer, _Stats, _z_train, load_built
from rag_rec.settings import LikeSettings

CFG = LikeSettings(threshold=4.0)


@pytest.fixture(scope="module")
def loo(dataset):
    return make_split(dataset, "loo")


@pytest.fixture(scope="module")
def model(dataset, loo, artifacts) -> LikeModel:
    return LikeModel.fit(dataset, loo, artifacts.index, CFG)


def _history(*frames: pd.DataFrame) -> dict[str, list[tuple[str, float]]]:
    inter = pd.concat(frames).sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    return {u: list(zip(g.item_id, g.rating)) for u, g in inter.groupby("user_id")}


def test_learns_held_out_likes_with_skill(model, loo) -> None:
    history = _history(loo.train, loo.valid)
    probs = np.concatenate([model.predict(history[u], u, list(g.item_id))
                            for u, g in loo.test.groupby("user_id")])
    labels = np.concatenate([g.rating.to_numpy() >= 4 for _, g in loo.test.groupby("user_id")])
    # A user + item bias model reaches ~0.77 here (eval/results/like.json).
    assert roc_auc_score(labels, probs) > 0.79
    base = labels.mean()
    assert np.mean((probs - labels) ** 2) < 0.9 * np.mean((base - labels) ** 2)
    assert abs(probs.mean() - base) < 0.05
    assert model.report["seconds"] < 90, model.report  # ~25 s on the 2-core CPU


def test_cold_start_from_history_alone(model, dataset) -> None:
    history = [(i.item_id, i.rating) for i in dataset.history("42")]
    items = ["89", "326", "1", "50", "1500"]
    for user_id in ("42", None, "never-seen"):
        p = model.predict(history, user_id, items)
        assert p.shape == (5,) and np.isfinite(p).all() and ((0 < p) & (p < 1)).all()
    empty = model.predict([], None, items)
    assert np.isfinite(empty).all()
    # The same films rated 1 instead: the history, not the id, moves the prediction.
    hated = [(i, 1.0) for i, _ in history]
    assert model.predict(hated, None, items).mean() < model.predict(history, None, items).mean() - 0.1
    assert model.predict(history, None, ["no-such-item"]).shape == (1,)
    assert model.predict(history, None, []).shape == (0,)


def test_training_features_never_see_their_own_rating() -> None:
    """Row t of the causal training features is the same whatever rating t was (and every
    rating after it), with the item statistics rebuilt from the changed ratings."""
    rng = np.random.default_rng(0)
    n_items, cfg = 40, LikeSettings(neighbours=5, threshold=4.0)
    vectors = rng.normal(size=(n_items + 1, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cowatch = np.abs(rng.normal(size=(n_items + 1, n_items + 1))).astype(np.float32)
    hist = rng.permutation(np.arange(1, n_items + 1))[:30]
    ratings = rng.integers(1, 6, size=30).astype(float)
    # Another user's ratings of the same items make the item statistics non-trivial.
    other = rng.integers(1, 6, size=30).astype(float)

    def features(r: np.ndarray) -> np.ndarray:
        stats = _Stats.of(np.r_[hist, hist], np.r_[r, other], n_items + 1, cfg.threshold)
        # The global mean and like rate move with any rating; pin them to compare rows.
        stats.mu, stats.like_rate = 3.5, 0.55
        return _Featurizer(vectors, cowatch, stats, cfg)(hist, r, hist, causal=True)

    t = 17
    changed = ratings.copy()
    changed[t:] = 6 - changed[t:]
    a, b = features(ratings), features(changed)
    assert np.allclose(a[:t + 1], b[:t + 1])
    assert not np.allclose(a[t + 1:], b[t + 1:])  # the check can fail


def test_history_term_sees_the_past_or_the_rest_but_never_its_own_rating() -> None:
    """`past` (leave-last-out): pair t sums the terms of ratings 0..t-1 over sqrt(t);
    `rest` (k-fold): every other rating of its user over sqrt(n - 1); two users in one
    batch never mix."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = LikeNet(2, 10, 3, LikeSettings(dim=4))
    items = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    centred = torch.linspace(-1.5, 1.5, 8)
    sizes = (5, 3)
    terms = net.history_term(items, centred).detach()
    batch = torch.arange(8)
    pos = torch.tensor([p for n in sizes for p in range(n)])
    count = torch.tensor([n for n in sizes for _ in range(n)])
    with torch.no_grad():
        past = _z_train(net, batch, pos, torch.zeros(8, dtype=torch.long), (items, centred))
        rest = _z_train(net, batch, pos, count - 1 - pos, (items, centred))
    start = 0
    for n in sizes:
        mine = terms[start:start + n]
        for t in range(n):
            want_past = mine[:t].sum(0) / max(t, 1) ** 0.5
            want_rest = (mine.sum(0) - mine[t]) / (n - 1) ** 0.5
            assert torch.allclose(past[start + t], want_past, atol=1e-5)
            assert torch.allclose(rest[start + t], want_rest, atol=1e-5)
        start += n


def test_kfold_head_learns_from_the_rest_of_each_history(dataset) -> None:
    """On a k-fold split (random test ratings) `auto` trains on leave-one-out context."""
    split = make_split(dataset, "kfold0")
    small = CFG.model_copy(update={"epochs": 1, "terms": "bias"})
    assert LikeModel.fit(dataset, split, None, small).report["context"] == "rest"
    loo = make_split(dataset, "loo")
    assert LikeModel.fit(dataset, loo, None, small).report["context"] == "past"


def test_round_trip_and_stale_files(model, dataset, loo, artifacts, tmp_path: Path) -> None:
    model.save(tmp_path / "like")
    loaded = LikeModel.load(tmp_path / "like")
    history = [(i.item_id, i.rating) for i in dataset.history("7")][:-2]
    items = ["1", "50", "100", "181"]
    assert np.allclose(loaded.predict(history, "7", items), model.predict(history, "7", items),
                       atol=1e-6)
    (tmp_path / "like" / "like.json").write_text("{not json")
    with pytest.raises(StaleArtifact, match="missing or corrupt"):
        LikeModel.load(tmp_path / "like")
    with pytest.raises(StaleArtifact, match="missing or corrupt"):
        LikeModel.load(tmp_path / "nothing-here")


def test_a_checkpoint_with_the_old_parameter_names_is_stale(tiny_build, tmp_path: Path) -> None:
    """A state dict saved before the factor tables got their names (q, p, y, x) is
    refused as stale, not raised as torch's own error."""
    torch = pytest.importorskip("torch")
    load_built(tiny_build).save(tmp_path / "like")
    old = {"item_factors": "q", "user_factors": "p", "implicit_item_factors": "y",
           "rating_item_factors": "x"}
    state = torch.load(tmp_path / "like" / "like.pt", weights_only=True)
    renamed = {}
    for key, value in state.items():
        table, dot, rest = key.partition(".")
        renamed[old.get(table, table) + dot + rest] = value
    assert set(renamed) != set(state)  # the check can fail
    torch.save(renamed, tmp_path / "like" / "like.pt")
    with pytest.raises(StaleArtifact, match="missing or corrupt"):
        LikeModel.load(tmp_path / "like")
