"""The tuned baselines choose their settings on items the test never sees: the
validation items, or on k-fold a random share of train (the way rag_rec's stacker is
tuned), and the two parts cover train exactly."""

from __future__ import annotations

import pandas as pd

from eval.baselines import held_out
from rag_rec.data import Dataset, make_split


def _pairs(df: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(df.user_id, df.item_id))


def test_baselines_are_tuned_on_held_out_items_the_test_never_sees(dataset: Dataset) -> None:
    kfold = make_split(dataset, "kfold0")
    fit_on, held = held_out(kfold, seed=42)
    assert _pairs(fit_on) | _pairs(held) == _pairs(kfold.train)
    assert not _pairs(fit_on) & _pairs(held)
    assert not _pairs(held) & (_pairs(kfold.test) | _pairs(kfold.valid))
    assert 0.07 < len(held) / len(kfold.train) < 0.11
    assert _pairs(held_out(kfold, seed=43)[1]) != _pairs(held)
    loo = make_split(dataset, "loo")
    fit_on, held = held_out(loo, seed=42)
    assert fit_on.equals(loo.train) and held.equals(loo.valid)
