"""The attention scorer: a stacker over the candidate sources, and its calibration.

Model (torch): target attention over the user's history. Every item is represented as
[text embedding ⊕ PyKEEN embedding ⊕ learned id embedding] projected to `d`; the id part
is dropped at random in training (and is zero for items added after training), so cold
items are scored from content alone. The candidate attends to the last `max_history`
history items (scaled dot product, padding masked, a learned recency position added);
[candidate, attended history, their product, user KG embedding, side features] go
through an MLP, plus a linear term on the side features, to a logit. The side features
are every source's standardised score and rank for the candidate (retrieve.py) and the
history length: the scorer learns how the history, the candidate's content and KG and
the sources' signals interact, instead of averaging the sources.

Training (as a stacker, without leakage; the build runs it): the sources are fit on the
train interactions minus a per-user *ranker slice* (`ranker_slice`), they produce
candidate lists for each user from the rest, labelled by the slice (once per cross-
fitting fold, each with its own slice and sources: more lists to learn from); the scorer
learns on whole lists with BCE (every candidate, not a few sampled negatives), early-
stopping on NDCG@10 of a held-out share of users' lists. The slice matches the protocol:
the latest items (what comes next) or a random share (k-fold). Last, the blend (`Blend`)
sets the best source's final weight and the Platt calibration on lists for validation
items that neither the scorer nor those sources learnt from (`validation`). The
calibrated probability `p_next` is therefore "the chance that this candidate is among what
the user interacts with next" — not a like probability.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from rag_rec.artifacts import Artifacts, validation_kind
from rag_rec.embed import user_node
from rag_rec.errors import StaleArtifact
from rag_rec.retrieve import FEATURES_PER_SOURCE, Retrieval, Retriever
from rag_rec.settings import ScorerSettings
from rag_rec.sources import Query


class AttentionScorer(nn.Module):
    def __init__(self, item_features: torch.Tensor, user_kg_dim: int, n_side: int,
                 cfg: ScorerSettings):
        super().__init__()
        self.cfg = cfg
        # Row 0 is padding; content features are fixed, ids are learned.
        self.register_buffer("features", item_features)
        self.ids = nn.Embedding(len(item_features), cfg.id_dim, padding_idx=0)
        self.project = nn.Linear(item_features.shape[1] + cfg.id_dim, cfg.d)
        self.positions = nn.Embedding(cfg.max_history, cfg.d)
        self.user = nn.Linear(user_kg_dim, cfg.d)
        self.mlp = nn.Sequential(
            nn.Linear(4 * cfg.d + n_side, 128), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(128, 1))
        # The sources' signals also enter linearly: the scorer starts from a blend of
        # them and the MLP learns the interactions on top.
        self.skip = nn.Linear(n_side, 1, bias=False)

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        ids = self.ids(items)
        if self.training and self.cfg.id_dropout > 0:
            keep = torch.rand(ids.shape[:-1] + (1,), device=ids.device) >= self.cfg.id_dropout
            ids = ids * keep
        # project([content ⊕ id]) split in two: the content part is projected once per
        # catalogue item, not once per (sample, history position): ~10x less work.
        f = self.features.shape[1]
        w = self.project.weight
        content = self.features @ w[:, :f].T + self.project.bias
        return content[items] + ids @ w[:, f:].T

    def attention(self, cand: torch.Tensor, hist: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(candidate vectors, history vectors, attention weights (B, L)): which history
        items each candidate's score looked at (explanations read the weights)."""
        c = self.embed(cand)                                        # (B, d)
        mask = hist > 0                                             # (B, L)
        h = self.embed(hist) + self.positions.weight[None, :hist.shape[1]]
        scores = (h @ c.unsqueeze(-1)).squeeze(-1) / math.sqrt(self.cfg.d)
        scores = scores.masked_fill(~mask, -1e9)
        return c, h, torch.softmax(scores, dim=-1) * mask.any(-1, keepdim=True)

    def forward(self, cand: torch.Tensor, hist: torch.Tensor, user_kg: torch.Tensor,
                side: torch.Tensor) -> torch.Tensor:
        c, h, attn = self.attention(cand, hist)
        a = (attn.unsqueeze(-1) * h).sum(1)
        x = torch.cat([c, a, c * a, self.user(user_kg), side], dim=-1)
        return self.mlp(x).squeeze(-1) + self.skip(side).squeeze(-1)


# --------------------------------------------------------------------------- features


class Featurizer:
    """Turns (history, candidates with their source features) into the scorer's
    tensors, from one build's artifacts."""

    def __init__(self, artifacts: Artifacts, cfg: ScorerSettings):
        self.a = artifacts
        self.cfg = cfg
        self.item_ids = list(artifacts.index.ids)
        self.row = {i: r + 1 for r, i in enumerate(self.item_ids)}  # 0 = padding
        dim = artifacts.index.dim
        # Ablations zero one half of the fused [text ⊕ KG] vectors (and the user's KG
        # vector with the KG half), everywhere the scorer reads them.
        text_dim = dim - artifacts.kg.dim
        self.mask = np.ones(dim, dtype=np.float32)
        self.mask[:text_dim] = float(cfg.use_text)
        self.mask[text_dim:] = float(cfg.use_kg)
        feats = np.zeros((len(self.item_ids) + 1, dim), dtype=np.float32)
        self.trained = np.zeros(len(self.item_ids) + 1, dtype=bool)
        """Per feature row: the item has train interactions (row 0, padding and items added
        since the build: no), so the sources' scores speak for it."""
        for item_id, r in self.row.items():
            feats[r] = artifacts.index.vector(item_id) * self.mask
            self.trained[r] = artifacts.popularity.get(item_id, 0) > 0
        self.features = torch.from_numpy(feats)

    def user_kg(self, user_id: str | None) -> np.ndarray:
        vec = self.a.kg.of(user_node(user_id)) if user_id and self.cfg.use_kg else None
        return vec if vec is not None else np.zeros(self.a.kg.dim, dtype=np.float32)

    def history_rows(self, history: list[tuple[str, float]]) -> list[int]:
        """The last `max_history` known history items, newest first (position 0)."""
        known = [i for i, _ in history if i in self.row][-self.cfg.max_history:]
        return [self.row[i] for i in reversed(known)]

    @staticmethod
    def side_width(n_sources: int) -> int:
        """Columns of `side` for `n_sources` sources: their features and the length."""
        return FEATURES_PER_SOURCE * n_sources + 1

    def side(self, history: list[tuple[str, float]], source_features: np.ndarray) -> np.ndarray:
        length = np.full((len(source_features), 1), np.log1p(len(history)) / np.log1p(1000),
                         dtype=np.float32)
        return np.nan_to_num(np.concatenate([source_features, length], axis=1),
                             nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def batch(self, history: list[tuple[str, float]], user_id: str | None,
              r: Retrieval) -> tuple[torch.Tensor, ...]:
        """Tensors for one user's history (oldest first) against the retrieved candidates."""
        rows = self.history_rows(history)
        hist = torch.zeros(len(r.items), self.cfg.max_history, dtype=torch.long)
        if rows:
            hist[:, :len(rows)] = torch.tensor(rows)
        cand = torch.tensor([self.row.get(i, 0) for i in r.items])
        user = torch.from_numpy(np.tile(self.user_kg(user_id), (len(r.items), 1)))
        return cand, hist, user, torch.from_numpy(self.side(history, r.features))


# --------------------------------------------------------------------------- calibration


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error over `bins` equal-mass bins."""
    order = np.argsort(probs)
    total = 0.0
    for part in np.array_split(order, bins):
        if len(part):
            total += len(part) * abs(probs[part].mean() - labels[part].mean())
    return float(total / len(probs))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((probs - labels) ** 2))


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Platt scaling (a, b): P(label) = sigmoid(a * logit + b), by logistic regression."""
    from sklearn.linear_model import LogisticRegression  # fitting only: serving skips it

    fit = LogisticRegression(C=1e6).fit(logits.reshape(-1, 1), labels)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def reliability_diagram(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path,
                        bins: int = 15) -> None:
    """Predicted vs observed frequency per equal-mass bin, on linear axes and on log axes
    (candidate lists have base rates near 0.004, invisible on the linear panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
    for ax, log in zip(axes, (False, True)):
        low = 1e-4 if log else 0.0
        ax.plot([low, 1], [low, 1], "k:", label="perfect")
        for name, (probs, labels) in curves.items():
            parts = np.array_split(np.argsort(probs, kind="stable"), bins)
            ax.plot([probs[p].mean() for p in parts], [labels[p].mean() for p in parts],
                    "o-", label=f"{name} (ECE {ece(probs, labels, bins):.3f})")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel("predicted probability" + (" (log)" if log else ""))
        ax.set_ylabel("observed frequency" + (" (log)" if log else ""))
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- training


def _slice_folds(train: pd.DataFrame, cfg: ScorerSettings) -> tuple[pd.DataFrame, np.ndarray]:
    """(train sorted by user and time, each row's cross-fitting fold; -1: in no slice)."""
    ordered = train.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    ordered = ordered.reset_index(drop=True)
    users = ordered.groupby("user_id", sort=False)
    size = users.user_id.transform("size").to_numpy()
    room = np.maximum(size - 3, 0) // cfg.slice_folds  # every user keeps three to fit on
    if cfg.slice == "latest":
        rank = users.cumcount(ascending=False).to_numpy()
        n = np.minimum(cfg.slice_latest, room)
    else:
        draw = pd.Series(np.random.default_rng(cfg.seed).random(len(ordered)))
        rank = draw.groupby(ordered.user_id.to_numpy()).rank(method="first").to_numpy() - 1
        n = np.minimum(np.floor(cfg.slice_share * size), room)
    fold = np.where(rank < n * cfg.slice_folds, rank // np.maximum(n, 1), -1)
    return ordered, fold.astype(int)


def ranker_slice(train: pd.DataFrame, cfg: ScorerSettings, fold: int = 0
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(what the sources fit on, the slice the scorer learns on) for cross-fitting fold
    `fold` of `cfg.slice_folds`: per user, the latest `slice_latest` train items before
    those of the earlier folds (which the sources do not see either: they come after
    the slice), or the fold's disjoint random `slice_share` of them; every user keeps at
    least three items to fit on. Deterministic under `cfg.seed`."""
    ordered, folds = _slice_folds(train, cfg)
    fit = folds != fold
    if cfg.slice == "latest":
        fit &= (folds < 0) | (folds > fold)
    return ordered[fit].reset_index(drop=True), ordered[folds == fold].reset_index(drop=True)


def unsliced(train: pd.DataFrame, cfg: ScorerSettings) -> pd.DataFrame:
    """The train interactions in no fold's slice: what the KG embeddings learn from."""
    ordered, folds = _slice_folds(train, cfg)
    return ordered[folds < 0].reset_index(drop=True)


@dataclass
class Lists:
    """The stacker's training data: one candidate list per user, rows flattened."""

    users: list[str]
    hist: torch.Tensor
    """(lists, max_history) history rows, newest first."""
    user_kg: torch.Tensor
    owner: torch.Tensor
    """(rows,) the list each row belongs to."""
    cand: torch.Tensor
    side: torch.Tensor
    label: torch.Tensor
    calibration: torch.Tensor
    """(rows,) what `p_next` is calibrated to: the slice's first item (latest) or all of it."""
    n_pos: np.ndarray
    """(lists,) the user's slice items, retrieved or not (NDCG's ideal)."""

    @classmethod
    def concat(cls, parts: list[Lists]) -> Lists:
        """The lists of every cross-fitting fold as one set (a user may own several)."""
        if len(parts) == 1:
            return parts[0]
        offsets = np.cumsum([0] + [len(p.users) for p in parts[:-1]])
        return cls([u for p in parts for u in p.users],
                   torch.cat([p.hist for p in parts]), torch.cat([p.user_kg for p in parts]),
                   torch.cat([p.owner + int(o) for p, o in zip(parts, offsets)]),
                   *(torch.cat([getattr(p, f) for p in parts])
                     for f in ("cand", "side", "label", "calibration")),
                   np.concatenate([p.n_pos for p in parts]))

    def inputs(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        owner = self.owner[rows]
        return self.cand[rows], self.hist[owner], self.user_kg[owner], self.side[rows]


def make_lists(feat: Featurizer, retriever: Retriever, histories: dict[str, list],
               targets: pd.DataFrame, calibrate_on: pd.DataFrame, *, progress: bool = False,
               chunk: int = 128, exclude: dict[str, set[str]] | None = None) -> Lists:
    """Each target user's candidates given their history, labelled by `targets` (and by
    `calibrate_on` for the calibration); never an item of `exclude[user]`."""
    wanted = targets.groupby("user_id").item_id.agg(set).to_dict()
    calibrated = calibrate_on.groupby("user_id").item_id.agg(set).to_dict()
    users = [u for u in sorted(wanted) if histories.get(u)]
    hist, user_kg, owner, cand, side, label, calib, n_pos = [], [], [], [], [], [], [], []
    bar = tqdm(total=len(users), desc="candidate lists", unit="user", disable=not progress,
               leave=False)
    for start in range(0, len(users), chunk):
        part = users[start:start + chunk]
        for user_id, r in zip(part, retriever.retrieve(
                [Query(histories[u]) for u in part],
                [exclude.get(u, set()) for u in part] if exclude else None)):
            k = len(owner)
            rows = feat.history_rows(histories[user_id])
            hist.append(rows + [0] * (feat.cfg.max_history - len(rows)))
            user_kg.append(feat.user_kg(user_id))
            owner.append(np.full(len(r.items), k))
            cand.append([feat.row.get(i, 0) for i in r.items])
            side.append(feat.side(histories[user_id], r.features))
            label.append([i in wanted[user_id] for i in r.items])
            calib.append([i in calibrated.get(user_id, ()) for i in r.items])
            n_pos.append(len(wanted[user_id]))
        bar.update(len(part))
    bar.close()
    return Lists(users, torch.tensor(hist), torch.from_numpy(np.stack(user_kg)),
                 torch.from_numpy(np.concatenate(owner)),
                 torch.tensor(np.concatenate(cand)), torch.from_numpy(np.concatenate(side)),
                 torch.tensor(np.concatenate(label), dtype=torch.float32),
                 torch.tensor(np.concatenate(calib), dtype=torch.float32), np.array(n_pos))


@torch.no_grad()
def predict(model: AttentionScorer, lists: Lists, rows: np.ndarray,
            batch: int = 8192) -> np.ndarray:
    model.eval()
    rows = torch.from_numpy(rows)
    return torch.cat([model(*lists.inputs(rows[i:i + batch]))
                      for i in range(0, len(rows), batch)]).numpy()


def list_ndcg(logits: np.ndarray, lists: Lists, rows: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k of the lists that `rows` cover, ranked by `logits`; the ideal counts
    every slice item, retrieved or not (the same number a full ranking would give)."""
    owner = lists.owner.numpy()[rows]
    labels = lists.label.numpy()[rows]
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    out = []
    for o in np.unique(owner):
        mine = owner == o
        top = np.argsort(-logits[mine], kind="stable")[:k]
        ideal = discount[:min(lists.n_pos[o], k)].sum()
        out.append((labels[mine][top] * discount[:len(top)]).sum() / ideal)
    return float(np.mean(out))


def sources_alone(lists: Lists, sources: list[str], rows: np.ndarray) -> dict[str, float]:
    """NDCG@10 of the lists `rows` cover, ordered by each source alone (column 1 of each
    source's block: 1/log2(2 + rank))."""
    side = lists.side.numpy()[rows]
    return {name: round(list_ndcg(side[:, FEATURES_PER_SOURCE * s + 1], lists, rows), 4)
            for s, name in enumerate(sources)}


@dataclass
class TrainReport:
    epochs: int
    seconds: float
    holdout_ndcg: float
    holdout_ndcg_sources: dict[str, float]
    """The same lists ordered by each source alone: what the stacker must beat."""
    ece_before: float
    ece_after: float
    brier_after: float
    base_rate: float
    train_rows: int
    holdout_rows: int
    lists: int
    platt: tuple[float, float]


def train(feat: Featurizer, lists: Lists, sources: list[str], cfg: ScorerSettings, *,
          progress: bool = True
          ) -> tuple[AttentionScorer, TrainReport, tuple[np.ndarray, np.ndarray]]:
    """BCE over every candidate of the training users' lists; early stopping on the
    held-out users' list NDCG@10; Platt scaling on the held-out lists. Returns (model,
    report, (held-out raw logits, labels))."""
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    # Held out by user, so no user's lists from another fold are trained on.
    users = sorted(set(lists.users))
    draw = dict(zip(users, np.random.default_rng(cfg.seed).random(len(users))))
    held = np.array([draw[u] < cfg.holdout_users for u in lists.users])
    owner = lists.owner.numpy()
    train_rows = torch.from_numpy(np.flatnonzero(~held[owner]))
    held_rows = np.flatnonzero(held[owner])
    model = AttentionScorer(feat.features, feat.a.kg.dim, lists.side.shape[1], cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    best, best_state, stale, epochs = -1.0, None, 0, 0
    gen = torch.Generator().manual_seed(cfg.seed)
    bar = tqdm(range(cfg.epochs), desc="train scorer", unit="epoch", disable=not progress,
               leave=False)
    for epoch in bar:
        model.train()
        order = train_rows[torch.randperm(len(train_rows), generator=gen)]
        for rows in order.split(cfg.batch_size):
            loss = loss_fn(model(*lists.inputs(rows)), lists.label[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
        epochs = epoch + 1
        score = list_ndcg(predict(model, lists, held_rows), lists, held_rows)
        bar.set_postfix(holdout_ndcg=f"{score:.4f}")
        if score > best + 1e-4:
            best, stale = score, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    model.load_state_dict(best_state)
    logits = predict(model, lists, held_rows)
    labels = lists.calibration.numpy()[held_rows]
    platt = fit_platt(logits, labels)
    after = sigmoid(platt[0] * logits + platt[1])
    report = TrainReport(
        epochs=epochs, seconds=round(time.perf_counter() - start, 1),
        holdout_ndcg=round(best, 4),
        holdout_ndcg_sources=sources_alone(lists, sources, held_rows),
        ece_before=round(ece(sigmoid(logits), labels), 4),
        ece_after=round(ece(after, labels), 4), brier_after=round(brier(after, labels), 5),
        base_rate=round(float(labels.mean()), 5), train_rows=len(train_rows),
        holdout_rows=len(held_rows), lists=len(lists.users),
        platt=tuple(round(v, 5) for v in platt))
    return model, report, (logits, labels)


# --------------------------------------------------------------------------- blending

BLEND_WEIGHTS = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
"""Up to 16: 8, the former top, was chosen on loo seed 44 and for loo-cold's short lists
on every seed, and a grid must reach past the weight it picks."""
MIN_SHORT_LISTS = 30
"""Simulated short lists below which their own weights are not chosen (too noisy)."""
SHORT_RULE = "worse_shape"
"""Short-history weights maximise the NDCG of the worse simulated shape (`Blend`)."""


def validation(train: pd.DataFrame, valid: pd.DataFrame | None, cfg: ScorerSettings
               ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(what the stacking learns from, the validation items the blend is chosen on, their
    `artifacts.validation_kind`). Nothing the blend is chosen on may have taught the
    scorer: on lists labelled by items of its own ranker slice the stacker looks better
    than it is, and the blend leaned away from the SASRec source (leave-last-out seed 42:
    weight 0.5 on such a holdout, 4 on the split's validation items; 0.1199 against
    0.1300 at test). A leave-last-out split brings validation items outside its train
    part; otherwise each user's latest train interaction (a random `slice_share` for
    random slices) is cut first: the ranker slices and the KG embeddings come from the
    rest, and only the served sources' refit learns it (and the popularity counts,
    which decide the head items and which items count as trained, include it)."""
    kind = validation_kind(valid is not None and len(valid) > 0, cfg)
    if kind == "validation":
        return train, valid, kind
    base, held = ranker_slice(train, cfg.model_copy(update={
        "slice_latest": 1, "slice_folds": 1, "seed": cfg.seed + 1}))
    return base, held, kind


@dataclass
class Blend:
    """The served log-odds: `platt` applied to (the stacker's logit + `weight` x the
    standardised score of `source`, the best source on the validation lists).

    The stacker learns on lists from sources fit without its slice; the sources it is
    served with see all train, and on next-item lists the sequential one gains most from
    that (leave-last-out seed 43: the stacker alone 0.1018 at test, its SASRec source
    0.1107, with the blend 0.1135). So the last word on the best source's weight,
    and the calibration, come from lists of sources that saw everything but the
    validation items (`validation`), labelled by them: tuned on held-out items as the
    baselines tune their knobs.

    Short lists (a history of at most `short_history` items,
    `ScorerSettings.blend_short_history`) get their own weights, over the two best
    sources on them, and their own Platt scaling, chosen on short histories simulated
    from the long ones (`build.short_lists`): the stacker learns mostly from long
    histories, and which source judges a short one best depends on its shape (on the
    validation users of loo-cold's former 10% slice, seed 42, cut to their latest five
    items SASRec leads, 0.126 against 0.098 for the Markov source; cut to their first four
    and latest, as loo-cold's cold users are at test, the Markov source leads, 0.098
    against 0.064). The validation's own short lists cannot choose: their history is the
    five oldest items, far from the validation item (the 10% slice's 94 lists had one to
    three items in the top 10 whatever the weight). Which shape a deployment serves is
    unknown, so the weights are those that do best on the worse of the two (their mean
    favoured the new users' shape: on loo-cold's 30% slice, draw 0, its cold users got
    0.0533 against 0.0600 for the Markov source alone)."""

    source: str
    weight: float
    platt: tuple[float, float]
    report: dict
    short_history: int | None = None
    """The threshold it was chosen with; a blend with another is refit by the build."""
    short_weights: dict[str, float] | None = None
    """Source -> weight for short lists; None: too few simulated ones, `weight` serves
    them."""
    chosen_on: str | None = None
    """"validation" or "holdout" (`validation`); a blend chosen otherwise is refit."""
    short_platt: tuple[float, float] | None = None
    """The short lists' scaling, with `short_weights`."""
    short_rule: str | None = None
    """How `short_weights` were chosen; a blend chosen by another rule is refit."""

    @classmethod
    def fit(cls, model: AttentionScorer, lists: Lists, sources: list[str],
            trained: np.ndarray, short_history: int, chosen_on: str,
            short: Lists | None = None) -> Blend:
        """`trained`: `Featurizer.trained`, which items the sources learnt from; `short`:
        the simulated short lists (`build.short_lists`)."""
        rows = np.arange(len(lists.cand))
        z = predict(model, lists, rows)
        side = lists.side.numpy()
        alone = sources_alone(lists, sources, rows)
        best = max(alone, key=alone.get)
        col = _standardised(side, sources, best, trained[lists.cand.numpy()], lists.owner)
        short_weights = short_platt = None
        report: dict = {"holdout_ndcg_sources": alone, "lists": len(lists.users),
                        "short_lists": len(short.users) if short is not None else 0}
        # Without positives among them there is nothing to scale the short lists by.
        if (short is not None and len(short.users) >= MIN_SHORT_LISTS
                and short.calibration.numpy().any()):
            short_weights, short_platt, report["short"] = cls._fit_short(
                model, short, sources, trained)
        long = ((lists.hist > 0).sum(1).numpy() > short_history)[lists.owner.numpy()]
        # Short histories served their own weights leave the long ones' choice; without
        # those, one weight serves every list and is chosen on all of them.
        on = rows[long] if short_weights and long.any() else rows
        report["long_lists"] = len(np.unique(lists.owner.numpy()[on]))
        weight, report["holdout_ndcg_by_weight"] = _best_weight(z, col, lists, on)
        blended, labels = (z + weight * col)[on], lists.calibration.numpy()[on]
        platt = _rounded(fit_platt(blended, labels))
        report |= {"ece": round(ece(sigmoid(platt[0] * blended + platt[1]), labels), 4),
                   "base_rate": round(float(labels.mean()), 5)}
        return cls(best, weight, platt, report, short_history, short_weights, chosen_on,
                   short_platt, SHORT_RULE)

    @staticmethod
    def _fit_short(model: AttentionScorer, short: Lists, sources: list[str],
                   trained: np.ndarray) -> tuple[dict, tuple[float, float], dict]:
        """Weights for the two best sources alone on the short lists (the grid's pair whose
        worse shape does best, smallest first among equals; a list's shape is the end of
        its name, `build.short_lists`) and the scaling of the blended log-odds."""
        rows = np.arange(len(short.cand))
        z = predict(model, short, rows)
        side = short.side.numpy()
        alone = sources_alone(short, sources, rows)
        pair = sorted(alone, key=alone.get, reverse=True)[:2]
        cols = [_standardised(side, sources, n, trained[short.cand.numpy()], short.owner)
                for n in pair]
        shape = np.array([short.users[o].rsplit("/", 1)[-1] for o in short.owner.numpy()])
        grid = [(a, b) for a in BLEND_WEIGHTS
                for b in (BLEND_WEIGHTS if len(pair) > 1 else (0.0,))]
        by_shape = {}
        for w in grid:
            blended = z + w[0] * cols[0] + w[-1] * cols[-1]
            by_shape[w] = {s: round(list_ndcg(blended[shape == s], short, rows[shape == s]), 4)
                           for s in np.unique(shape)}
        a, b = max(grid, key=lambda w: min(by_shape[w].values()))
        weights = dict(zip(pair, (a, b)))
        blended = z + a * cols[0] + b * cols[-1]
        labels = short.calibration.numpy()
        platt = _rounded(fit_platt(blended, labels))
        report = {"ndcg_sources": alone,
                  "stacker_ndcg": round(list_ndcg(z, short, rows), 4),
                  "ndcg": round(list_ndcg(blended, short, rows), 4),
                  "ndcg_by_shape": by_shape[(a, b)],
                  "ece": round(ece(sigmoid(platt[0] * blended + platt[1]), labels), 4)}
        return weights, platt, report

    def apply(self, logits: np.ndarray, features: np.ndarray, sources: list[str],
              trained: np.ndarray, history_len: int) -> np.ndarray:
        """Served log-odds of one list from its raw logits, the retrieval's source features,
        which candidates have train interactions and the history's length."""
        owner = np.zeros(len(trained), dtype=int)
        if self.short_weights and history_len <= (self.short_history or 0):
            weights, (a, b) = self.short_weights, self.short_platt
        else:
            weights, (a, b) = {self.source: self.weight}, self.platt
        return a * (logits + sum(w * _standardised(features, sources, n, trained, owner)
                                 for n, w in weights.items())) + b


def _standardised(side: np.ndarray, sources: list[str], name: str, trained: np.ndarray,
                  owner: np.ndarray | torch.Tensor) -> np.ndarray:
    """Source `name`'s standardised score column, untrained candidates at their list's
    median (`_untrained_at_median`)."""
    owner = owner.numpy() if isinstance(owner, torch.Tensor) else owner
    return _untrained_at_median(side[:, FEATURES_PER_SOURCE * sources.index(name)], trained,
                                owner)


def _rounded(platt: tuple[float, float]) -> tuple[float, float]:
    return tuple(round(float(v), 5) for v in platt)


def _best_weight(z: np.ndarray, col: np.ndarray, lists: Lists,
                 rows: np.ndarray) -> tuple[float, dict[float, float]]:
    """The blend weight with the best NDCG@10 on the lists `rows` cover (the smallest of
    equals), and the NDCG of each."""
    by_weight = {w: round(list_ndcg((z + w * col)[rows], lists, rows), 4)
                 for w in BLEND_WEIGHTS}
    return max(by_weight, key=by_weight.get), by_weight


def _untrained_at_median(col: np.ndarray, trained: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """`col` with the candidates nobody interacted with in train (a film added since the
    build, say) set to their list's median: the source has no say on them, so the blend
    neither lifts nor sinks them and the scorer's content-based logit decides."""
    out = col.copy()
    for o in np.unique(owner[~trained]):
        mine = owner == o
        ref = col[mine & trained]
        out[mine & ~trained] = np.median(ref) if len(ref) else 0.0
    return out


# --------------------------------------------------------------------------- serving


class Scorer:
    """A trained, calibrated scorer for one build's sources."""

    def __init__(self, feat: Featurizer, model: AttentionScorer, platt: tuple[float, float],
                 sources: list[str], union_weights: dict[str, float], report: dict,
                 blend: Blend | None = None):
        self.feat = feat
        self.model = model.eval()
        self.platt = platt
        """(a, b): calibrated log-odds = a * raw logit + b (fitted on held-out lists), until
        the blend, which recalibrates, is there."""
        self.sources = sources
        """The source names whose features the model reads, in order."""
        self.union_weights = union_weights
        """The fusion weights of the union it was trained on (serving uses the same)."""
        self.report = report
        self.blend = blend
        """Chosen after training, on the served sources' side (`Blend`); serving needs it."""

    @torch.no_grad()
    def logits(self, history: list[tuple[str, float]], user_id: str | None,
               r: Retrieval) -> np.ndarray:
        """Calibrated log-odds per candidate of `r`. Finite by construction: a NaN (e.g.
        from a corrupt vector) becomes the lowest score."""
        if not r.items:
            return np.zeros(0, dtype=np.float32)
        inputs = self.feat.batch(history, user_id, r)
        z = self.model(*inputs).numpy()
        if self.blend is not None:  # inputs[0]: the candidates' feature rows
            z = self.blend.apply(z, r.features, self.sources,
                                 self.feat.trained[inputs[0].numpy()], len(history))
        else:
            z = self.platt[0] * z + self.platt[1]
        return np.nan_to_num(z, nan=-30.0, posinf=30.0, neginf=-30.0)

    @torch.no_grad()
    def attention(self, history: list[tuple[str, float]], items: list[str]
                  ) -> dict[str, dict[str, float]]:
        """Per item: history item id -> the attention weight its score gave that item."""
        rows = self.feat.history_rows(history)
        if not rows or not items:
            return {i: {} for i in items}
        by_row = {self.feat.row[i]: i for i, _ in history if i in self.feat.row}
        hist = torch.zeros(len(items), self.feat.cfg.max_history, dtype=torch.long)
        hist[:, :len(rows)] = torch.tensor(rows)
        cand = torch.tensor([self.feat.row.get(i, 0) for i in items])
        weights = self.model.attention(cand, hist)[2][:, :len(rows)].numpy()
        return {item: {by_row[r]: float(w) for r, w in zip(rows, ws)}
                for item, ws in zip(items, weights)}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), folder / "model.pt")
        (folder / "scorer.json").write_text(json.dumps({
            "config": self.model.cfg.model_dump(), "platt": list(self.platt),
            "sources": self.sources, "union_weights": self.union_weights,
            "n_side": self.model.skip.in_features,
            "fingerprint": self.feat.a.folder.name, "items": self.feat.item_ids,
            "report": self.report}, indent=1))
        # A retrained model makes the former blend meaningless: it goes with it.
        blend = folder / "blend.json"
        if self.blend is None:
            blend.unlink(missing_ok=True)
        else:
            blend.write_text(json.dumps(asdict(self.blend), indent=1))

    @classmethod
    def fit(cls, feat: Featurizer, lists: Lists, sources: list[str],
            union_weights: dict[str, float], folder: Path, *, union: dict | None = None,
            progress: bool = True) -> Scorer:
        """Train, calibrate and save to `folder`, with a reliability diagram of the
        held-out lists (raw vs calibrated) beside the checkpoint. `union`: how the union's
        weights were chosen (`retrieve.union_weights`), kept in the report."""
        model, report, (logits, labels) = train(feat, lists, sources, feat.cfg,
                                                progress=progress)
        scorer = cls(feat, model, report.platt, sources, union_weights,
                     vars(report) | ({"union": union} if union else {}))
        scorer.save(folder)
        a, b = report.platt
        reliability_diagram({"raw": (sigmoid(logits), labels),
                             "calibrated": (sigmoid(a * logits + b), labels)},
                            folder / "reliability.png")
        return scorer

    @classmethod
    def load(cls, folder: Path, artifacts: Artifacts, cfg: ScorerSettings,
             sources: list[str]) -> Scorer:
        """The checkpoint in `folder`; `StaleArtifact` (naming the command that fixes it)
        when it is missing, corrupt, from another build, or trained with other settings
        or sources."""
        fix = f"rebuild with `{artifacts.rebuild}`"
        try:
            meta = json.loads((folder / "scorer.json").read_text())
            state = torch.load(folder / "model.pt", weights_only=True)
        except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            raise StaleArtifact(f"scorer checkpoint in {folder} is missing or corrupt "
                                f"({exc}); {fix}") from None
        if meta["fingerprint"] != artifacts.folder.name or meta["items"] != artifacts.index.ids[
                :len(meta["items"])]:
            raise StaleArtifact(f"scorer checkpoint in {folder} does not match the current "
                                f"data and embeddings; {fix}")
        if ScorerSettings(**meta["config"]) != cfg or meta["sources"] != sources:
            raise StaleArtifact(f"scorer checkpoint in {folder} was trained with other "
                                f"scorer settings or sources; {fix}")
        # Settings fingerprints miss a code change to the source features (retrieve.py):
        # without this check such a checkpoint would fail at its first query instead.
        width = Featurizer.side_width(len(sources))
        if meta["n_side"] != width:
            raise StaleArtifact(f"scorer checkpoint in {folder} reads {meta['n_side']} source "
                                f"features, this version gives {width}; {fix}")
        feat = Featurizer(artifacts, cfg)
        model = AttentionScorer(feat.features, artifacts.kg.dim, meta["n_side"], cfg)
        # Items added since training join with their content and a zero id embedding.
        ids = torch.zeros(len(feat.features), cfg.id_dim)
        ids[:state["ids.weight"].shape[0]] = state["ids.weight"]
        state.update({"ids.weight": ids, "features": feat.features})
        model.load_state_dict(state)
        try:
            saved = json.loads((folder / "blend.json").read_text())
            # One fit before the simulated short lists (a `short_weight`) or by another
            # rule for them: refit it.
            blend = Blend(**saved) if saved.get("short_rule") == SHORT_RULE else None
        except FileNotFoundError:
            blend = None  # the build's next step fits it (`load_ranker` insists on it)
        except (OSError, ValueError, TypeError) as exc:
            raise StaleArtifact(f"the blend in {folder} is corrupt ({exc}); {fix}") from None
        chosen_on = validation_kind(artifacts.split is not None
                                    and len(artifacts.split.valid) > 0, cfg)
        if blend is not None and (blend.short_history != cfg.blend_short_history
                                  or blend.chosen_on != chosen_on):
            # Chosen with another threshold or on other items: the build refits the blend
            # only.
            blend = None
        unknown = ({blend.source, *(blend.short_weights or {})} - set(meta["sources"])
                   if blend is not None else set())
        if unknown:
            raise StaleArtifact(f"the blend in {folder} reads a source the scorer does not "
                                f"({', '.join(sorted(unknown))}); {fix}")
        return cls(feat, model, tuple(meta["platt"]), meta["sources"], meta["union_weights"],
                   meta["report"], blend)


