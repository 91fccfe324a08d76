"""What every candidate source shares: the protocol, its input and the helpers.

In: a `Catalogue` (the item ids in index order, and the content some sources read: item
vectors, KG triples), built from arrays or from a build's `Artifacts` by
`Catalogue.of`. Out: `Query` (what a source scores for), the `CandidateSource` protocol,
`BaseSource` (the catalogue's column order and interaction matrices in it), and the
tuning helpers the fitted sources share (`histories_of`, `held_out_matrices`,
`tuning_ndcg`). A source that cannot fit raises `SourceUnavailable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rag_rec.errors import RagRecError
from rag_rec.metrics import ndcg_at
from rag_rec.settings import RetrievalSettings, SourceSettings

if TYPE_CHECKING:
    from typing import Self

    from rag_rec.artifacts import Artifacts
    from rag_rec.index import ItemIndex

TRIPLE_COLUMNS = ["item_id", "relation", "entity_id"]


class SourceUnavailable(RagRecError):
    """A source cannot fit these data (too few interactions, catalogue too large)."""


@dataclass
class Query:
    """What a source scores for: one user's situation."""

    history: list[tuple[str, float]]
    """(item id, rating), oldest first."""
    text: np.ndarray | None = None
    """A free-text taste in the text half of the index space (new users)."""
    entities: tuple[str, ...] = ()
    """KG entity ids named by a taste profile (new users)."""


@dataclass(frozen=True)
class Catalogue:
    """The items a source scores, in score-column order, and the content it may read."""

    item_ids: list[str]
    """Item ids in index order. A live list: an item added after fitting is appended
    here (by `ItemIndex.add`) before the sources hear of it through `add_item`."""
    index: ItemIndex | None = None
    """The items' fused text + KG vectors (the FAISS source; SASRec's content inputs).
    When given, `item_ids` is its id list."""
    triples: pd.DataFrame | None = None
    """The KG's (item_id, relation, entity_id) links (the KG-path source)."""
    kg_dim: int = 0
    """Size of the KG half of the index vectors (a free text's vector leaves it zero)."""
    history_half_life: float = 20.0
    """A history item this many items older than the newest counts half as much (the
    FAISS source's user vector; the build's `embed.history_half_life`)."""
    rating_scale: tuple[float, float] = (1.0, 5.0)
    """The dataset's rating scale: the FAISS source weighs a history rating by its place
    on 1-5 stars (`DatasetMeta.rating_scale`; 1-5 without ratings)."""

    @classmethod
    def of(cls, artifacts: Artifacts) -> Catalogue:
        """The catalogue of a build: its index (and id list), KG triples and sizes."""
        return cls(item_ids=artifacts.index.ids, index=artifacts.index,
                   triples=artifacts.ds.triples[TRIPLE_COLUMNS], kg_dim=artifacts.kg.dim,
                   history_half_life=artifacts.embed.history_half_life,
                   rating_scale=artifacts.ds.meta.rating_scale or (1.0, 5.0))

    def require_index(self, source: str) -> ItemIndex:
        if self.index is None:
            raise SourceUnavailable(f"{source}: the catalogue has no item vectors")
        return self.index


class CandidateSource(Protocol):
    """The interface every source implements (registered by name in `source_resolver`)."""

    name: ClassVar[str]

    def fit(self, train: pd.DataFrame, tune: pd.DataFrame | None, *,
            warm: CandidateSource | None = None, progress: bool = False) -> dict:
        """Learn from `train`; choose knobs on `tune` (user_id, item_id: the items to
        find given each user's `train` history), or take them from `warm`, a copy fit
        on a subset. Returns a report (times, chosen knobs)."""

    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        """(len(queries), catalogue) scores, higher is better; -inf where unknown."""

    def add_item(self, item_id: str, entity_ids: Sequence[str]) -> None: ...

    def save(self, folder: Path) -> None: ...

    def load(self, folder: Path) -> None: ...


class BaseSource:
    """Shared plumbing: the catalogue order, and interaction matrices in it."""

    name: ClassVar[str]

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.column = {i: c for c, i in enumerate(catalogue.item_ids)}
        """Item id -> score column; grows with `add_item`."""

    @classmethod
    def from_settings(cls, catalogue: Catalogue, settings: SourceSettings,
                      retrieval: RetrievalSettings) -> Self:
        """This source with its own section of the settings (a source without knobs
        reads none)."""
        return cls(catalogue)

    @property
    def n_items(self) -> int:
        return len(self.catalogue.item_ids)

    def history_matrix(self, histories: Sequence[Sequence[tuple[str, float]]],
                       n_cols: int | None = None) -> sp.csr_matrix:
        """Binary (histories x items) matrix; items outside the first `n_cols` dropped."""
        n_cols = n_cols or self.n_items
        rows, cols = [], []
        for r, history in enumerate(histories):
            for item_id, _ in history:
                c = self.column.get(item_id)
                if c is not None and c < n_cols:
                    rows.append(r)
                    cols.append(c)
        data = np.ones(len(rows), dtype=np.float32)
        m = sp.csr_matrix((data, (rows, cols)), shape=(len(histories), n_cols))
        m.data[:] = 1.0  # duplicates summed by the constructor count once
        return m

    @staticmethod
    def _grid(options: Sequence, warm_choice: object | None,
              tune: pd.DataFrame | None) -> list:
        """The knob values a fit tries: the warm fit's choice, else the whole grid when
        there are tuning items to choose on, else the middle of the grid."""
        if warm_choice is not None:
            return [warm_choice]
        if tune is not None and len(tune):
            return list(options)
        return [options[len(options) // 2]]

    def _pad(self, scores: np.ndarray) -> np.ndarray:
        """Columns for items added after fitting: -inf (the source cannot score them)."""
        missing = self.n_items - scores.shape[1]
        if missing <= 0:
            return scores
        return np.concatenate(
            [scores, np.full((len(scores), missing), -np.inf, np.float32)], axis=1)

    def add_item(self, item_id: str, entity_ids: Sequence[str]) -> None:
        """An item joined the catalogue (the index) after the fit, or a known one was
        written again with these links; a source that cannot score a new one pads its
        column with -inf."""
        if item_id not in self.column:
            self.column[item_id] = len(self.column)

    def save(self, folder: Path) -> None:
        pass

    def load(self, folder: Path) -> None:
        pass


def histories_of(inter: pd.DataFrame) -> dict[str, list[tuple[str, float]]]:
    """User id -> (item id, rating) oldest first (ties by item id)."""
    ordered = inter.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    return {u: list(zip(g.item_id, g.rating.astype(float)))
            for u, g in ordered.groupby("user_id", sort=True)}


def held_out_matrices(histories: dict[str, list[tuple[str, float]]], targets: pd.DataFrame,
                      col: dict[str, int]) -> tuple[list[Query], np.ndarray, np.ndarray]:
    """For the users with both a history and `targets`: their queries, and (users x items)
    masks of what they have seen and what they went on to choose."""
    users = sorted(set(targets.user_id) & set(histories))
    seen = np.zeros((len(users), len(col)), dtype=bool)
    target = np.zeros_like(seen)
    for r, u in enumerate(users):
        seen[r, [col[i] for i, _ in histories[u] if i in col]] = True
    row = {u: r for r, u in enumerate(users)}
    t = targets[targets.user_id.isin(row) & targets.item_id.isin(col)]
    target[t.user_id.map(row).to_numpy(), t.item_id.map(col).to_numpy()] = True
    return [Query(histories[u]) for u in users], seen, target


def tuning_ndcg(source: CandidateSource, histories: dict[str, list[tuple[str, float]]],
                tune: pd.DataFrame, col: dict[str, int]) -> float:
    """NDCG@10 of `source` at finding each tuning user's `tune` items, full ranking over
    the items not in their history: the knob-choosing metric of EASE and SASRec."""
    queries, seen, target = held_out_matrices(histories, tune, col)
    return ndcg_at(source.scores(queries), seen & ~target, target, 10)
