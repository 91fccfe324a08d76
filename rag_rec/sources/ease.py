"""EASE (Steck 2019): closed-form item-item model, L2 chosen on the tuning items.

In: a `Catalogue` (item order), `EaseSettings` (the L2 grid, the largest catalogue a
dense item x item matrix may take), train interactions and tuning items. Out: scores
(queries x catalogue), `-inf` for an unknown history or an item added after the fit;
`ease.npy` (the weights) and `ease.json` (the L2 kept) in a sources folder.

Above `max_items` the dense solve does not fit in memory (it grows with items²), so
the source fits `implicit`'s BM25 item-item neighbours instead (`BM25Recommender`,
`fallback_neighbours` per item, a sparse item x item matrix saved as `ease_knn.npz`):
the same scores contract, a weaker model, logged as a warning and named in the fit
report (`"fallback"`), so a large catalogue still has an item-item source.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rag_rec.settings import EaseSettings, RetrievalSettings, SourceSettings
from rag_rec.sources.base import (BaseSource, CandidateSource, Catalogue, Query,
                                  SourceUnavailable, histories_of, tuning_ndcg)

log = logging.getLogger(__name__)
KNN_FILE = "ease_knn.npz"


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
        start = time.perf_counter()
        histories = histories_of(train)
        x = self.history_matrix(list(histories.values()))
        if x.nnz == 0:
            raise SourceUnavailable("ease: no interactions to fit on")
        if self.n_items > self.settings.max_items:
            return self._fit_neighbours(x, histories, tune, start)
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

    def _fit_neighbours(self, x: sp.csr_matrix, histories: dict, tune: pd.DataFrame | None,
                        start: float) -> dict:
        """The fallback above `max_items`: each item's K nearest by BM25-weighted co-counts."""
        from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight

        k = self.settings.fallback_neighbours
        log.warning("ease: %d items exceed `sources.ease.max_items` = %d (a dense %d² "
                    "solve); fitting implicit's BM25 item-item neighbours (K=%d) in its "
                    "place", self.n_items, self.settings.max_items, self.n_items, k)
        # BM25Recommender.fit with its K1 and B, the weights handed over as CSR (implicit
        # warns on COO).
        model = ItemItemRecommender(K=k)
        model.fit(bm25_weight(x.T.tocsr(), K1=1.2, B=0.75).T.tocsr(), show_progress=False)
        weights = model.similarity.astype(np.float32).tocsr()
        weights.setdiag(0.0)  # as EASE's: an item does not vouch for itself
        weights.eliminate_zeros()
        self.l2, self.item_weights = None, weights
        report = {"fallback": f"bm25 item-item, K={k}",
                  "why": f"{self.n_items} items > sources.ease.max_items "
                         f"{self.settings.max_items}"}
        if tune is not None and len(tune):
            report["tuning_ndcg@10"] = round(tuning_ndcg(self, histories, tune, self.column), 4)
        return {**report, "seconds": round(time.perf_counter() - start, 1)}

    def _solve(self, gram: np.ndarray, l2: float) -> None:
        g = gram.copy()
        g[np.diag_indices_from(g)] += l2
        p = np.linalg.inv(g)
        b = p / (-np.diag(p))
        np.fill_diagonal(b, 0.0)
        self.l2, self.item_weights = float(l2), b.astype(np.float32)

    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        x = self.history_matrix([q.history for q in queries], self.item_weights.shape[0])
        product = x @ self.item_weights
        out = np.asarray(product.toarray() if sp.issparse(product) else product,
                         dtype=np.float32)
        out[x.getnnz(1) == 0] = -np.inf  # no known history: nothing to score from
        return self._pad(out)

    def save(self, folder: Path) -> None:
        if sp.issparse(self.item_weights):
            sp.save_npz(folder / KNN_FILE, self.item_weights)
        else:
            np.save(folder / "ease.npy", self.item_weights)
        (folder / "ease.json").write_text(json.dumps({"l2": self.l2}))

    def load(self, folder: Path) -> None:
        self.l2 = json.loads((folder / "ease.json").read_text())["l2"]
        if self.l2 is None:  # the neighbours fallback (see the module docstring)
            self.item_weights = sp.load_npz(folder / KNN_FILE).tocsr()
        else:
            self.item_weights = np.load(folder / "ease.npy")
