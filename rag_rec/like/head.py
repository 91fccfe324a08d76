"""The P(like) head as a whole: `LikeModel` (fit, predict, save, load) and `load_built`.

In: for `fit`, a `Dataset`, a `Split` (None: all data), the fused item vectors
(`ItemVectors`) and `LikeSettings`; for `load`, a folder written by `save`
(`like.pt`, `like-arrays.npz`, `like.json`). Out: a `LikeModel` whose
`predict(history, user_id, items)` returns calibrated probabilities that the user rates
each item at least `threshold`, for known users and for a history alone (cold start).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rag_rec.artifacts import Artifacts
from rag_rec.data import Dataset, Split
from rag_rec.errors import StaleArtifact
from rag_rec.like.features import (
    FEATURES,
    ItemVectors,
    _Featurizer,
    _Stats,
    _vector_table,
    cowatch_similarity,
)
from rag_rec.like.model import LikeNet
from rag_rec.like.training import (
    Histories,
    _fit_net,
    _flat_histories,
    _held_pairs,
    _ordered,
    _Pairs,
    _train_and_valid,
    _train_pairs,
)
from rag_rec.scorer import fit_platt
from rag_rec.settings import LikeSettings
from rag_rec.steps import check_step


UNAVAILABLE_FILE = "unavailable.json"


def unavailable_reason(ds: Dataset) -> str | None:
    """Why this dataset can train no P(like) head, or None when it can: P(like) needs
    ratings to say what a user liked; interactions alone (or weights such as counts)
    say what they chose, not whether they enjoyed it."""
    if ds.meta.has_ratings:
        return None
    what = "weights (implicit feedback)" if ds.meta.has_weights else "interactions only"
    return (f"P(like) is unavailable: dataset {ds.name!r} has no ratings ({what}), so "
            "nothing says whether a user liked an item")


class UnavailableLike:
    """Stands in for the head on data without ratings: every P(like) is None, never an
    invented number, and `reason` says why (answers carry it as a flag)."""

    available = False

    def __init__(self, reason: str):
        self.reason = reason

    def predict(self, history: Sequence[tuple[str, float]], user_id: str | None,
                items: Sequence[str]) -> list[None]:
        return [None] * len(items)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / UNAVAILABLE_FILE).write_text(json.dumps({"reason": self.reason}))


class LikeModel:
    """The fitted P(like) head. Build with `fit` or `load`; call `predict`."""

    available = True

    def __init__(self, net: LikeNet, items: list[str], users: list[str],
                 featurize: _Featurizer, scale: tuple[np.ndarray, np.ndarray],
                 platt: tuple[float, float], report: dict[str, Any]):
        self.net = net.eval()
        self.items = items
        self.users = users
        self.item_row = {item: row for row, item in enumerate(items, start=1)}
        self.user_row = {user: row for row, user in enumerate(users, start=1)}
        self.featurize = featurize
        self.stats = featurize.stats
        self.settings = featurize.cfg
        self.scale = scale
        self.platt = platt
        self.report = report

    # -- fitting

    @classmethod
    def fit(cls, ds: Dataset, split: Split | None, item_vectors: ItemVectors | None,
            settings: LikeSettings) -> LikeModel:
        """Train on `split.train` (None: all ratings but each user's latest), stop early
        and Platt-calibrate on the validation ratings."""
        # sklearn (and scipy behind it) take ~2 s to import: fitting needs them, serving not.
        from sklearn.metrics import log_loss, roc_auc_score

        reason = unavailable_reason(ds)
        if reason is not None:
            raise ValueError(reason)
        if settings.threshold is None:
            settings = settings.model_copy(update={"threshold": ds.meta.like_threshold})
        start = time.perf_counter()
        torch.manual_seed(settings.seed)
        rng = np.random.default_rng(settings.seed)
        train, valid, past = _train_and_valid(ds, split, settings)
        items = list(ds.items.index)
        users = sorted(train.user_id.unique())
        vectors = _vector_table(items, item_vectors)
        item_row = {item: row for row, item in enumerate(items, start=1)}
        user_row = {user: row for row, user in enumerate(users, start=1)}
        train = _ordered(train)
        t_items = train.item_id.map(item_row).to_numpy()
        t_ratings = train.rating.to_numpy(dtype=np.float64)
        stats = _Stats.of(t_items, t_ratings, len(items) + 1, settings.threshold)
        cowatch = cowatch_similarity(t_items, train.user_id.map(user_row).to_numpy(),
                                     len(items) + 1)
        featurize = _Featurizer(vectors, cowatch, stats, settings)
        histories = {user: (group.item_id.map(item_row).to_numpy(),
                            group.rating.to_numpy(np.float64))
                     for user, group in train.groupby("user_id", sort=False)}

        pairs = _train_pairs(histories, user_row, featurize, settings.threshold, past)
        held = _held_pairs(valid, histories, user_row, item_row, featurize, settings.threshold)
        mean = pairs.feats.mean(0)
        std = np.maximum(pairs.feats.std(0), 1e-6)
        scale = (mean.astype(np.float32), std.astype(np.float32))

        net = LikeNet(len(users), len(items), len(FEATURES), settings)
        with torch.no_grad():
            rate = stats.like_rate
            net.b0.fill_(float(np.log(rate / (1 - rate))))

        def held_loss() -> float:
            model = cls(net, items, users, featurize, scale, (1.0, 0.0), {})
            return log_loss(held.label, _sigmoid(model._held_logits(held, histories)),
                            labels=[0, 1])

        epochs = _fit_net(net, pairs, scale, _flat_histories(histories, stats.mu), settings,
                          rng, held_loss)
        model = cls(net, items, users, featurize, scale, (1.0, 0.0), {})
        logits = model._held_logits(held, histories)
        model.platt = fit_platt(logits, held.label)
        probs = model._calibrate(logits)
        model.report = {
            "split": split.name if split is not None else "full", "terms": settings.terms,
            "context": "past" if past else "rest",
            "train_pairs": len(pairs.label), "valid_pairs": len(held.label),
            "epochs": epochs, "valid_logloss": round(float(log_loss(held.label, probs)), 4),
            "valid_auc": round(float(roc_auc_score(held.label, logits)), 4),
            "valid_base_rate": round(float(held.label.mean()), 4),
            "seconds": round(time.perf_counter() - start, 1),
        }
        return model

    # -- serving

    def logits(self, history: Sequence[tuple[str, float]], user_id: str | None,
               items: Sequence[str]) -> np.ndarray:
        """Uncalibrated log-odds (history oldest first; unknown ids are skipped)."""
        known = [(self.item_row[item], float(rating)) for item, rating in history
                 if item in self.item_row]
        hist = np.array([row for row, _ in known], dtype=np.int64)
        ratings = np.array([rating for _, rating in known], dtype=np.float64)
        cand = np.array([self.item_row.get(item, 0) for item in items], dtype=np.int64)
        user = self.user_row.get(user_id, 0) if user_id is not None else 0
        return self._logits(np.full(len(cand), user), cand, self.featurize(hist, ratings, cand),
                            hist, ratings)

    def predict(self, history: Sequence[tuple[str, float]], user_id: str | None,
                items: Sequence[str]) -> np.ndarray:
        """Calibrated P(rating >= threshold) of each item for this user: `history` is
        their (item id, rating) list, oldest first; `user_id` None (or unknown) scores
        from the history alone."""
        if not len(items):
            return np.zeros(0)
        return self._calibrate(self.logits(history, user_id, items))

    def _calibrate(self, logits: np.ndarray) -> np.ndarray:
        a, b = self.platt
        return _sigmoid(a * logits + b)

    @torch.no_grad()
    def _logits(self, user: np.ndarray, cand: np.ndarray, feats: np.ndarray,
                hist: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        self.net.eval()
        f = torch.from_numpy((feats - self.scale[0]) / self.scale[1])
        z = None
        if self.net.full:
            if len(hist):
                terms = self.net.history_term(torch.tensor(hist),
                                              torch.tensor(ratings - self.stats.mu).float())
                total = terms.sum(0, keepdim=True)
                # A candidate in the history leaves its own term out (as in training).
                own = {int(row): pos for pos, row in enumerate(hist)}
                z = total.expand(len(cand), -1).clone()
                n = np.full(len(cand), float(len(hist)))
                for k, row in enumerate(cand):
                    if int(row) in own:
                        z[k] -= terms[own[int(row)]]
                        n[k] -= 1
                z = z / torch.from_numpy(np.sqrt(np.maximum(n, 1.0))).float()[:, None]
            else:
                z = torch.zeros(len(cand), self.net.item_factors.embedding_dim)
        out = self.net(torch.tensor(user), torch.tensor(cand), f, z)
        return out.numpy().astype(np.float64)

    def _held_logits(self, held: _Pairs, histories: Histories) -> np.ndarray:
        out = np.zeros(len(held.label))
        users = np.array(self.users)
        for user in np.unique(held.user):
            rows = np.flatnonzero(held.user == user)
            empty = (np.zeros(0, np.int64), np.zeros(0))
            # Row 0: users without train ratings (unknown to the model), empty history.
            hist, ratings = histories.get(users[user - 1], empty) if user > 0 else empty
            out[rows] = self._logits(held.user[rows], held.item[rows], held.feats[rows], hist,
                                     ratings)
        return out

    # -- persistence

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), folder / "like.pt")
        np.savez(folder / "like-arrays.npz", vectors=self.featurize.vectors,
                 cowatch=self.featurize.cowatch.astype(np.float16), scale_mean=self.scale[0],
                 scale_std=self.scale[1], item_count=self.stats.item_count,
                 item_sum=self.stats.item_sum, item_likes=self.stats.item_likes)
        (folder / "like.json").write_text(json.dumps({
            "settings": self.settings.model_dump(), "platt": self.platt,
            "mu": self.stats.mu, "like_rate": self.stats.like_rate, "items": self.items,
            "users": self.users, "features": FEATURES, "report": self.report}))

    @classmethod
    def load(cls, folder: Path) -> LikeModel:
        """The model saved in `folder` (whose build step checked its key); `StaleArtifact`
        when it is missing or corrupt."""
        fix = "rerun `rag-rec build` (it refits the P(like) head)"
        try:
            meta = json.loads((folder / "like.json").read_text())
            arrays = np.load(folder / "like-arrays.npz")
            state = torch.load(folder / "like.pt", weights_only=True)
            settings = LikeSettings(**meta["settings"])
            stats = _Stats(meta["mu"], meta["like_rate"], arrays["item_count"],
                           arrays["item_sum"], arrays["item_likes"])
            net = LikeNet(len(meta["users"]), len(meta["items"]), len(FEATURES), settings)
            net.load_state_dict(state)
            featurize = _Featurizer(arrays["vectors"], arrays["cowatch"].astype(np.float32),
                                    stats, settings)
            model = cls(net, meta["items"], meta["users"], featurize,
                        (arrays["scale_mean"], arrays["scale_std"]), tuple(meta["platt"]),
                        meta["report"])
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise StaleArtifact(f"P(like) model in {folder} is missing or corrupt "
                                f"({' '.join(str(exc).split())[:200]}); {fix}") from None
        return model


def load_built(artifacts: Artifacts) -> LikeModel | UnavailableLike:
    """The build's P(like) head for serving; `StaleArtifact` (naming the build command)
    when there is none for this data, split, item vectors and settings."""
    check_step(artifacts.folder("like"), artifacts.key("like"), artifacts.rebuild)
    skipped = artifacts.folder("like") / UNAVAILABLE_FILE
    if skipped.is_file():
        return UnavailableLike(json.loads(skipped.read_text())["reason"])
    return LikeModel.load(artifacts.folder("like"))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))
