"""The popularity source: interactions per item in the training data.

In: a `Catalogue` (item order) and train interactions. Out: the same log-scaled counts
for every query (queries x catalogue), `-inf` for an item added after the fit;
`popular.npy` (the counts) in a sources folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rag_rec.sources.base import BaseSource, CandidateSource, Query


class Popular(BaseSource):
    """Interactions per item in the training data (log-scaled)."""

    name = "popular"

    def fit(self, train: pd.DataFrame, tune: pd.DataFrame | None, *,
            warm: CandidateSource | None = None, progress: bool = False) -> dict:
        counts = train.item_id.value_counts()
        self.counts = np.array([counts.get(i, 0) for i in self.catalogue.item_ids],
                               dtype=np.float32)
        return {}

    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        return np.tile(self._pad(np.log1p(self.counts)[None, :]), (len(queries), 1))

    def save(self, folder: Path) -> None:
        np.save(folder / "popular.npy", self.counts)

    def load(self, folder: Path) -> None:
        self.counts = np.load(folder / "popular.npy")
