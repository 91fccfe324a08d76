"""Implicit ALS (Hu, Koren & Volinsky 2008) through `implicit`'s solver.

In: a `Catalogue` (item order), `IALSSettings` (the factors x L2 grid, alpha,
iterations) and a seed, train interactions and tuning items. Out: scores (queries x
catalogue), `-inf` for an unknown history or an item added after the fit; `ials.npy`
(item factors) and `ials.json` (the factors and L2 kept) in a sources folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from rag_rec.settings import IALSSettings, RetrievalSettings, SourceSettings
from rag_rec.sources.base import (BaseSource, CandidateSource, Catalogue, Query,
                                  SourceUnavailable, histories_of, tuning_ndcg)


@cache
def _blas_threads():
    """threadpoolctl's controller over the loaded BLAS libraries, found once: a fresh
    `threadpool_limits` rescans them (~1-2 ms, more than iALS takes to score one query)."""
    import implicit.cpu.als  # noqa: F401  (its BLAS is loaded before the scan)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class IALS(BaseSource):
    """Implicit ALS (Hu, Koren & Volinsky 2008; `implicit`'s solver): item factors learned
    on train, a user's factors solved from their history at query time (the same least
    squares the fit alternates), so any history is scored, as EASE does. Factors and L2
    chosen on the tuning items; a matrix factorization beside EASE's item-item model."""

    name = "ials"

    def __init__(self, catalogue: Catalogue, settings: IALSSettings | None = None,
                 seed: int = SourceSettings.model_fields["seed"].default) -> None:
        super().__init__(catalogue)
        self.settings = settings or IALSSettings()
        self.seed = seed

    @classmethod
    def from_settings(cls, catalogue: Catalogue, settings: SourceSettings,
                      retrieval: RetrievalSettings) -> IALS:
        return cls(catalogue, settings.ials, settings.seed)

    def _model(self, factors: int, regularization: float):
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=factors, regularization=regularization, alpha=self.settings.alpha,
            iterations=self.settings.iterations, random_state=self.seed)

    def fit(self, train: pd.DataFrame, tune: pd.DataFrame | None, *,
            warm: CandidateSource | None = None, progress: bool = False) -> dict:
        start = time.perf_counter()
        histories = histories_of(train)
        x = self.history_matrix(list(histories.values()))
        if x.nnz == 0:
            raise SourceUnavailable("ials: no interactions to fit on")
        grid = self._grid([(f, r) for f in self.settings.factors for r in self.settings.l2],
                          warm.params if isinstance(warm, IALS) else None, tune)
        tried, models = {}, {}
        for params in grid:
            # implicit runs its own threads; BLAS threads beneath them only contend.
            with _blas_threads().limit(limits=1, user_api="blas"):
                self.model = models[params] = self._model(*params)
                self.model.fit(x, show_progress=False)
            self.params = params
            if len(grid) > 1:
                tried[params] = tuning_ndcg(self, histories, tune, self.column)
        if tried:
            self.params = max(tried, key=tried.get)
            self.model = models[self.params]
        return {"factors": self.params[0], "l2": self.params[1],
                "tuning_ndcg@10": {f"{f}/{r}": round(v, 4) for (f, r), v in tried.items()},
                "seconds": round(time.perf_counter() - start, 1)}

    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        items = self.model.item_factors
        x = self.history_matrix([q.history for q in queries], len(items))
        with _blas_threads().limit(limits=1, user_api="blas"):
            users = self.model.recalculate_user(np.arange(len(queries)), x)
        out = np.asarray(users @ items.T, dtype=np.float32)
        out[x.getnnz(1) == 0] = -np.inf  # no known history: nothing to score from
        return self._pad(out)

    def save(self, folder: Path) -> None:
        np.save(folder / "ials.npy", self.model.item_factors)
        (folder / "ials.json").write_text(json.dumps({"params": list(self.params)}))

    def load(self, folder: Path) -> None:
        self.params = tuple(json.loads((folder / "ials.json").read_text())["params"])
        with _blas_threads().limit(limits=1, user_api="blas"):  # else implicit warns
            self.model = self._model(*self.params)
        self.model.item_factors = np.load(folder / "ials.npy")
