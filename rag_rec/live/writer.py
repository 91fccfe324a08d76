"""Live writes on a serving `Recommender`: record an interaction, add or update an item,
hide or show one. Mixed into `Recommender` as `LiveWrites` (like `Lookups`); every entry
point (Python, HTTP, MCP) calls these methods and adds nothing.

Each write runs, under one writer lock (concurrent writes are serialised, none lost):

    validate (ids, scale, names -> entity ids or, when asked, new entities; the item's
              text vector)
      -> graph: one transaction with the named query (graph/queries/record_interaction,
         upsert_item, hide_item); Neo4j down -> `GraphUnavailable` (503), nothing written
      -> journal: one fsync'd JSON line (rag_rec/live/journal.py); a disk error -> the
         write is not acknowledged, and retrying it is harmless (every query is idempotent)
      -> memory: the catalogue, the FAISS index, the sources' columns, names, hidden set

A write that repeats the current state is `unchanged` and touches nothing. Effects:
the next `recommend` reads the user's history from the graph (so an interaction counts
at once for every history-conditioned source and the scorer); a new item is in the index
and the content sources (FAISS, KG paths) at once, scored from its content; a hidden item
is excluded from every answer from then on. The interaction-trained sources learn new
items and users only in the next build (`writes_since_build`, `rebuild_due`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from rag_rec.data.generic import DEFAULT_TAIL_KIND, entity_id
from rag_rec.errors import InvalidRequest, UnknownItem, UnknownName, WriteNotRecorded
from rag_rec.live.journal import Journal, journal_path
from rag_rec.live.models import (
    InteractionWrite,
    ItemWrite,
    Outcome,
    WriteResult,
    WriteStatus,
)
from rag_rec.models import Item

if TYPE_CHECKING:
    import pandas as pd

    from rag_rec.chat.names import NameIndex
    from rag_rec.data import Dataset
    from rag_rec.graph import Graph
    from rag_rec.recommender import Recommender

log = logging.getLogger("rag_rec.live")

RELATION = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
GENRE_PREFIX = "genre:"
LIVE_ENTITY_KIND = DEFAULT_TAIL_KIND
"""The kind of an entity an item write creates: a triples.csv tail's without a
`tail_kind`, so an export folds it back in unchanged."""


class LiveState:
    """What live writes changed in memory, the journal behind it and the writer lock."""

    def __init__(self, rec: Recommender):
        artifacts = rec.artifacts
        self.lock = threading.Lock()
        """Serialises writes."""
        self.memory = threading.RLock()
        """Held while memory changes (an item's index row, source columns, names) and
        while ranking or searching reads them: FAISS and the sources' column maps are
        not safe to change under a concurrent read."""
        self.hidden: set[str] = set(artifacts.ds.hidden)
        self.journal = Journal(journal_path(rec.settings.home, artifacts.split_name,
                                            artifacts.ds.fingerprint))
        self.count = 0
        self.meta = artifacts.ds.meta
        """The catalogue's rating scale (None: no ratings) and what an unrated
        interaction stands in as (`top_rating`), as the build read them."""
        self.replayed: list[dict[str, Any]] = []
        """Journal entries to write again into a graph that forgot them (in memory)."""

    def close(self) -> None:
        self.journal.close()


class LiveWrites:
    live: LiveState

    # -- entry points

    def record_interaction(self: Recommender, user_id: str, item_id: str,
                           rating: float | None = None,
                           timestamp: int | None = None) -> WriteResult:
        """`user_id` interacted with `item_id` (a rating on the catalogue's scale, or
        none: a positive interaction). Unknown users are created; an unknown item is
        `UnknownItem`, a rating off the scale `InvalidRequest`. Repeating it is
        `unchanged`; without a timestamp a new interaction is recorded now."""
        write = InteractionWrite(user_id=user_id, item_id=item_id, rating=rating,
                                 timestamp=timestamp)
        if write.item_id not in self.artifacts.items:
            raise UnknownItem(f"unknown item id {write.item_id!r}: add it first "
                              "(PUT /v1/items/{id}, `upsert_item`)")
        scale = self.live.meta.rating_scale
        if scale is None and write.rating is not None:
            raise InvalidRequest("rating: this catalogue has no ratings; record the "
                                 "interaction without one")
        low, high = scale or (self.live.meta.top_rating,) * 2
        value = self.live.meta.top_rating if write.rating is None else write.rating
        if not low <= value <= high:
            raise InvalidRequest(f"rating: {write.rating:g} is outside the catalogue's "
                                 f"scale [{low:g}, {high:g}]")
        with self.live.lock:
            self.check_graph()
            rows = self.graph.write("record_interaction", user_id=write.user_id,
                                    item_id=write.item_id, rating=value,
                                    timestamp=write.timestamp, now=int(time.time()))
            if not rows:
                raise UnknownItem(f"item {write.item_id!r} is not in the graph: run "
                                  "`rag-rec graph ingest`")
            outcome = rows[0]["outcome"]
            if outcome != "unchanged":
                self._journal("interaction", {**write.model_dump(), "rating": value,
                                              "timestamp": int(rows[0]["timestamp"])})
        return self._result(outcome, "interaction", f"{write.user_id}/{write.item_id}")

    def upsert_item(self: Recommender, item: ItemWrite | dict[str, Any]) -> WriteResult:
        """Add an item, or update one (title, year, text, categories, facts): it is
        retrievable and scored from its content by the next request. Facts name
        entities the graph holds, by name or id (`UnknownName` otherwise); categories
        that match a genre become links, others stay on the item only (noted)."""
        write = item if isinstance(item, ItemWrite) else ItemWrite.model_validate(item)
        resolved = self._resolve(write)
        model, links, notes = resolved.item, resolved.links, resolved.notes
        old = self.artifacts.items.get(write.id)
        if old == model and sorted(self.catalogue.links.get(write.id, [])) == links:
            return self._result("unchanged", "item", write.id, notes)
        vectors = self._item_vector(resolved)
        with self.live.lock:
            self.check_graph()
            self.graph.write("upsert_item", **_graph_item(resolved))
            self._journal("item", write.model_dump(mode="json"))
            notes += self._apply_item(resolved, *vectors)
        return self._result("created" if old is None else "updated", "item", write.id,
                            notes)

    def hide_item(self: Recommender, item_id: str) -> WriteResult:
        """Never recommend `item_id` from now on (it stays in histories and lookups)."""
        return self._set_hidden(item_id, True)

    def unhide_item(self: Recommender, item_id: str) -> WriteResult:
        """Recommend a hidden item again."""
        return self._set_hidden(item_id, False)

    def write_status(self: Recommender) -> WriteStatus:
        after = self.settings.writes.retrain_after
        return WriteStatus(writes_since_build=self.live.count, retrain_after=after,
                           rebuild_due=self.live.count >= after,
                           journal=str(self.live.journal.path))

    # -- steps

    def _set_hidden(self: Recommender, item_id: str, hidden: bool) -> WriteResult:
        kind = "hide" if hidden else "unhide"
        if item_id not in self.artifacts.items:
            raise UnknownItem(f"unknown item id {item_id!r}")
        if (item_id in self.live.hidden) == hidden:
            return self._result("unchanged", kind, item_id)
        with self.live.lock:
            self.check_graph()
            self.graph.write("hide_item", item_id=item_id, hidden=hidden)
            self._journal(kind, {"item_id": item_id})
            (self.live.hidden.add if hidden else self.live.hidden.discard)(item_id)
        return self._result("updated", kind, item_id)

    def _journal(self: Recommender, kind: str, data: dict[str, Any]) -> None:
        try:
            self.live.journal.append(kind, data)
        except OSError as exc:
            raise WriteNotRecorded(
                f"the write could not be journalled at {self.live.journal.path} ({exc}); "
                "it is not acknowledged: retry it once the disk is writable (the graph "
                "may hold it already; a retry is idempotent)") from None
        self.live.count += 1
        log.info("write accepted", extra={"fields": {"kind": kind, **{
            k: v for k, v in data.items() if k in ("user_id", "item_id", "id")}}})

    def _result(self: Recommender, outcome: Outcome, kind: str, ident: str,
                notes: Iterable[str] = ()) -> WriteResult:
        return WriteResult(outcome=outcome, kind=kind, id=ident,
                           writes_since_build=self.live.count, notes=list(notes))

    def _resolve(self: Recommender, write: ItemWrite) -> ResolvedItem:
        entities = self.artifacts.ds.entities
        links, created = resolve_facts(write.facts, entities, self.names,
                                       create=write.new_entities)
        notes = [f"new entity {name!r} ({ident})" for ident, name in created.items()]
        decade = f"decade:{write.year // 10 * 10}s" if write.year is not None else None
        if decade in entities.index:  # as the build's side KG links every dated item
            links.add(("released_in_decade", decade))
        for category in write.categories:
            genre = GENRE_PREFIX + category
            if genre in entities.index:
                links.add(("has_genre", genre))
            else:
                notes.append(f"category {category!r} is not a genre the graph holds: kept "
                             "on the item, not linked")
        model = Item(id=write.id, title=write.title, year=write.year,
                     genres=tuple(write.categories), abstract=write.text)
        return ResolvedItem(model, sorted(links), created, notes)

    def _item_vector(self: Recommender, resolved: ResolvedItem
                     ) -> tuple[np.ndarray, np.ndarray]:
        """The item's index vector (text + KG from its links) and its text vector."""
        from rag_rec.embed import fuse, item_text, new_item_kg_vector

        artifacts = self.artifacts
        entities = artifacts.ds.entities
        names = [resolved.created.get(e) or entities.loc[e, "name"]
                 for rel, e in resolved.links if rel not in ("has_genre", "released_in_decade")]
        text_vec = self._text_vector(item_text(resolved.item, names))
        # An entity created by the write has no KG vector: the others speak for the item.
        kg_vec = new_item_kg_vector(artifacts.kg, artifacts.ds.triples,
                                    [e for _, e in resolved.links],
                                    self.settings.retrieval.max_entity_degree)
        return fuse(text_vec, kg_vec), text_vec

    def _apply_item(self: Recommender, resolved: ResolvedItem, vector: np.ndarray,
                    text_vec: np.ndarray) -> list[str]:
        """The write's effect in memory (cannot fail on valid input: it runs after the
        graph and the journal took the write)."""
        with self.live.memory:
            add_created(self.artifacts.ds, self.names, resolved.created)
            return self._apply_item_locked(resolved.item, resolved.links, vector, text_vec)

    def _apply_item_locked(self: Recommender, item: Item, links: list[tuple[str, str]],
                           vector: np.ndarray, text_vec: np.ndarray) -> list[str]:
        artifacts, notes = self.artifacts, []
        old = artifacts.items.get(item.id)
        if old is None:
            artifacts.index.add([item.id], vector[None, :])
            artifacts.popularity[item.id] = 0
        else:
            if not artifacts.index.replace(item.id, vector):
                notes.append("the approximate (HNSW) index keeps the item's old vector "
                             "until the next build")
            for key in _aliases(old.title):
                ids = self.names.by_title.get(key, [])
                if item.id in ids:
                    ids.remove(item.id)
        # A new item gets its column; the KG-path source follows a known one's new links.
        for source in self.sources.values():
            source.add_item(item.id, [e for _, e in links])
        if old is None:
            self.retriever.refresh_tail()
        artifacts.items[item.id] = item
        artifacts.text[item.id] = text_vec
        self.names.add_title(item.id, item.title)
        self.catalogue.add_item(item.id, item.year, links, self.retriever.is_tail(item.id))
        return notes

    # -- restart

    def replay_writes(self: Recommender) -> None:
        """Apply the journal's writes to memory (start-up). The graph already holds
        them (Neo4j is durable); a volatile graph gets them in `replay_into`."""
        for entry in self.live.journal.entries():
            kind, data = entry["kind"], entry["data"]
            self.live.count += 1
            self.live.replayed.append(entry)
            if kind == "item":
                resolved = self._resolve(ItemWrite.model_validate(data))
                self._apply_item(resolved, *self._item_vector(resolved))
            elif kind in ("hide", "unhide"):
                (self.live.hidden.add if kind == "hide" else self.live.hidden.discard)(
                    data["item_id"])
        if self.live.count:
            log.info("replayed %d live writes from %s", self.live.count,
                     self.live.journal.path)

    def replay_into(self: Recommender, graph: Graph) -> None:
        """Write the journal again into a graph that forgets on restart (in memory)."""
        for entry in self.live.replayed:
            kind, data = entry["kind"], entry["data"]
            if kind == "interaction":
                graph.write("record_interaction", **data, now=int(entry["ts"]))
            elif kind == "item":
                graph.write("upsert_item",
                            **_graph_item(self._resolve(ItemWrite.model_validate(data))))
            else:
                graph.write("hide_item", item_id=data["item_id"], hidden=kind == "hide")


class ResolvedItem(NamedTuple):
    """An item write checked against the catalogue (`LiveWrites._resolve`)."""

    item: Item
    links: list[tuple[str, str]]
    """(relation, entity id), sorted: its facts, its genres and its decade."""
    created: dict[str, str]
    """Entity id -> name: entities its facts name that the graph does not hold yet,
    created by this write (`ItemWrite.new_entities`)."""
    notes: list[str]


def resolve_facts(facts: Iterable[tuple[str, str]], entities: pd.DataFrame,
                  names: NameIndex, *, create: bool = False
                  ) -> tuple[set[tuple[str, str]], dict[str, str]]:
    """An item write's facts as (relation, entity id), each naming an entity the data
    holds, by id or by name, and the entities to create (id -> name): with `create`, a
    name nobody holds becomes a new entity (kind `LIVE_ENTITY_KIND`, the id a
    triples.csv tail of that name would get); without, `UnknownName` lists them."""
    kinds = list(entities["kind"].unique())
    links, unknown, created = set(), [], {}
    for relation, name in facts:
        if not RELATION.match(relation):
            raise InvalidRequest(f"facts: relation {relation!r} must be lower-case "
                                 "letters, digits and _ (e.g. directed_by)")
        found = [name] if name in entities.index else names.exact(name, kinds)
        new_name = name.strip() if create else ""
        if found:
            links.add((relation, sorted(found)[0]))
        elif new_name:
            created[entity_id(new_name)] = new_name
            links.add((relation, entity_id(new_name)))
        else:
            unknown.append(name)
    if unknown:
        raise UnknownName(f"facts name entities the graph does not hold: "
                          f"{', '.join(map(repr, unknown[:10]))} (check the names, or "
                          "write the item with new_entities to create them)", unknown[:10])
    return links, created


def add_created(ds: Dataset, names: NameIndex, created: dict[str, str]) -> None:
    """Entities a write created (id -> name) into the dataset's table and the name index,
    where lookups, explanations and later writes find them."""
    rows = [(e, name, LIVE_ENTITY_KIND) for e, name in created.items()]
    ds.add_entities(rows)
    for row in rows:
        names.add_entity(*row)


def _graph_item(resolved: ResolvedItem) -> dict[str, Any]:
    """The `upsert_item` query's parameters."""
    item = resolved.item
    return {"item": {"id": item.id, "title": item.title, "year": item.year,
                     "genres": list(item.genres), "abstract": item.abstract},
            "links": [{"type": rel.upper(), "entity_id": e} for rel, e in resolved.links],
            "entities": [{"id": e, "name": name, "kind": LIVE_ENTITY_KIND}
                         for e, name in resolved.created.items()]}


def _aliases(title: str) -> list[str]:
    from rag_rec.chat.names import aliases

    return list(aliases(title))
