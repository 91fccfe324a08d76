"""The P(like) head's features: rating statistics and the content and co-watch
neighbourhood of a candidate in a user's history.

In: the train ratings as item rows (1 + position in the catalogue; row 0 is "unknown")
with their ratings and user rows, the fused item vectors (`ItemVectors`) and
`LikeSettings`. Out: `_Stats` (global and per-item rating statistics),
`cowatch_similarity` (item x item), `_vector_table` (unit item vectors by row) and
`_Featurizer`, which turns a (history, ratings, candidates) triple into a
(candidates, `FEATURES`) float32 matrix, never letting a candidate see its own rating.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rag_rec.settings import LikeSettings

RECENT = 10
"""History items behind the recent-mean feature."""
_NEIGHBOURHOOD = ("knn_dev", "knn_like", "sim_liked_mean", "sim_disliked_mean",
                  "sim_liked_max", "sim_disliked_max")
FEATURES = ("user_mean", "user_like", "user_count", "user_recent", "item_mean", "item_like",
            "item_count", *(f"content_{f}" for f in _NEIGHBOURHOOD),
            *(f"cowatch_{f}" for f in _NEIGHBOURHOOD))


class HasVector(Protocol):
    def vector(self, item_id: str) -> np.ndarray: ...


ItemVectors = Mapping[str, np.ndarray] | HasVector


def _vector_table(item_ids: Sequence[str], source: ItemVectors | None) -> np.ndarray:
    """Unit rows (row 0 and items without a vector: zeros) aligned with 1 + position."""
    rows = []
    for item_id in item_ids:
        if source is None:
            vec = None
        elif isinstance(source, Mapping):
            vec = source.get(item_id)
        else:
            try:
                vec = source.vector(item_id)
            except KeyError:
                vec = None
        rows.append(vec)
    dim = next((len(v) for v in rows if v is not None), 1)
    table = np.zeros((len(item_ids) + 1, dim), dtype=np.float32)
    for row, vec in enumerate(rows, start=1):
        if vec is not None:
            norm = float(np.linalg.norm(vec))
            table[row] = vec / norm if norm > 0 else 0.0
    return table


@dataclass
class _Stats:
    """Train rating statistics: global mean and like rate, and per item (row 0 unused)."""

    mu: float
    like_rate: float
    item_count: np.ndarray
    item_sum: np.ndarray
    item_likes: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray, ratings: np.ndarray, n_rows: int, threshold: float) -> _Stats:
        liked = (ratings >= threshold).astype(np.float64)
        return cls(mu=float(ratings.mean()), like_rate=float(liked.mean()),
                   item_count=np.bincount(rows, minlength=n_rows).astype(np.float64),
                   item_sum=np.bincount(rows, ratings, minlength=n_rows),
                   item_likes=np.bincount(rows, liked, minlength=n_rows))


def cowatch_similarity(rows: np.ndarray, users: np.ndarray, n_rows: int) -> np.ndarray:
    """Item-item cosine similarity of who watched what (ratings ignored), float32 with
    zero diagonal. It says nothing about how a pair was rated, so training features built
    on it do not leak the label. Dense: fine for MovieLens-sized catalogues (a sparse or
    factorised form would replace it past ~30k items)."""
    n_users = int(users.max()) + 1 if len(users) else 1
    watched = np.zeros((n_users, n_rows), dtype=np.float32)
    watched[users, rows] = 1.0
    watched /= np.maximum(np.linalg.norm(watched, axis=0, keepdims=True), 1e-12)
    sim = watched.T @ watched
    np.fill_diagonal(sim, 0.0)
    return sim.astype(np.float16).astype(np.float32)  # as saved: fit and load agree


class _Featurizer:
    """Dense features of (history, candidates), leaving a candidate's own rating out."""

    def __init__(self, vectors: np.ndarray, cowatch: np.ndarray, stats: _Stats,
                 settings: LikeSettings):
        self.vectors = vectors
        self.cowatch = cowatch
        self.stats = stats
        self.cfg = settings

    def __call__(self, hist: np.ndarray, ratings: np.ndarray, cand: np.ndarray, *,
                 causal: bool = False) -> np.ndarray:
        """(len(cand), len(FEATURES)) for a history of item rows (oldest first) with their
        ratings. A candidate that is itself in the history never sees its own rating;
        `causal` (training, `cand` is `hist`): each pair sees only the ratings before it,
        as serving sees only the past."""
        stats, cfg, shrink = self.stats, self.cfg, self.cfg.shrink
        n_cand, n_hist = len(cand), len(hist)
        liked = (ratings >= cfg.threshold).astype(np.float64)
        pos = {int(row): p for p, row in enumerate(hist)}
        own = np.array([pos.get(int(c), -1) for c in cand], dtype=np.int64)
        inside = own >= 0
        own_r = np.where(inside, ratings[np.maximum(own, 0)] if n_hist else 0.0, 0.0)
        own_like = ((own_r >= cfg.threshold) & inside).astype(np.float64)
        if causal:
            valid = np.tri(n_cand, n_hist, -1, dtype=bool)
        else:
            valid = np.ones((n_cand, n_hist), dtype=bool)
            valid[np.flatnonzero(inside), own[inside]] = False

        n_seen = valid.sum(1)
        user_mean = (valid @ ratings + shrink * stats.mu) / (n_seen + shrink)
        user_like = (valid @ liked + shrink * stats.like_rate) / (n_seen + shrink)
        if causal or inside.any():
            from_end = np.cumsum(valid[:, ::-1], axis=1)[:, ::-1]
            recent = valid & (from_end <= RECENT)
        else:  # serving: every candidate sees the whole history
            recent = np.zeros((n_cand, n_hist), dtype=bool)
            recent[:, -RECENT:] = True
        user_recent = (recent @ ratings + 3 * user_mean) / (recent.sum(1) + 3)

        item_n = stats.item_count[cand] - inside
        item_mean = (stats.item_sum[cand] - own_r + shrink * stats.mu) / (item_n + shrink)
        item_like = ((stats.item_likes[cand] - own_like + shrink * stats.like_rate)
                     / (item_n + shrink))

        hoods = [np.zeros((n_cand, len(_NEIGHBOURHOOD)))] * 2
        if n_hist:
            dev = ratings[None, :] - user_mean[:, None]
            hoods = [self._neighbourhood(sim, valid, dev, liked, user_like)
                     for sim in (self.vectors[cand] @ self.vectors[hist].T,
                                 self.cowatch[np.ix_(cand, hist)])]
        return np.column_stack([
            user_mean - stats.mu, user_like - stats.like_rate, np.log1p(n_seen),
            user_recent - user_mean,
            item_mean - stats.mu, item_like - stats.like_rate, np.log1p(item_n), *hoods,
        ]).astype(np.float32)

    def _neighbourhood(self, sim: np.ndarray, valid: np.ndarray, dev: np.ndarray,
                       liked: np.ndarray, user_like: np.ndarray) -> np.ndarray:
        """`_NEIGHBOURHOOD` features of one similarity (candidates x history)."""
        cfg = self.cfg
        top = min(cfg.neighbours, sim.shape[1])
        masked = np.where(valid, sim, -np.inf)
        idx = np.argpartition(-masked, top - 1, axis=1)[:, :top]
        near = np.take_along_axis(masked, idx, 1)
        weight = np.exp((near - near.max(1, keepdims=True, initial=-1e9,
                                          where=np.isfinite(near))) / cfg.temperature)
        weight = np.where(np.isfinite(near), weight, 0.0)
        weight /= np.maximum(weight.sum(1, keepdims=True), 1e-12)
        knn_dev = (weight * np.take_along_axis(dev, idx, 1)).sum(1)
        knn_like = (weight * liked[idx]).sum(1) - user_like
        out = [knn_dev, knn_like]
        for group in (liked > 0, liked == 0):
            mask = valid & group[None, :]
            count = mask.sum(1)
            out.append(np.where(mask, sim, 0.0).sum(1) / np.maximum(count, 1))
            out.append(np.where(count > 0, np.where(mask, sim, -1.0).max(1, initial=-1.0), 0.0))
        return np.column_stack(out)
