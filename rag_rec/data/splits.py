"""Typed splits of a dataset's interactions for training and evaluation.

In: a `Dataset` (only its interactions are read) and a split name or the split function's
arguments.

Out: a `Split` (train / valid / test frames with the interaction columns) whose
`protocol` says which evaluation protocol cut it, so callers branch on the enum rather
than on names or descriptions; `info` keeps the human-readable description reports print.

| name              | protocol           | cut                                                  |
|-------------------|--------------------|------------------------------------------------------|
| `kfold0`…`kfold4` | `KFOLD`            | the published user-level 5-fold 80/20 (seed 42)      |
| `loo`             | `LEAVE_LAST_OUT`   | per user by timestamp: last -> test, second -> valid |
| `loo-cold`        | `COLD`             | `loo` with a share of users cut to five train items  |
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rag_rec.data.dataset import Dataset
from rag_rec.errors import DataError


class SplitProtocol(enum.Enum):
    """The evaluation protocol a split follows."""

    KFOLD = "k-fold"
    """Random user-level folds: test items are a random share of each user's."""
    LEAVE_LAST_OUT = "leave-last-out"
    """Each user's latest item is the test item: order matters."""
    COLD = "cold"
    """Leave-last-out with a slice of users cut to a few train items."""


@dataclass(frozen=True)
class Split:
    """Interactions divided for training and evaluation; every frame has the
    interaction columns. `valid` may be empty (the k-fold protocol has none)."""

    name: str
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    info: dict[str, object] = field(default_factory=dict)
    """Human-readable description (`info["protocol"]`) and the split's parameters."""
    protocol: SplitProtocol | None = None
    """Set by the split functions; None for a split a caller cuts itself (a tuning
    holdout), which follows no evaluation protocol."""


def latest_per_user(inter: pd.DataFrame) -> pd.DataFrame:
    """Each user's latest interaction (by timestamp, ties by item id), original index kept."""
    ordered = inter.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    return ordered.groupby("user_id", sort=False).tail(1)


def kfold_split(ds: Dataset, fold: int, *, n_folds: int = 5, seed: int = 42) -> Split:
    """The published protocol on this data: each user's interactions are cut into
    `n_folds` parts by `KFold(shuffle=True, random_state=seed)`; part `fold` is the test
    set (20% for 5 folds), the rest is train. All ratings count as positives.

    Every system needs validation data (early stopping, calibration) that the protocol
    does not name, so each user's latest train interaction is held out as `valid`, the
    same way for every system; it stays "seen" (never recommended, never a test item)."""
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold must be in [0, {n_folds}), got {fold}")
    inter = ds.interactions.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    test_mask = np.zeros(len(inter), dtype=bool)
    from sklearn.model_selection import KFold  # ~1 s to import: splits need it, serving not

    kf = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    start = 0
    for size in inter.groupby("user_id", sort=False).size():
        if size >= n_folds:
            _, test_idx = list(kf.split(np.arange(size)))[fold]
            test_mask[start + test_idx] = True
        start += size
    inter = inter.reset_index(drop=True)
    train = inter[~test_mask]
    valid_mask = np.zeros(len(inter), dtype=bool)
    valid_mask[latest_per_user(train).index] = True
    return Split(
        name=f"kfold{fold}", train=inter[~test_mask & ~valid_mask].reset_index(drop=True),
        valid=inter[valid_mask].reset_index(drop=True),
        test=inter[test_mask].reset_index(drop=True),
        info={"protocol": "user-level k-fold", "fold": fold, "n_folds": n_folds, "seed": seed},
        protocol=SplitProtocol.KFOLD,
    )


def leave_last_out_split(ds: Dataset) -> Split:
    """Per user, by timestamp (ties by item id): the last interaction is the test item,
    the second last the validation item, the rest train. Users with fewer than three
    interactions keep all of them in train. Refused (`DataError`) on data without
    timestamps: "last" would be the file's order, not the user's."""
    if not ds.meta.has_timestamps:
        raise DataError(
            f"leave-last-out needs timestamps: dataset {ds.name!r} has none (its "
            "interactions have no `timestamp` column), so no interaction is known to be a "
            "user's last; use a k-fold split (kfold0..kfold4) instead")
    inter = ds.interactions.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    inter = inter.reset_index(drop=True)
    from_end = inter.groupby("user_id", sort=False).cumcount(ascending=False)
    size = inter.groupby("user_id", sort=False)["item_id"].transform("size")
    test = (from_end == 0) & (size >= 3)
    valid = (from_end == 1) & (size >= 3)
    return Split(name="loo", train=inter[~test & ~valid].reset_index(drop=True),
                 valid=inter[valid].reset_index(drop=True),
                 test=inter[test].reset_index(drop=True),
                 info={"protocol": "leave-last-out by timestamp"},
                 protocol=SplitProtocol.LEAVE_LAST_OUT)


COLD_SHARE = 0.3
"""The share of users loo-cold cuts to five train ratings. 10% gave 94 cold users, one
test item each: an interval on them was ±0.03 wide, wider than any lead a system had."""
COLD_DRAW = 1
"""Which draw of cold users loo-cold holds, each from the users no earlier draw made
cold. Draw 0's test figures were seen before the short-history blend's rule was chosen
(`scorer.Blend`); draw 1's users were never cold before it was. Read at call time from
this module: an experiment changes it here (`rag_rec.data.splits.COLD_DRAW`)."""


def cold_user_split(ds: Dataset, *, share: float = COLD_SHARE, keep: int = 5,
                    seed: int = 42) -> Split:
    """Leave-last-out where a random `share` of users (the cold slice, listed in
    `info["cold_users"]`) keep only their `keep` oldest train interactions: every
    MovieLens user has at least 20 ratings, so cold users have to be made, and every
    system is trained on the same reduced data."""
    base = leave_last_out_split(ds)
    users = sorted(base.test.user_id.unique())
    rng, left = np.random.default_rng(seed), users
    for _ in range(COLD_DRAW + 1):
        cold = set(rng.choice(left, int(round(share * len(users))), replace=False).tolist())
        left = sorted(set(left) - cold)
    rank = base.train.groupby("user_id", sort=False).cumcount()
    drop = base.train.user_id.isin(cold) & (rank >= keep)
    return Split(name="loo-cold", train=base.train[~drop].reset_index(drop=True),
                 valid=base.valid, test=base.test,
                 info={"protocol": f"leave-last-out, {share:.0%} of users cut to {keep} "
                                   "train interactions", "cold_users": sorted(cold)},
                 protocol=SplitProtocol.COLD)


SPLITS: dict[str, tuple[SplitProtocol, Callable[[Dataset, int], Split]]] = {
    "loo": (SplitProtocol.LEAVE_LAST_OUT, lambda ds, seed: leave_last_out_split(ds)),
    "loo-cold": (SplitProtocol.COLD, lambda ds, seed: cold_user_split(ds, seed=seed)),
    **{f"kfold{k}": (SplitProtocol.KFOLD,
                     lambda ds, seed, k=k: kfold_split(ds, k, seed=seed)) for k in range(5)},
}
"""Split name -> (its protocol, how to cut it with a seed)."""


def _entry(name: str) -> tuple[SplitProtocol, Callable[[Dataset, int], Split]]:
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; valid: {', '.join(SPLITS)}")
    return SPLITS[name]


def split_protocol(name: str) -> SplitProtocol:
    """The protocol of the split `make_split` cuts under `name`, without cutting it
    (for results keyed by split name)."""
    return _entry(name)[0]


def make_split(ds: Dataset, name: str, *, seed: int = 42) -> Split:
    """A split by name: `loo`, `loo-cold`, or `kfold0` … `kfold4`."""
    return _entry(name)[1](ds, seed)
