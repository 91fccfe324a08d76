"""The graph in memory: the `graph.Graph` protocol answered from a `Dataset` (and,
for an evaluation, the interactions a split shows at test time) instead of Neo4j.

For the fast test tier (the recommender and the HTTP, MCP and LlamaIndex adapters where
the graph is not the subject) and for benchmarks that serve a split build whole requests
(eval/bench_chat.py); the real graph's own tests, and serving, use Neo4j (`GraphClient`).
`candidate_facts` follows graph/queries/candidate_facts.cypher in spirit (paths through
history items rated 3 or more), not in its exact order and caps."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pandas as pd

from rag_rec.data import Dataset
from rag_rec.data.meta import rating_marks
from rag_rec.models import Fact, Item


class InMemoryGraph:
    """The `graph.Graph` protocol over a dataset: all of its interactions ("full"),
    or those of a split at test time."""

    def __init__(self, ds: Dataset, interactions: pd.DataFrame | None = None,
                 split_name: str = "full"):
        self.ds = ds
        self.split_name = split_name
        self.titles = ds.items["title"].to_dict()
        self.links: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for item_id, relation, entity_id in ds.triples.itertuples(index=False):
            self.links[item_id].append((relation, entity_id))
        # Entity-to-entity facts (triples.csv), held as the Neo4j ingest holds them; no
        # query of the protocol walks them yet.
        self.entity_links: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for head, relation, tail in ds.entity_triples.itertuples(index=False):
            self.entity_links[head].append((relation, tail))
        self.ratings = (ds.interactions if interactions is None else interactions
                        ).sort_values(["timestamp", "item_id"])
        self.closed = False

    def meta(self) -> dict[str, Any]:
        return {"dataset": self.ds.name, "fingerprint": self.ds.fingerprint,
                "split": self.split_name, "complete": True}

    def ingest_problem(self, meta: dict[str, Any] | None = None) -> str | None:
        return None

    def holds(self, ds: Dataset, split_name: str, meta: dict[str, Any] | None = None
              ) -> str | None:
        return None if (ds.fingerprint, split_name) == (self.ds.fingerprint,
                                                        self.split_name) else \
            "it holds other data"

    def user_history(self, user_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self.ratings[self.ratings.user_id == user_id].iloc[::-1].head(limit)
        return [{"item_id": r.item_id, "title": self.titles.get(r.item_id),
                 "rating": float(r.rating), "timestamp": int(r.timestamp)}
                for r in rows.itertuples(index=False)]

    def candidate_facts(self, item_ids: Sequence[str], history: dict[str, float | None],
                        per_candidate: int = 30, *, scale: tuple[float, float] | None = None
                        ) -> dict[str, list[Fact]]:
        """Paths candidate -> entity <- liked-enough history item, as the named query."""
        entities = self.ds.entities
        degree = self.ds.triples.entity_id.value_counts().to_dict()
        facts: dict[str, list[Fact]] = {i: [] for i in item_ids}
        min_rating = rating_marks(scale)[0]
        for candidate in item_ids:
            for relation, entity_id in self.links.get(candidate, []):
                for past, rating in history.items():
                    if past == candidate or (rating is not None and rating < min_rating):
                        continue
                    for past_relation, past_entity in self.links.get(past, []):
                        if past_entity == entity_id and len(facts[candidate]) < per_candidate:
                            facts[candidate].append(Fact(
                                candidate_id=candidate, candidate_title=self.titles[candidate],
                                relation=relation, entity_id=entity_id,
                                entity_name=entities.loc[entity_id, "name"],
                                entity_kind=entities.loc[entity_id, "kind"],
                                entity_degree=degree.get(entity_id, 0),
                                history_relation=past_relation, history_item_id=past,
                                history_title=self.titles[past], history_rating=rating))
        return facts

    def item_facts(self, item_id: str) -> list[dict[str, Any]]:
        if item_id not in self.titles:
            return []
        item = self.ds.items.loc[item_id]
        base = {"item_id": item_id, "title": item.title, "year": item.year,
                "genres": list(item.genres), "popularity": int(
                    (self.ratings.item_id == item_id).sum())}
        rows = [{**base, "relation": relation, "entity_id": entity_id,
                 "entity_name": self.ds.entities.loc[entity_id, "name"],
                 "entity_kind": self.ds.entities.loc[entity_id, "kind"]}
                for relation, entity_id in self.links.get(item_id, [])]
        return rows or [{**base, "relation": None, "entity_id": None, "entity_name": None,
                         "entity_kind": None}]

    def add_item(self, item: Item, links: Sequence[tuple[str, str]]) -> None:
        self.titles[item.id] = item.title
        self.links[item.id] = list(links)

    def close(self) -> None:
        self.closed = True
