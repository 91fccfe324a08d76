"""Training the stacker: candidate lists from the sources, BCE over whole lists.

In: a `Featurizer`, a `Retriever` over sources fit without the ranker slice, the users'
histories and the slice's items as labels. Out: `Lists` (the flattened candidate lists),
and from `train` the fitted `AttentionScorer`, its `TrainReport` and the held-out lists'
raw logits and labels (for the reliability diagram).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from rag_rec.scorer.calibration import brier, ece, fit_platt, sigmoid
from rag_rec.scorer.features import FeatureSchema, Featurizer, column
from rag_rec.scorer.model import AttentionScorer
from rag_rec.settings import ScorerSettings
from rag_rec.sources import Query

if TYPE_CHECKING:  # retrieve.py imports the feature schema from this package
    from rag_rec.retrieve import Retriever


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
    `calibrate_on` for the calibration); never an item of `exclude[user]`. The retriever
    writes the columns of the featurizer's schema."""
    if retriever.schema != feat.schema:
        raise ValueError(f"the retriever writes {retriever.schema.names}, the featurizer "
                         f"reads {feat.schema.names}")
    wanted = targets.groupby("user_id").item_id.agg(set).to_dict()
    calibrated = calibrate_on.groupby("user_id").item_id.agg(set).to_dict()
    users = [u for u in sorted(wanted) if histories.get(u)]
    hist, user_kg, owner, cand, side, label, calib, n_pos = [], [], [], [], [], [], [], []
    bar = tqdm(total=len(users), desc="candidate lists", unit="user", disable=not progress,
               leave=False)
    for start in range(0, len(users), chunk):
        part = users[start:start + chunk]
        for user_id, retrieval in zip(part, retriever.retrieve(
                [Query(histories[u]) for u in part],
                [exclude.get(u, set()) for u in part] if exclude else None)):
            items = retrieval.items
            rows = feat.history_rows(histories[user_id])
            hist.append(rows + [0] * (feat.cfg.max_history - len(rows)))
            user_kg.append(feat.user_kg(user_id))
            owner.append(np.full(len(items), len(owner)))
            cand.append([feat.row.get(i, 0) for i in items])
            side.append(feat.side(histories[user_id], retrieval.features))
            label.append([i in wanted[user_id] for i in items])
            calib.append([i in calibrated.get(user_id, ()) for i in items])
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
    """Mean NDCG@k of the lists that `rows` cover, ranked by `logits` (ties in row order);
    the ideal counts every slice item, retrieved or not (the same number a full ranking
    would give). One sort for all lists: a mask per list made the blend's grid quadratic
    in users (ML-1M: 25 of its 28 minutes)."""
    owner = lists.owner.numpy()[rows]
    order = np.lexsort((-logits, owner))  # by list, then best first; stable on ties
    owner, labels = owner[order], lists.label.numpy()[rows][order]
    list_nos, starts = np.unique(owner, return_index=True)
    place = np.arange(len(owner)) - np.repeat(starts, np.diff(np.append(starts, len(owner))))
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    top = place < k
    gains = np.bincount(np.searchsorted(list_nos, owner[top]),
                        weights=labels[top] * discount[place[top]], minlength=len(list_nos))
    ideal = np.cumsum(discount)[np.minimum(lists.n_pos[list_nos], k) - 1]
    return float(np.mean(gains / ideal))


def sources_alone(lists: Lists, sources: list[str], rows: np.ndarray) -> dict[str, float]:
    """NDCG@10 of the lists `rows` cover, ordered by each source alone (its `rank`
    column)."""
    side = lists.side.numpy()[rows]
    schema = FeatureSchema(tuple(sources))
    return {name: round(list_ndcg(side[:, schema.index(column(name, "rank"))], lists, rows), 4)
            for name in sources}


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
    model = AttentionScorer(feat.features, feat.artifacts.kg.dim, len(feat.schema), cfg)
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
