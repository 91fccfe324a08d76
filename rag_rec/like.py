"""P(like): the chance that a user rates an item 4 or 5 if they watch it.

The ranking probability (P(next), rag_rec/scorer/) says how likely the user is to
interact with an item next; this head says whether they will enjoy it once they do. It
is trained on the observed ratings, which the next-item task throws away.

Inputs: a `Dataset`, a `Split` (None: all data), the fused text+KG item vectors (a
mapping or anything with `.vector(item_id)`, such as the build's `ItemIndex`) and
`LikeSettings`. Output: a `LikeModel` whose `predict(history, user_id, items)` returns
calibrated probabilities, for known users and for a history alone (cold start).

    logit = b0 + b_user + b_item                                 (learned biases)
          + MLP(rating statistics, content neighbourhood)        (features below)
          + q_item · (p_user + |H|^-1/2 Σ_j (y_j + (r_j - μ) x_j))   (factorization)

- rating statistics: the user's mean rating, like rate, count and recent mean (last
  10), the item's mean train rating, like rate and count, shrunk toward the global mean;
- content neighbourhood: cosine similarities between the candidate and the history's
  items in the fused space: a softmax-weighted mean of the nearest `neighbours` items'
  centred ratings and likes, and the mean and max similarity to liked and to disliked
  items;
- the factorization term reads the history itself (asymmetric SVD), so a user the model
  never saw gets one from their ratings; user ids are dropped at random in training for
  the same reason.

Training is BCE on the train ratings (label: rating >= threshold). A pair's features
never see its own rating: the statistics and the neighbourhood leave it out, as serving
never sees the rating it predicts. What else a pair sees follows the protocol
(`LikeSettings.context`): the user's earlier ratings only, as a next rating sees the past
(leave-last-out, serving), or all their other ratings, as a random held-out share of
them sees the rest (k-fold). Early stopping and Platt scaling (sklearn) use the
validation ratings: the split's `valid` (for k-fold, whose test ratings are a random share,
a random share of each user's train ratings instead), or for a build on all data each
user's latest rating, held out from training.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from rag_rec.artifacts import Artifacts
from rag_rec.data import Dataset, Split, SplitProtocol, latest_per_user
from rag_rec.errors import StaleArtifact
from rag_rec.scorer import fit_platt
from rag_rec.settings import LikeSettings
from rag_rec.steps import check_step

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
    for r, vec in enumerate(rows, start=1):
        if vec is not None:
            n = float(np.linalg.norm(vec))
            table[r] = vec / n if n > 0 else 0.0
    return table


# --------------------------------------------------------------------------- features


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
    x = np.zeros((n_users, n_rows), dtype=np.float32)
    x[users, rows] = 1.0
    x /= np.maximum(np.linalg.norm(x, axis=0, keepdims=True), 1e-12)
    sim = x.T @ x
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
        s, cfg, k = self.stats, self.cfg, self.cfg.shrink
        m, n_hist = len(cand), len(hist)
        liked = (ratings >= cfg.threshold).astype(np.float64)
        pos = {int(r): p for p, r in enumerate(hist)}
        own = np.array([pos.get(int(c), -1) for c in cand], dtype=np.int64)
        inside = own >= 0
        own_r = np.where(inside, ratings[np.maximum(own, 0)] if n_hist else 0.0, 0.0)
        own_like = ((own_r >= cfg.threshold) & inside).astype(np.float64)
        if causal:
            valid = np.tri(m, n_hist, -1, dtype=bool)
        else:
            valid = np.ones((m, n_hist), dtype=bool)
            valid[np.flatnonzero(inside), own[inside]] = False

        n = valid.sum(1)
        user_mean = (valid @ ratings + k * s.mu) / (n + k)
        user_like = (valid @ liked + k * s.like_rate) / (n + k)
        if causal or inside.any():
            from_end = np.cumsum(valid[:, ::-1], axis=1)[:, ::-1]
            recent = valid & (from_end <= RECENT)
        else:  # serving: every candidate sees the whole history
            recent = np.zeros((m, n_hist), dtype=bool)
            recent[:, -RECENT:] = True
        user_recent = (recent @ ratings + 3 * user_mean) / (recent.sum(1) + 3)

        i_n = s.item_count[cand] - inside
        i_mean = (s.item_sum[cand] - own_r + k * s.mu) / (i_n + k)
        i_like = (s.item_likes[cand] - own_like + k * s.like_rate) / (i_n + k)

        hoods = [np.zeros((m, len(_NEIGHBOURHOOD)))] * 2
        if n_hist:
            dev = ratings[None, :] - user_mean[:, None]
            hoods = [self._neighbourhood(sim, valid, dev, liked, user_like)
                     for sim in (self.vectors[cand] @ self.vectors[hist].T,
                                 self.cowatch[np.ix_(cand, hist)])]
        return np.column_stack([
            user_mean - s.mu, user_like - s.like_rate, np.log1p(n), user_recent - user_mean,
            i_mean - s.mu, i_like - s.like_rate, np.log1p(i_n), *hoods,
        ]).astype(np.float32)

    def _neighbourhood(self, sim: np.ndarray, valid: np.ndarray, dev: np.ndarray,
                       liked: np.ndarray, user_like: np.ndarray) -> np.ndarray:
        """`_NEIGHBOURHOOD` features of one similarity (candidates x history)."""
        cfg = self.cfg
        top = min(cfg.neighbours, sim.shape[1])
        masked = np.where(valid, sim, -np.inf)
        idx = np.argpartition(-masked, top - 1, axis=1)[:, :top]
        near = np.take_along_axis(masked, idx, 1)
        w = np.exp((near - near.max(1, keepdims=True, initial=-1e9,
                                     where=np.isfinite(near))) / cfg.temperature)
        w = np.where(np.isfinite(near), w, 0.0)
        w /= np.maximum(w.sum(1, keepdims=True), 1e-12)
        knn_dev = (w * np.take_along_axis(dev, idx, 1)).sum(1)
        knn_like = (w * liked[idx]).sum(1) - user_like
        out = [knn_dev, knn_like]
        for group in (liked > 0, liked == 0):
            mask = valid & group[None, :]
            count = mask.sum(1)
            out.append(np.where(mask, sim, 0.0).sum(1) / np.maximum(count, 1))
            out.append(np.where(count > 0, np.where(mask, sim, -1.0).max(1, initial=-1.0), 0.0))
        return np.column_stack(out)


# --------------------------------------------------------------------------- model


class LikeNet(nn.Module):
    """Biases + feature MLP + factorization (see the module docstring). Row/index 0 of
    every table is "unknown" and stays zero."""

    def __init__(self, n_users: int, n_items: int, n_features: int, cfg: LikeSettings):
        super().__init__()
        self.full = cfg.terms == "full"
        self.b0 = nn.Parameter(torch.zeros(()))
        self.b_user = nn.Embedding(n_users + 1, 1, padding_idx=0)
        self.b_item = nn.Embedding(n_items + 1, 1, padding_idx=0)
        for table in (self.b_user, self.b_item):
            nn.init.zeros_(table.weight)
        if self.full:
            self.mlp = nn.Sequential(nn.Linear(n_features, 32), nn.ReLU(), nn.Linear(32, 1))
            self.q = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
            self.p = nn.Embedding(n_users + 1, cfg.dim, padding_idx=0)
            self.y = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
            self.x = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
            for table in (self.q, self.p, self.y, self.x):
                nn.init.normal_(table.weight, std=0.01)
                with torch.no_grad():
                    table.weight[0] = 0

    def history_term(self, items: torch.Tensor, centred: torch.Tensor) -> torch.Tensor:
        """Σ_j y_j + c_j x_j for a flat history (its rows, centred ratings)."""
        return self.y(items) + centred[:, None] * self.x(items)

    def forward(self, user: torch.Tensor, item: torch.Tensor, feats: torch.Tensor,
                z: torch.Tensor | None) -> torch.Tensor:
        out = self.b0 + self.b_user(user)[:, 0] + self.b_item(item)[:, 0]
        if self.full:
            out = out + self.mlp(feats)[:, 0] + (self.q(item) * (self.p(user) + z)).sum(-1)
        return out


@dataclass
class _Pairs:
    """Training or evaluation pairs with their features."""

    user: np.ndarray
    item: np.ndarray
    feats: np.ndarray
    label: np.ndarray
    before: np.ndarray
    """Training pairs: how many of the user's earlier train ratings this one sees..."""
    after: np.ndarray
    """...and how many later ones (0 when it sees only the past)."""


class LikeModel:
    """The fitted P(like) head. Build with `fit` or `load`; call `predict`."""

    def __init__(self, net: LikeNet, items: list[str], users: list[str],
                 featurize: _Featurizer, scale: tuple[np.ndarray, np.ndarray],
                 platt: tuple[float, float], report: dict[str, Any]):
        self.net = net.eval()
        self.items = items
        self.users = users
        self.item_row = {i: r for r, i in enumerate(items, start=1)}
        self.user_row = {u: r for r, u in enumerate(users, start=1)}
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

        start = time.perf_counter()
        torch.manual_seed(settings.seed)
        rng = np.random.default_rng(settings.seed)
        kfold = split is not None and split.protocol is SplitProtocol.KFOLD
        past = settings.context == "past" or (settings.context == "auto" and not kfold)
        if kfold:
            # Calibrated as it is tested: on a random share of each user's ratings.
            pool = pd.concat([split.train, split.valid], ignore_index=True)
            valid = pool.groupby("user_id").sample(frac=settings.random_valid_share,
                                                   random_state=settings.seed)
            train = pool.drop(valid.index)
        elif split is not None:
            train, valid = split.train, split.valid
        else:
            valid = latest_per_user(ds.interactions)
            train = ds.interactions.drop(valid.index)
        items = list(ds.items.index)
        users = sorted(train.user_id.unique())
        vectors = _vector_table(items, item_vectors)
        item_row = {i: r for r, i in enumerate(items, start=1)}
        user_row = {u: r for r, u in enumerate(users, start=1)}
        train = _ordered(train)
        t_items = train.item_id.map(item_row).to_numpy()
        t_ratings = train.rating.to_numpy(dtype=np.float64)
        stats = _Stats.of(t_items, t_ratings, len(items) + 1, settings.threshold)
        cowatch = cowatch_similarity(t_items, train.user_id.map(user_row).to_numpy(),
                                     len(items) + 1)
        featurize = _Featurizer(vectors, cowatch, stats, settings)
        histories = {u: (g.item_id.map(item_row).to_numpy(), g.rating.to_numpy(np.float64))
                     for u, g in train.groupby("user_id", sort=False)}

        pairs = _train_pairs(histories, user_row, featurize, settings.threshold, past)
        held = _held_pairs(valid, histories, user_row, item_row, featurize, settings.threshold)
        mean = pairs.feats.mean(0)
        std = np.maximum(pairs.feats.std(0), 1e-6)
        scale = (mean.astype(np.float32), std.astype(np.float32))

        net = LikeNet(len(users), len(items), len(FEATURES), settings)
        with torch.no_grad():
            p = stats.like_rate
            net.b0.fill_(float(np.log(p / (1 - p))))
        flat = _flat_histories(histories, stats.mu)
        best, best_state, bad, epochs = np.inf, None, 0, 0
        opt = torch.optim.AdamW(net.parameters(), lr=settings.lr,
                                weight_decay=settings.weight_decay)
        t = _tensors(pairs, scale)
        for epoch in range(settings.epochs):
            net.train()
            for batch in _user_batches(pairs.user, settings.batch_size, rng):
                user, item, feats, label, before, after = (x[batch] for x in t)
                z = _z_train(net, batch, before, after, flat) if net.full else None
                if settings.user_dropout > 0:
                    user = user * (torch.rand(len(user)) >= settings.user_dropout)
                loss = nn.functional.binary_cross_entropy_with_logits(
                    net(user, item, feats, z), label)
                opt.zero_grad()
                loss.backward()
                opt.step()
            epochs = epoch + 1
            model = cls(net, items, users, featurize, scale, (1.0, 0.0), {})
            score = log_loss(held.label, _sigmoid(model._held_logits(held, histories)),
                             labels=[0, 1])
            net.train()
            if score < best - 1e-5:
                best, bad = score, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
                if bad >= settings.patience:
                    break
        net.load_state_dict(best_state)
        model = cls(net, items, users, featurize, scale, (1.0, 0.0),
                    {})
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
        known = [(self.item_row[i], float(r)) for i, r in history if i in self.item_row]
        hist = np.array([r for r, _ in known], dtype=np.int64)
        ratings = np.array([x for _, x in known], dtype=np.float64)
        cand = np.array([self.item_row.get(i, 0) for i in items], dtype=np.int64)
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
                own = {int(r): p for p, r in enumerate(hist)}
                z = total.expand(len(cand), -1).clone()
                n = np.full(len(cand), float(len(hist)))
                for k, c in enumerate(cand):
                    if int(c) in own:
                        z[k] -= terms[own[int(c)]]
                        n[k] -= 1
                z = z / torch.from_numpy(np.sqrt(np.maximum(n, 1.0))).float()[:, None]
            else:
                z = torch.zeros(len(cand), self.net.q.embedding_dim)
        out = self.net(torch.tensor(user), torch.tensor(cand), f, z)
        return out.numpy().astype(np.float64)

    def _held_logits(self, held: _Pairs, histories: dict[str, tuple[np.ndarray, np.ndarray]]
                     ) -> np.ndarray:
        out = np.zeros(len(held.label))
        users = np.array(self.users)
        for u in np.unique(held.user):
            rows = np.flatnonzero(held.user == u)
            empty = (np.zeros(0, np.int64), np.zeros(0))
            # Row 0: users without train ratings (unknown to the model), empty history.
            hist, ratings = histories.get(users[u - 1], empty) if u > 0 else empty
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


def load_built(artifacts: Artifacts) -> LikeModel:
    """The build's P(like) head for serving; `StaleArtifact` (naming the build command)
    when there is none for this data, split, item vectors and settings."""
    check_step(artifacts.folder("like"), artifacts.key("like"), artifacts.rebuild)
    return LikeModel.load(artifacts.folder("like"))


# --------------------------------------------------------------------------- helpers


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def _ordered(inter: pd.DataFrame) -> pd.DataFrame:
    return inter.sort_values(["user_id", "timestamp", "item_id"], kind="stable")


def _train_pairs(histories: dict[str, tuple[np.ndarray, np.ndarray]], user_row: dict[str, int],
                 featurize: _Featurizer, threshold: float, past: bool) -> _Pairs:
    """Every train rating as a pair, featurized from its user's earlier ratings (`past`)
    or from all their other ratings."""
    users, items, feats, labels = [], [], [], []
    for u, (hist, ratings) in histories.items():
        users.append(np.full(len(hist), user_row[u]))
        items.append(hist)
        feats.append(featurize(hist, ratings, hist, causal=past))
        labels.append(ratings)
    lengths = [len(h) for h, _ in histories.values()]
    return _pairs(users, items, feats, labels, threshold,
                  [np.arange(n) for n in lengths],
                  [np.zeros(n, np.int64) if past else np.arange(n)[::-1] for n in lengths])


def _held_pairs(held: pd.DataFrame, histories: dict[str, tuple[np.ndarray, np.ndarray]],
                user_row: dict[str, int], item_row: dict[str, int], featurize: _Featurizer,
                threshold: float) -> _Pairs:
    """Held-out ratings featurized from their user's train history."""
    users, items, feats, labels = [], [], [], []
    empty = (np.zeros(0, np.int64), np.zeros(0))
    for u, g in held.groupby("user_id", sort=False):
        hist, ratings = histories.get(u, empty)
        cand = g.item_id.map(lambda i: item_row.get(i, 0)).to_numpy(np.int64)
        users.append(np.full(len(cand), user_row.get(u, 0)))
        items.append(cand)
        feats.append(featurize(hist, ratings, cand))
        labels.append(g.rating.to_numpy(np.float64))
    zeros = [np.zeros(len(u)) for u in users]
    return _pairs(users, items, feats, labels, threshold, zeros, zeros)


def _pairs(users: list, items: list, feats: list, ratings: list, threshold: float,
           before: list, after: list) -> _Pairs:
    return _Pairs(np.concatenate(users), np.concatenate(items), np.concatenate(feats),
                  (np.concatenate(ratings) >= threshold).astype(np.float32),
                  np.concatenate(before).astype(np.int64), np.concatenate(after).astype(np.int64))


def _flat_histories(histories: dict[str, tuple[np.ndarray, np.ndarray]], mu: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every train rating's item row and centred rating, in the training pairs' order."""
    items = np.concatenate([h for h, _ in histories.values()])
    centred = np.concatenate([r - mu for _, r in histories.values()])
    return torch.from_numpy(items), torch.from_numpy(centred).float()


def _user_batches(users: np.ndarray, size: int, rng: np.random.Generator
                  ) -> list[torch.Tensor]:
    """Batches of whole users (about `size` pairs each, users in random order), each
    user's pairs contiguous and in time order, as `_z_train` needs."""
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    batches, current, count = [], [], 0
    for u in rng.permutation(len(starts)):
        current.append(np.arange(starts[u], ends[u]))
        count += ends[u] - starts[u]
        if count >= size:
            batches.append(torch.from_numpy(np.concatenate(current)))
            current, count = [], 0
    if current:
        batches.append(torch.from_numpy(np.concatenate(current)))
    return batches


def _z_train(net: LikeNet, batch: torch.Tensor, before: torch.Tensor, after: torch.Tensor,
             flat: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The history term of a batch of whole users' training pairs (rows of the flat
    train history, in time order): each pair sums the `before` items its user rated
    earlier and the `after` ones rated later, its own left out, over sqrt(their count),
    as serving sums the whole history."""
    hist_item, hist_c = flat
    terms = net.history_term(hist_item[batch], hist_c[batch]).double()
    upto = torch.cat([torch.zeros(1, terms.shape[1], dtype=terms.dtype), terms.cumsum(0)])
    local = torch.arange(len(batch))
    z = (upto[local + after + 1] - upto[local - before] - terms).float()
    return z / (before + after).clamp(min=1).float().sqrt()[:, None]


def _tensors(pairs: _Pairs, scale: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, ...]:
    feats = (pairs.feats - scale[0]) / scale[1]
    return (torch.from_numpy(pairs.user), torch.from_numpy(pairs.item),
            torch.from_numpy(feats.astype(np.float32)), torch.from_numpy(pairs.label),
            torch.from_numpy(pairs.before), torch.from_numpy(pairs.after))
