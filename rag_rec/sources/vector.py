"""The FAISS source: the user's fused text + KG vector against every item's.

In: a `Catalogue` with its `ItemIndex` (item vectors), the KG vector size and the
history half-life; nothing to fit. Out: scores (queries x catalogue), inner products,
items added after the build included (their vectors are in the index); `-inf` for a
query with nothing to compare (no known history item, no text).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from rag_rec.embed import fuse, profile_vector
from rag_rec.sources.base import BaseSource, CandidateSource, Query


class Faiss(BaseSource):
    """The user's fused vector (recency- and rating-weighted history; a free text joins
    as a text-only vector) against every item in the FAISS index."""

    name = "faiss"

    def fit(self, train: pd.DataFrame, tune: pd.DataFrame | None, *,
            warm: CandidateSource | None = None, progress: bool = False) -> dict:
        self.catalogue.require_index(self.name)
        return {}

    def query_vector(self, query: Query) -> np.ndarray:
        index = self.catalogue.index
        parts, weights = [], []
        known = [(i, r) for i, r in query.history if i in index]
        if known:
            vecs = np.stack([index.vector(i) for i, _ in known])
            lo, hi = self.catalogue.rating_scale  # as 1-5 stars: itself on MovieLens
            parts.append(profile_vector(vecs, [1.0 + 4.0 * (r - lo) / (hi - lo)
                                               for _, r in known],
                                        self.catalogue.history_half_life))
            weights.append(1.0)
        if query.text is not None:
            parts.append(fuse(query.text, np.zeros(self.catalogue.kg_dim, np.float32)))
            weights.append(0.5 if known else 1.0)
        if not parts:
            return np.zeros(index.dim, dtype=np.float32)
        return sum(w * p for w, p in zip(weights, parts)).astype(np.float32)

    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        vectors = np.stack([self.query_vector(q) for q in queries])
        out = self.catalogue.index.dense_scores(vectors)
        out[~vectors.any(1)] = -np.inf  # nothing to compare with
        return out
