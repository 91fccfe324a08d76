"""The graph in memory: the `graph.Graph` protocol answered from a `Dataset` (and,
for an evaluation, the interactions a split shows at test time) instead of Neo4j.

For the fast test tier (the recommender and the HTTP, MCP and LlamaIndex adapters where
the graph is not the subject) and for benchmarks that serve a split build whole requests
(eval/bench_chat.py); the real graph's own tests, and serving, use Neo4j (`GraphClient`).
`candidate_facts` follows graph/queries/candidate_facts.cypher in spirit (paths through
history items rated 3 or more), not in its exact order and caps. `write` answers the
live-write queries (rag_rec/live/) as graph/queries/ does, in memory: the graph is
`volatile` (a restart forgets it), so the writer replays its journal into it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from rag_rec.data import Dataset
from rag_rec.data.meta import rating_marks
from rag_rec.models import Fact


class InMemoryGraph:
    """The `graph.Graph` protocol over a dataset: all of its interactions ("full"),
    or those of a split at test time."""

    volatile = True
    """Forgets its writes on restart (Neo4j keeps them): the live writer replays them."""

    def __init__(self, ds: Dataset, interactions: pd.DataFrame | None = None,
                 split_name: str = "full"):
        self.ds = ds
        self.split_name = split_name
        self.titles = ds.items["title"].to_dict()
        self.links: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for item_id, relation, entity_id in ds.triples.itertuples(index=False):
            self.links[item_id].append((relation, entity_id))
        self.ratings = (ds.interactions if interactions is None else interactions
                        ).sort_values(["timestamp", "item_id"])
        self._rows_of: dict[str, np.ndarray] | None = None
        """User -> positions in `ratings`, made on the first history read after a write
        (a scan of every rating per read cost 84 ms a request at ML-1M's size)."""
        self.items = {i: {"title": r.title, "year": r.year, "genres": list(r.genres)}
                      for i, r in ds.items.iterrows()}
        self.hidden: set[str] = set()
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
        if self._rows_of is None:
            self._rows_of = self.ratings.groupby("user_id", sort=False).indices
        rows = self.ratings.iloc[self._rows_of.get(user_id, [])].sort_values(
            ["timestamp", "item_id"], kind="stable").iloc[::-1].head(limit)
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
        item = self.items[item_id]
        base = {"item_id": item_id, "title": item["title"], "year": item["year"],
                "genres": list(item["genres"]), "popularity": int(
                    (self.ratings.item_id == item_id).sum())}
        rows = [{**base, "relation": relation, "entity_id": entity_id,
                 "entity_name": self.ds.entities.loc[entity_id, "name"],
                 "entity_kind": self.ds.entities.loc[entity_id, "kind"]}
                for relation, entity_id in self.links.get(item_id, [])]
        return rows or [{**base, "relation": None, "entity_id": None, "entity_name": None,
                         "entity_kind": None}]

    def write(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """The live-write queries of graph/queries, with their rows."""
        if name == "record_interaction":
            return self._record_interaction(**params)
        if name == "upsert_item":
            item = params["item"]
            self.ds.add_entities((e["id"], e["name"], e["kind"]) for e in params["entities"])
            self.titles[item["id"]] = item["title"]
            self.items[item["id"]] = {k: item[k] for k in ("title", "year", "genres")}
            self.links[item["id"]] = [(link["type"].lower(), link["entity_id"])
                                      for link in params["links"]
                                      if link["entity_id"] in self.ds.entities.index]
            return []
        if name == "hide_item":
            if params["item_id"] not in self.titles:
                return []
            was = params["item_id"] in self.hidden
            (self.hidden.add if params["hidden"] else self.hidden.discard)(params["item_id"])
            return [{"was_hidden": was}]
        raise ValueError(f"{name!r} is not a write query")

    def _record_interaction(self, user_id: str, item_id: str, rating: float,
                            timestamp: int | None, now: int) -> list[dict[str, Any]]:
        if item_id not in self.titles:
            return []
        r, self._rows_of = self.ratings, None
        at = r.index[(r.user_id == user_id) & (r.item_id == item_id)]
        if len(at) == 0:
            time = now if timestamp is None else timestamp
            row = pd.DataFrame([{"user_id": user_id, "item_id": item_id, "rating": rating,
                                 "timestamp": time}]).astype(r.dtypes.to_dict())
            self.ratings = pd.concat([r, row], ignore_index=True)
            return [{"outcome": "created", "timestamp": time}]
        was = (float(r.at[at[0], "rating"]), int(r.at[at[0], "timestamp"]))
        time = was[1] if timestamp is None else timestamp
        r.loc[at[0], ["rating", "timestamp"]] = [rating, time]
        return [{"outcome": "unchanged" if was == (rating, time) else "updated",
                 "timestamp": time}]

    def close(self) -> None:
        self.closed = True
