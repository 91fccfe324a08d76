"""The evaluation protocol over one split: who is tested, on what, and how a system's
scores become metrics.

In: a `Dataset` and one of its `Split`s (`rag_rec.data.make_split`), the head mass that
names the long tail. Out: a `Protocol` holding (test users x catalogue items) masks of what
each user has seen and what they go on to watch, each user's test-time history as a
`Query`, and `metrics(scores)` for any full score matrix; `rank_rows` turns a
`Recommender`'s rankings into such a matrix, `calibration` checks its `p_next`.

Every system alike trains on the split's train part, tunes on its validation items, then
ranks every catalogue item the user has not seen, with train + validation as the user's
history, and the test items' positions are read (rag_rec/metrics.py). Splits: `kfoldN`
(the published user-level 5-fold protocol, each user's latest train item as validation),
`loo` (last interaction by time; validation = the one before) and `loo-cold` (the same
with 30% of users cut to 5 train interactions: the cold slice).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from tqdm import tqdm

from rag_rec.data import Dataset, Split
from rag_rec.metrics import ndcg_per_user, ranking_metrics
from rag_rec.recommender import Recommender
from rag_rec.retrieve import head_items
from rag_rec.scorer import brier, ece, sigmoid
from rag_rec.sources import Query, histories_of

SPLITS = ("kfold0", "kfold1", "kfold2", "kfold3", "kfold4", "loo", "loo-cold")
"""Every split the evaluation runs by default, in the order the figures list them."""


@dataclass
class Protocol:
    """One split's evaluation matrices over (test users x catalogue items)."""

    split: Split
    users: list[str]
    items: list[str]
    tail: np.ndarray
    cold_rows: np.ndarray

    @cached_property
    def row(self) -> dict[str, int]:
        return {u: r for r, u in enumerate(self.users)}

    @cached_property
    def col(self) -> dict[str, int]:
        return {i: c for c, i in enumerate(self.items)}

    def _mask(self, *frames: pd.DataFrame) -> np.ndarray:
        m = np.zeros((len(self.users), len(self.items)), dtype=bool)
        for df in frames:
            df = df[df.user_id.isin(self.row)]
            m[df.user_id.map(self.row).to_numpy(), df.item_id.map(self.col).to_numpy()] = True
        return m

    @cached_property
    def seen(self) -> np.ndarray:
        """What the user already has at test time: train and validation."""
        return self._mask(self.split.train, self.split.valid)

    @cached_property
    def test(self) -> np.ndarray:
        return self._mask(self.split.test)

    @cached_property
    def queries(self) -> list[Query]:
        """Each test user's history at test time (train + validation, oldest first)."""
        histories = histories_of(pd.concat([self.split.train, self.split.valid]))
        return [Query(histories.get(u, [])) for u in self.users]

    @cached_property
    def fallback(self) -> np.ndarray:
        """The score of items a system did not rank: below every ranked item, in
        popularity order among themselves."""
        pop = self.split.train.item_id.value_counts().reindex(self.items, fill_value=0)
        base = np.log1p(pop.to_numpy(dtype=np.float64))
        return -1e6 + base / (base.max() + 1.0)

    @classmethod
    def of(cls, ds: Dataset, split: Split, head_mass: float) -> Protocol:
        users = sorted(split.test.user_id.unique())
        items = list(ds.items.index)
        counts = split.train.item_id.value_counts().to_dict()
        head = head_items({i: int(counts.get(i, 0)) for i in items}, head_mass)
        n_train = split.train.groupby("user_id").size().reindex(users, fill_value=0)
        return cls(split, users, items, np.array([i not in head for i in items]),
                   np.flatnonzero(n_train.to_numpy() <= 5))

    def metrics(self, scores: np.ndarray) -> dict:
        scores = np.where(np.isfinite(scores), scores, -1e9)
        out = {"all": ranking_metrics(scores, self.seen, self.test, self.tail),
               "ndcg_per_user": ndcg_per_user(scores, self.seen, self.test).tolist()}
        if len(self.cold_rows):
            c = self.cold_rows
            out["cold_users"] = ranking_metrics(scores[c], self.seen[c], self.test[c],
                                                self.tail)
        return out

    def ranked_rows(self, ranked: list, scores: list[np.ndarray]) -> np.ndarray:
        """Full score rows (one per ranking in `ranked`, which may cover a subset of the
        users): each ranking's candidates on top with its `scores`, the rest of the
        catalogue behind them."""
        rows = np.tile(self.fallback, (len(ranked), 1))
        for r, (result, score) in enumerate(zip(ranked, scores)):
            rows[r, [self.col[i] for i in result.items]] = 1e3 + score
        return rows

    def source_rows(self, scores: np.ndarray, ids: list[str]) -> np.ndarray:
        """A source's scores (index order `ids`) as a full row in catalogue order."""
        rows = np.tile(self.fallback, (len(self.users), 1))
        cols = [self.col[i] for i in ids]
        rows[:, cols] = np.where(np.isfinite(scores), 1e3 + scores, rows[:, cols])
        return rows


def rank_rows(rec: Recommender, proto: Protocol, chunk: int = 256
              ) -> tuple[np.ndarray, list]:
    """rag_rec's full score rows (its candidates on top, in its order) and its ranking."""
    ranked = []
    for start in tqdm(range(0, len(proto.users), chunk), desc="rank test users", unit="chunk",
                      leave=False):
        part = slice(start, start + chunk)
        ranked += rec.rank(proto.queries[part], proto.users[part])
    return proto.ranked_rows(ranked, [r.scores for r in ranked]), ranked


def calibration(proto: Protocol, ranked: list) -> dict:
    """`p_next` on the test candidate lists: is the item a test item?"""
    probs, labels, owner = [], [], []
    for r, result in enumerate(ranked):
        probs.append(sigmoid(result.logits))
        labels.append(proto.test[r, [proto.col[i] for i in result.items]])
        owner.append(np.full(len(result.items), r))
    p, y, o = np.concatenate(probs), np.concatenate(labels).astype(float), np.concatenate(owner)
    base = y.mean()

    def scores(idx: np.ndarray) -> tuple[float, float]:
        yb, pb = y[idx], np.clip(p[idx], 1e-7, 1 - 1e-7)
        rate = np.clip(yb.mean(), 1e-7, 1 - 1e-7)
        skill = 1 - brier(pb, yb) / (rate * (1 - rate))
        ll = -np.mean(yb * np.log(pb) + (1 - yb) * np.log(1 - pb))
        ll_base = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
        return skill, ll_base - ll

    rng = np.random.default_rng(0)
    users = np.unique(o)
    by_user = [np.flatnonzero(o == u) for u in users]
    boot = np.array([scores(np.concatenate([by_user[u] for u in rng.integers(
        0, len(users), len(users))])) for _ in range(200)])
    skill, gain = scores(np.arange(len(y)))
    return {"pairs": int(len(y)), "base_rate": round(float(base), 5),
            "mean_p": round(float(p.mean()), 5), "ece": round(ece(p, y), 5),
            "brier": round(brier(p, y), 5), "brier_base": round(float(base * (1 - base)), 5),
            "brier_skill": round(float(skill), 4),
            "brier_skill_ci95": [round(float(v), 4) for v in np.percentile(boot[:, 0],
                                                                           [2.5, 97.5])],
            "log_loss_gain": round(float(gain), 5),
            "log_loss_gain_ci95": [round(float(v), 5) for v in np.percentile(boot[:, 1],
                                                                             [2.5, 97.5])]}

