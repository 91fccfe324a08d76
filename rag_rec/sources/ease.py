"""EASE (Steck 2019): closed-form item-item model, L2 chosen on the tuning items.

In: a `Catalogue` (item order), `EaseSettings` (the L2 grid, the largest catalogue a
dense item x item matrix may take), train interactions and tuning items. Out: scores
(queries x catalogue), `-inf` for an unknown history or an item added after the fit;
`ease.npy` (the weights) and `ease.json` (the L2 kept) in a sources folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rag_rec.settings import EaseSettings, RetrievalSettings, SourceSettings
from rag_rec.sources.base import (BaseSource, CandidateSource, Catalogue, Query,
                                  SourceUnavailable, histories_of, tuning_ndcg)


class EASE(BaseSource):
    """Embarrassingly shallow autoencoder: B = I - P / diag(P), P = (XᵀX + λI)⁻¹."""

    name = "ease"

    def __init__(self, catalogue: Catalogue, settings: EaseSettings | None = None) -> None:
        super().__init__(catalogue)
        self.settings = settings or EaseSettings()

    @classmethod
    def from_settings(cls, catalogue: Catalogue, settings: SourceSettings,
                      retrieval: RetrievalSettings) -> EASE:
        return cls(catalogue, settings.ease)

    def fit(self, train: pd.DataFrame, tune: pd.DataFrame | None, *,
            warm: CandidateSource | None = None, progress: bool = False) -> dict:
        if self.n_items > self.settings.max_items:
            raise SourceUnavailable(
                f"ease: {self.n_items} items need a dense {self.n_items}² matrix (limit "
                f"`sources.ease.max_items` = {self.settings.max_items})")
        start = time.perf_counter()
        histories = histories_of(train)
        x = self.history_matrix(list(histories.values()))
        if x.nnz == 0:
            raise SourceUnavailable("ease: no interactions to fit on")
        gram = (x.T @ x).toarray().astype(np.float64)
        grid = self._grid(self.settings.l2, warm.l2 if isinstance(warm, EASE) else None, tune)
        tried = {}
        for l2 in grid:
            self._solve(gram, l2)
            if len(grid) > 1:
                tried[l2] = tuning_ndcg(self, histories, tune, self.column)
        if tried:
            self._solve(gram, max(tried, key=tried.get))
        return {"l2": self.l2, "tuning_ndcg@10": {str(k): round(v, 4) for k, v in tried.items()},
                "seconds": round(time.perf_counter() - start, 1)}

    def _solve(self, gram: np.ndarray, l2: float) -> None:
        g = gram.copy()
        g[np.diag_indices_from(g)] += l2
        p = np.linalg.inv(g)
        b = p / (-np.diag(p))
        np.fill_diagonal(b, 0.0)
        self.l2, self.item_weights = float(l2), b.astype(np.float32)

    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        x = self.history_matrix([q.history for q in queries], len(self.item_weights))
        out = np.asarray(x @ self.item_weights, dtype=np.float32)
        out[x.getnnz(1) == 0] = -np.inf  # no known history: nothing to score from
        return self._pad(out)

    def save(self, folder: Path) -> None:
        np.save(folder / "ease.npy", self.item_weights)
        (folder / "ease.json").write_text(json.dumps({"l2": self.l2}))

    def load(self, folder: Path) -> None:
        self.item_weights = np.load(folder / "ease.npy")
        self.l2 = json.loads((folder / "ease.json").read_text())["l2"]
