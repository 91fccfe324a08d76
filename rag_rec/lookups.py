"""What a recommender answers besides recommendations: whether the graph can serve this
build, health, a user's history, an item and its facts, similar items, name and title
lookups. (Adding and updating items: rag_rec/live/.)

`Lookups` is mixed into `Recommender` (rag_rec/recommender.py), whose parts it reads:
`artifacts`, `graph`, `sources`, `retriever`, `names`, `catalogue`. Every entry point
(Python, HTTP, MCP, LlamaIndex, CLI) calls these methods and adds nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, get_args

from rag_rec.chat import Match
from rag_rec.chat.request import MAX_K
from rag_rec.errors import (
    GraphMismatch,
    IngestIncomplete,
    InvalidRequest,
    UnknownItem,
    UnknownUser,
)
from rag_rec.models import Health, HistoryEntry, Item, ItemDetail, ItemFact

if TYPE_CHECKING:
    from rag_rec.recommender import Recommender

SearchKind = Literal["item", "genre", "dbpedia", "category", "entity", "decade"]
"""What a lookup searches: item titles, or graph names of a kind (`dbpedia`: people and
companies; `entity`: a catalogue's own, whatever triples.csv's `tail_kind` calls them)."""
SEARCH_KINDS: tuple[str, ...] = get_args(SearchKind)[:5]
"""The kinds searched when none are named (decades have their own filter)."""


class Lookups:
    def graph_problem(self: Recommender) -> IngestIncomplete | GraphMismatch | None:
        """What stops the graph from serving this build, from one meta read:
        `IngestIncomplete` while its last ingest is unfinished (answers would be partial),
        `GraphMismatch` unless it holds this build's data and split (an evaluation's
        `graph ingest --split` would otherwise leak rated items into the answers)."""
        meta = self.graph.meta()
        problem = self.graph.ingest_problem(meta)
        if problem is not None:
            return IngestIncomplete(problem)
        why = self.graph.holds(self.artifacts.ds, self.artifacts.split_name, meta)
        if why:
            split = self.artifacts.split_name
            fix = "rag-rec graph ingest" + (f" --split {split}" if split != "full" else "")
            return GraphMismatch(f"the graph does not match the build being served ({why}); "
                                 f"run `{fix}`")
        return None

    def check_graph(self: Recommender) -> None:
        """Every request that reads the graph passes here first (see `graph_problem`)."""
        problem = self.graph_problem()
        if problem is not None:
            raise problem

    async def health(self: Recommender) -> Health:
        """`down` when no full answer is possible: Neo4j unreachable, or its last ingest
        unfinished (recommendations are refused with `IngestIncomplete` then);
        `degraded` when only the LLM is missing."""
        try:
            problem = await asyncio.to_thread(self.graph_problem)
            neo4j = ("ok" if problem is None else
                     f"{'incomplete' if isinstance(problem, IngestIncomplete) else 'mismatch'}: "
                     f"{problem}")
        except Exception as exc:  # noqa: BLE001 - health reports, never raises
            neo4j = f"error: {exc}"
        if self.llm is None:
            llm = f"unavailable: {self.llm_error}"
        else:
            llm = "ok" if await self.llm.health() else "unreachable"
        status = "down" if neo4j != "ok" else ("ok" if llm == "ok" else "degraded")
        writes = self.write_status()
        return Health(status=status, neo4j=neo4j, llm=llm,
                      build=f"{self.artifacts.split_name}:{self.artifacts.key('scorer')}",
                      writes_since_build=writes.writes_since_build,
                      rebuild_due=writes.rebuild_due)

    def history(self: Recommender, user_id: str, limit: int = 1000) -> list[HistoryEntry]:
        """A user's ratings, newest first, at most `limit`. `UnknownUser` if the graph has
        none."""
        self.check_graph()
        rows = self.graph.user_history(user_id, limit=limit)
        if not rows:
            raise UnknownUser(f"unknown user id {user_id!r}")
        return [HistoryEntry(item=self.compact_item(self.artifacts.items[r["item_id"]]),
                             rating=r["rating"], timestamp=r["timestamp"]) for r in rows
                if r["item_id"] in self.artifacts.items]

    def item_detail(self: Recommender, item_id: str) -> ItemDetail:
        """An item with its KG facts. `UnknownItem` if the catalogue lacks it."""
        self.check_graph()
        rows = self.graph.item_facts(item_id)
        if not rows or item_id not in self.artifacts.items:
            raise UnknownItem(f"unknown item id {item_id!r}")
        facts = [ItemFact(relation=r["relation"], entity_id=r["entity_id"],
                          entity_name=r["entity_name"], entity_kind=r["entity_kind"])
                 for r in rows if r["entity_id"] is not None]
        return ItemDetail(item=self.artifacts.items[item_id],
                          popularity=rows[0]["popularity"] or 0, facts=facts)

    def similar_items(self: Recommender, item_id: str, k: int = 10
                      ) -> list[tuple[Item, float]]:
        """Nearest items in the fused text+KG space."""
        check_k(k)
        index = self.artifacts.index
        if item_id not in index:
            raise UnknownItem(f"unknown item id {item_id!r}")
        with self.live.memory:
            hits = index.search(index.vector(item_id), k,
                                exclude=[{item_id} | self.live.hidden])[0]
        return [(self.compact_item(self.artifacts.items[i]), s) for i, s in hits]

    def search(self: Recommender, query: str, k: int = 10,
               kinds: Sequence[str] = SEARCH_KINDS) -> list[Match]:
        """Items by title and graph entities (genres, people and companies, categories, a
        catalogue's own entities) by name, best first: how an assistant turns "Toy Story"
        into an item id, or checks a name before filtering on it."""
        check_k(k)
        query = query.strip()
        if not query or len(query) > 200:
            raise InvalidRequest("the search text must be 1-200 characters")
        unknown = set(kinds) - set(get_args(SearchKind))
        if unknown:
            raise InvalidRequest(f"unknown kinds {sorted(unknown)}; valid: "
                             f"{', '.join(get_args(SearchKind))}")
        with self.live.memory:
            return self.names.search(query, kinds=kinds, limit=k)


def check_k(k: int) -> None:
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidRequest(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
