"""Held-out cutting for stacking: the ranker slices and the blend's validation items.

In: the train interactions (and a split's validation items) with the ranker slice's
settings. Out: what the sources fit on, the slice the scorer learns on, what the KG
embeddings learn from, and the items the blend is chosen on. Deterministic under
`cfg.seed`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rag_rec.artifacts import validation_kind
from rag_rec.settings import RankerSliceSettings


def _slice_folds(train: pd.DataFrame, cfg: RankerSliceSettings
                 ) -> tuple[pd.DataFrame, np.ndarray]:
    """(train sorted by user and time, each row's cross-fitting fold; -1: in no slice)."""
    ordered = train.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    ordered = ordered.reset_index(drop=True)
    users = ordered.groupby("user_id", sort=False)
    size = users.user_id.transform("size").to_numpy()
    room = np.maximum(size - 3, 0) // cfg.folds  # every user keeps three to fit on
    if cfg.kind == "latest":
        rank = users.cumcount(ascending=False).to_numpy()
        n = np.minimum(cfg.latest, room)
    else:
        draw = pd.Series(np.random.default_rng(cfg.seed).random(len(ordered)))
        rank = draw.groupby(ordered.user_id.to_numpy()).rank(method="first").to_numpy() - 1
        n = np.minimum(np.floor(cfg.share * size), room)
    fold = np.where(rank < n * cfg.folds, rank // np.maximum(n, 1), -1)
    return ordered, fold.astype(int)


def ranker_slice(train: pd.DataFrame, cfg: RankerSliceSettings, fold: int = 0
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(what the sources fit on, the slice the scorer learns on) for cross-fitting fold
    `fold` of `cfg.folds`: per user, the latest `cfg.latest` train items before
    those of the earlier folds (which the sources do not see either: they come after
    the slice), or the fold's disjoint random `cfg.share` of them; every user keeps at
    least three items to fit on. Deterministic under `cfg.seed`."""
    ordered, folds = _slice_folds(train, cfg)
    fit = folds != fold
    if cfg.kind == "latest":
        fit &= (folds < 0) | (folds > fold)
    return ordered[fit].reset_index(drop=True), ordered[folds == fold].reset_index(drop=True)


def unsliced(train: pd.DataFrame, cfg: RankerSliceSettings) -> pd.DataFrame:
    """The train interactions in no fold's slice: what the KG embeddings learn from."""
    ordered, folds = _slice_folds(train, cfg)
    return ordered[folds < 0].reset_index(drop=True)


def validation(train: pd.DataFrame, valid: pd.DataFrame | None, cfg: RankerSliceSettings
               ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(what the stacking learns from, the validation items the blend is chosen on, their
    `artifacts.validation_kind`). Nothing the blend is chosen on may have taught the
    scorer: on lists labelled by items of its own ranker slice the stacker looks better
    than it is, and the blend leaned away from the SASRec source (leave-last-out seed 42:
    weight 0.5 on such a holdout, 4 on the split's validation items; 0.1199 against
    0.1300 at test). A leave-last-out split brings validation items outside its train
    part; otherwise each user's latest train interaction (a random `share` for
    random slices) is cut first: the ranker slices and the KG embeddings come from the
    rest, and only the served sources' refit learns it (and the popularity counts,
    which decide the head items and which items count as trained, include it)."""
    kind = validation_kind(valid is not None and len(valid) > 0, cfg)
    if kind == "validation":
        return train, valid, kind
    base, held = ranker_slice(train, cfg.model_copy(update={
        "latest": 1, "folds": 1, "seed": cfg.seed + 1}))
    return base, held, kind
