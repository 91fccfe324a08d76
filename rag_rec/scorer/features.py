"""The scorer's inputs: a build's item and user vectors, and the side features.

In: one build's artifacts (the fused [text ⊕ KG] item vectors, the KG user vectors, the
popularity counts) and, per query, a history and the retrieval's source features
(`retrieve.Retrieval.features`). Out: the tensors `model.AttentionScorer` reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from rag_rec.artifacts import Artifacts
from rag_rec.embed import user_node
from rag_rec.retrieve import FEATURES_PER_SOURCE
from rag_rec.settings import ScorerSettings

if TYPE_CHECKING:
    from rag_rec.retrieve import Retrieval


class Featurizer:
    """Turns (history, candidates with their source features) into the scorer's
    tensors, from one build's artifacts."""

    def __init__(self, artifacts: Artifacts, cfg: ScorerSettings):
        self.a = artifacts
        self.cfg = cfg
        self.item_ids = list(artifacts.index.ids)
        self.row = {i: r + 1 for r, i in enumerate(self.item_ids)}  # 0 = padding
        dim = artifacts.index.dim
        # Ablations zero one half of the fused [text ⊕ KG] vectors (and the user's KG
        # vector with the KG half), everywhere the scorer reads them.
        text_dim = dim - artifacts.kg.dim
        self.mask = np.ones(dim, dtype=np.float32)
        self.mask[:text_dim] = float(cfg.use_text)
        self.mask[text_dim:] = float(cfg.use_kg)
        feats = np.zeros((len(self.item_ids) + 1, dim), dtype=np.float32)
        self.trained = np.zeros(len(self.item_ids) + 1, dtype=bool)
        """Per feature row: the item has train interactions (row 0, padding and items added
        since the build: no), so the sources' scores speak for it."""
        for item_id, r in self.row.items():
            feats[r] = artifacts.index.vector(item_id) * self.mask
            self.trained[r] = artifacts.popularity.get(item_id, 0) > 0
        self.features = torch.from_numpy(feats)

    def user_kg(self, user_id: str | None) -> np.ndarray:
        vec = self.a.kg.of(user_node(user_id)) if user_id and self.cfg.use_kg else None
        return vec if vec is not None else np.zeros(self.a.kg.dim, dtype=np.float32)

    def history_rows(self, history: list[tuple[str, float]]) -> list[int]:
        """The last `max_history` known history items, newest first (position 0)."""
        known = [i for i, _ in history if i in self.row][-self.cfg.max_history:]
        return [self.row[i] for i in reversed(known)]

    @staticmethod
    def side_width(n_sources: int) -> int:
        """Columns of `side` for `n_sources` sources: their features and the length."""
        return FEATURES_PER_SOURCE * n_sources + 1

    def side(self, history: list[tuple[str, float]], source_features: np.ndarray) -> np.ndarray:
        length = np.full((len(source_features), 1), np.log1p(len(history)) / np.log1p(1000),
                         dtype=np.float32)
        return np.nan_to_num(np.concatenate([source_features, length], axis=1),
                             nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def batch(self, history: list[tuple[str, float]], user_id: str | None,
              r: Retrieval) -> tuple[torch.Tensor, ...]:
        """Tensors for one user's history (oldest first) against the retrieved candidates."""
        rows = self.history_rows(history)
        hist = torch.zeros(len(r.items), self.cfg.max_history, dtype=torch.long)
        if rows:
            hist[:, :len(rows)] = torch.tensor(rows)
        cand = torch.tensor([self.row.get(i, 0) for i in r.items])
        user = torch.from_numpy(np.tile(self.user_kg(user_id), (len(r.items), 1)))
        return cand, hist, user, torch.from_numpy(self.side(history, r.features))
