"""Fitting the P(like) head's network: the training and validation pairs, the batches of
whole users and the loop with early stopping.

In: a `Dataset` and `Split` (which ratings train and which validate, `_train_and_valid`),
each user's train history as item rows and ratings in time order, a `_Featurizer`, a
`LikeNet` and `LikeSettings`. Out: `_Pairs` (user row, item row, features, label and how
much of its user's history each pair sees) and, from `_fit_net`, the network at its best
validation epoch with the number of epochs run. `LikeModel.fit` (head.py) calls these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from rag_rec.data import Dataset, Split, SplitProtocol, latest_per_user
from rag_rec.like.features import _Featurizer
from rag_rec.like.model import LikeNet
from rag_rec.settings import LikeSettings

Histories = dict[str, tuple[np.ndarray, np.ndarray]]
"""User id -> (item rows, ratings) of their train ratings, oldest first."""


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


def _train_and_valid(ds: Dataset, split: Split | None, settings: LikeSettings
                     ) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """The train and validation ratings, and whether a pair sees only its user's past
    (else all their other ratings), as the module docstring of rag_rec.like describes."""
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
    return train, valid, past


def _ordered(inter: pd.DataFrame) -> pd.DataFrame:
    return inter.sort_values(["user_id", "timestamp", "item_id"], kind="stable")


def _train_pairs(histories: Histories, user_row: dict[str, int], featurize: _Featurizer,
                 threshold: float, past: bool) -> _Pairs:
    """Every train rating as a pair, featurized from its user's earlier ratings (`past`)
    or from all their other ratings."""
    users, items, feats, labels = [], [], [], []
    for user, (hist, ratings) in histories.items():
        users.append(np.full(len(hist), user_row[user]))
        items.append(hist)
        feats.append(featurize(hist, ratings, hist, causal=past))
        labels.append(ratings)
    lengths = [len(h) for h, _ in histories.values()]
    return _pairs(users, items, feats, labels, threshold,
                  [np.arange(n) for n in lengths],
                  [np.zeros(n, np.int64) if past else np.arange(n)[::-1] for n in lengths])


def _held_pairs(held: pd.DataFrame, histories: Histories, user_row: dict[str, int],
                item_row: dict[str, int], featurize: _Featurizer, threshold: float) -> _Pairs:
    """Held-out ratings featurized from their user's train history."""
    users, items, feats, labels = [], [], [], []
    empty = (np.zeros(0, np.int64), np.zeros(0))
    for user, group in held.groupby("user_id", sort=False):
        hist, ratings = histories.get(user, empty)
        cand = group.item_id.map(lambda item: item_row.get(item, 0)).to_numpy(np.int64)
        users.append(np.full(len(cand), user_row.get(user, 0)))
        items.append(cand)
        feats.append(featurize(hist, ratings, cand))
        labels.append(group.rating.to_numpy(np.float64))
    zeros = [np.zeros(len(rows)) for rows in users]
    return _pairs(users, items, feats, labels, threshold, zeros, zeros)


def _pairs(users: list, items: list, feats: list, ratings: list, threshold: float,
           before: list, after: list) -> _Pairs:
    return _Pairs(np.concatenate(users), np.concatenate(items), np.concatenate(feats),
                  (np.concatenate(ratings) >= threshold).astype(np.float32),
                  np.concatenate(before).astype(np.int64), np.concatenate(after).astype(np.int64))


def _flat_histories(histories: Histories, mu: float) -> tuple[torch.Tensor, torch.Tensor]:
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
    for user in rng.permutation(len(starts)):
        current.append(np.arange(starts[user], ends[user]))
        count += ends[user] - starts[user]
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


def _fit_net(net: LikeNet, pairs: _Pairs, scale: tuple[np.ndarray, np.ndarray],
             flat: tuple[torch.Tensor, torch.Tensor], settings: LikeSettings,
             rng: np.random.Generator, held_loss: Callable[[], float]) -> int:
    """Train `net` in place with BCE on `pairs` (user ids dropped at random), scoring
    `held_loss` (the validation log loss of the net as it stands) after every epoch;
    stop after `patience` epochs without gain and leave the best epoch's weights.
    Returns the number of epochs run."""
    best, best_state, bad, epochs = np.inf, None, 0, 0
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr,
                            weight_decay=settings.weight_decay)
    columns = _tensors(pairs, scale)
    for epoch in range(settings.epochs):
        net.train()
        for batch in _user_batches(pairs.user, settings.batch_size, rng):
            user, item, feats, label, before, after = (column[batch] for column in columns)
            z = _z_train(net, batch, before, after, flat) if net.full else None
            if settings.user_dropout > 0:
                user = user * (torch.rand(len(user)) >= settings.user_dropout)
            loss = nn.functional.binary_cross_entropy_with_logits(
                net(user, item, feats, z), label)
            opt.zero_grad()
            loss.backward()
            opt.step()
        epochs = epoch + 1
        score = held_loss()
        net.train()
        if score < best - 1e-5:
            best, bad = score, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
            if bad >= settings.patience:
                break
    net.load_state_dict(best_state)
    return epochs
