"""The KG-path source: items sharing KG entities with the history, each path weighted.

In: a `Catalogue` with the KG's (item, relation, entity) triples, the largest entity
degree a path may go through (`retrieval.max_entity_degree`: hubs are skipped); nothing
to fit. Out: scores (queries x catalogue), the graph's `kg_path_candidates` as a sparse
product in memory (~1 ms instead of a Bolt round trip); an item written after the build
(new, or with new links) scored from the entities it was written with; `-inf` where no
path leads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from rag_rec.settings import RetrievalSettings, SourceSettings
from rag_rec.sources.base import (TRIPLE_COLUMNS, BaseSource, CandidateSource, Catalogue,
                                  Query, SourceUnavailable)


class KGPath(BaseSource):
    """Paths (history item)-[r]->(entity)<-[r']-(candidate), each weighted
    1/log2(1 + entity degree), entities above `max_entity_degree` items skipped; KG
    entities from a taste profile count as one-hop paths."""

    name = "kg_path"

    def __init__(self, catalogue: Catalogue,
                 max_entity_degree: int = RetrievalSettings.model_fields[
                     "max_entity_degree"].default) -> None:
        super().__init__(catalogue)
        self.max_entity_degree = max_entity_degree
        self.live_links: dict[str, list[str]] = {}
        """Item -> its entities, for items written after the build: they replace the
        item's links in the triples (a new item has none there)."""

    @classmethod
    def from_settings(cls, catalogue: Catalogue, settings: SourceSettings,
                      retrieval: RetrievalSettings) -> KGPath:
        return cls(catalogue, retrieval.max_entity_degree)

    def fit(self, train: pd.DataFrame, tune: pd.DataFrame | None, *,
            warm: CandidateSource | None = None, progress: bool = False) -> dict:
        self._links()
        return {}

    def add_item(self, item_id: str, entity_ids: Sequence[str]) -> None:
        super().add_item(item_id, entity_ids)
        self.live_links[item_id] = list(entity_ids)
        self._links()

    def _links(self) -> None:
        # As in the graph: an entity's degree counts its item links (one per relation),
        # and an item linked to an entity by two relations makes two paths through it.
        if self.catalogue.triples is None:
            raise SourceUnavailable("kg_path: the catalogue has no KG triples")
        built = self.catalogue.triples[TRIPLE_COLUMNS]
        t = pd.concat([built[~built.item_id.isin(self.live_links)],
                       pd.DataFrame([(i, "live", e) for i, entities in self.live_links.items()
                                     for e in entities], columns=TRIPLE_COLUMNS)])
        t = t[t.item_id.isin(self.column)].drop_duplicates()
        degree = t.groupby("entity_id").item_id.size()
        keep = degree[degree <= self.max_entity_degree]
        self.entity_column = {e: c for c, e in enumerate(keep.index)}
        t = t[t.entity_id.isin(self.entity_column)]
        weight = 1.0 / np.log2(1.0 + keep.to_numpy(dtype=np.float64))
        links = sp.csr_matrix((np.ones(len(t), np.float32),
                               (t.item_id.map(self.column).to_numpy(),
                                t.entity_id.map(self.entity_column).to_numpy())),
                              shape=(self.n_items, len(keep)))
        self.item_entity = links
        self.entity_item_weights = (links @ sp.diags(weight.astype(np.float32))).T.tocsr()

    def load(self, folder: Path) -> None:
        self._links()

    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        x = self.history_matrix([q.history for q in queries])
        paths = x @ self.item_entity  # paths through each entity
        seeds = [[self.entity_column[e] for e in q.entities if e in self.entity_column]
                 for q in queries]
        if any(seeds):
            named = sp.lil_matrix(paths.shape, dtype=np.float32)
            for r, cols in enumerate(seeds):
                for c in cols:
                    named[r, c] = 1.0
            paths = paths + named.tocsr()
        out = np.asarray((paths @ self.entity_item_weights).todense(), dtype=np.float32)
        out[np.asarray(paths.sum(1)).ravel() == 0] = -np.inf
        return out
