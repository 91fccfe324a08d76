"""The scorer's inputs: the named side-feature columns, and the tensors built from them.

In: a list of source names (`FeatureSchema`), one build's artifacts (the fused [text ⊕ KG]
item vectors, the KG user vectors, the popularity counts) and, per query, a history and
the retrieval's source features (`retrieve.Retrieval.features`, written by name through
the same schema). Out: the tensors `model.AttentionScorer` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import torch

from rag_rec.artifacts import Artifacts
from rag_rec.embed import user_node
from rag_rec.settings import ScorerSettings

if TYPE_CHECKING:  # retrieve.py writes its features through this module's schema
    from rag_rec.retrieve import Retrieval

SOURCE_KINDS = ("score", "rank")
"""What the retrieval gives per source and candidate: `score`, the source's score
standardised over the user's unseen items (clipped to ±10); `rank`, 1/log2(2 + the
candidate's rank among them). Both 0 where the source has no score for it."""
HISTORY_COLUMNS = ("history.length",)
"""Per-list columns after the sources': `history.length`, log1p(length) / log1p(1000)."""


def column(source: str, kind: str) -> str:
    """The name of source `source`'s column of kind `kind` (`ease.score`)."""
    return f"{source}.{kind}"


@dataclass(frozen=True)
class FeatureSchema:
    """The scorer's side-feature columns for `sources`, by name and in order: per source
    (in the given order) each of `SOURCE_KINDS`, then `HISTORY_COLUMNS`.

    The retrieval writes the source columns (`columns()`) and the featurizer appends the
    history ones: the source columns come first, so a source column's `index` is the same
    in a retrieval's features and in the side features. A checkpoint records `names` and
    is refused by a version whose schema differs (`difference`)."""

    sources: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Every column, in order."""
        return self.columns() + HISTORY_COLUMNS

    @cached_property
    def _position(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def columns(self, kind: str | None = None, *, source: str | None = None
                ) -> tuple[str, ...]:
        """The source columns in order, only those of `kind` and/or `source` if given."""
        return tuple(column(s, k) for s in self.sources for k in SOURCE_KINDS
                     if kind in (None, k) and source in (None, s))

    def index(self, name: str) -> int:
        """The position of column `name`; `KeyError` naming the valid ones."""
        try:
            return self._position[name]
        except KeyError:
            raise KeyError(f"no feature column {name!r}; the schema has "
                           f"{', '.join(self.names)}") from None

    def indices(self, names: Sequence[str]) -> list[int]:
        return [self.index(n) for n in names]

    def difference(self, saved: Sequence[str]) -> str:
        """How the columns `saved` (a checkpoint's) differ from these, in words; "" when
        they are the same."""
        saved = list(saved)
        parts = []
        missing = [n for n in self.names if n not in saved]
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        extra = [n for n in saved if n not in self._position]
        if extra:
            parts.append(f"extra {', '.join(extra)}")
        shared = [n for n in saved if n in self._position]
        moved = [a for a, b in zip(shared, [n for n in self.names if n in saved]) if a != b]
        if moved:
            parts.append(f"reordered {', '.join(moved)}")
        return "; ".join(parts)


class Featurizer:
    """Turns (history, candidates with their source features) into the scorer's
    tensors, from one build's artifacts, for the sources of `schema`."""

    def __init__(self, artifacts: Artifacts, cfg: ScorerSettings, sources: Sequence[str]):
        self.artifacts = artifacts
        self.cfg = cfg
        self.schema = FeatureSchema(tuple(sources))
        self._source_columns = self.schema.indices(self.schema.columns())
        self.item_ids = list(artifacts.index.ids)
        self.row = {i: r + 1 for r, i in enumerate(self.item_ids)}  # 0 = padding
        dim = artifacts.index.dim
        # Ablations zero one half of the fused [text ⊕ KG] vectors (and the user's KG
        # vector with the KG half), everywhere the scorer reads them.
        text_dim = dim - artifacts.kg.dim
        self.mask = np.ones(dim, dtype=np.float32)
        self.mask[:text_dim] = float(cfg.use_text)
        self.mask[text_dim:] = float(cfg.use_kg)
        item_vectors = np.zeros((len(self.item_ids) + 1, dim), dtype=np.float32)
        self.trained = np.zeros(len(self.item_ids) + 1, dtype=bool)
        """Per feature row: the item has train interactions (row 0, padding and items added
        since the build: no), so the sources' scores speak for it."""
        for item_id, row in self.row.items():
            item_vectors[row] = artifacts.index.vector(item_id) * self.mask
            self.trained[row] = artifacts.popularity.get(item_id, 0) > 0
        self.features = torch.from_numpy(item_vectors)

    def user_kg(self, user_id: str | None) -> np.ndarray:
        kg = self.artifacts.kg
        vec = kg.of(user_node(user_id)) if user_id and self.cfg.use_kg else None
        return vec if vec is not None else np.zeros(kg.dim, dtype=np.float32)

    def history_rows(self, history: list[tuple[str, float]]) -> list[int]:
        """The last `max_history` known history items, newest first (position 0)."""
        known = [i for i, _ in history if i in self.row][-self.cfg.max_history:]
        return [self.row[i] for i in reversed(known)]

    def side(self, history: list[tuple[str, float]], source_features: np.ndarray) -> np.ndarray:
        """The side features (candidates, len(schema)): the retrieval's source columns
        and the history's, finite."""
        side = np.zeros((len(source_features), len(self.schema)), dtype=np.float32)
        side[:, self._source_columns] = source_features
        side[:, self.schema.index("history.length")] = np.log1p(len(history)) / np.log1p(1000)
        return np.nan_to_num(side, nan=0.0, posinf=0.0, neginf=0.0)

    def batch(self, history: list[tuple[str, float]], user_id: str | None,
              retrieval: Retrieval) -> tuple[torch.Tensor, ...]:
        """Tensors for one user's history (oldest first) against the retrieved candidates:
        (candidate rows, history rows, user KG vectors, side features)."""
        rows = self.history_rows(history)
        n = len(retrieval.items)
        hist = torch.zeros(n, self.cfg.max_history, dtype=torch.long)
        if rows:
            hist[:, :len(rows)] = torch.tensor(rows)
        cand = torch.tensor([self.row.get(i, 0) for i in retrieval.items])
        user = torch.from_numpy(np.tile(self.user_kg(user_id), (n, 1)))
        return cand, hist, user, torch.from_numpy(self.side(history, retrieval.features))
