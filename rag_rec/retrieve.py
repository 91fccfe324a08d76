"""Candidate generation: FAISS neighbours ∪ KG paths ∪ collaborative ∪ backfill.

Sources (each a ranked list with its own scores):
- `faiss`: nearest items to the user's fused vector (history; plus free text if given);
- `kg_path`: items sharing KG entities with the history (Neo4j, hub entities skipped);
  for new users, items linked to the liked items' or the text profile's entities;
- `collaborative`: co-rating neighbours (known users) or items co-rated with the liked
  items (new users);
- `popular`: popularity backfill when the sources run short.

The union is merged by reciprocal-rank fusion (items several sources agree on rise; no
source's score scale dominates), a `tail_share` of the budget is kept for long-tail items, items the user already has are never returned, and
every candidate records each source that proposed it with that source's score.
A user the graph does not know, or one with at most `cold_history` interactions, goes
through the cold-start path, and the result says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rag_rec.build import Artifacts
from rag_rec.embed import (
    TextCache,
    fuse,
    item_text,
    make_text_encoder,
    profile_vector,
)
from rag_rec.graph import GraphClient
from rag_rec.models import Candidate, ColdStartProfile, Item
from rag_rec.settings import Settings

SOURCES = ("faiss", "kg_path", "collaborative", "popular")


def head_items(popularity: dict[str, int], head_mass: float) -> set[str]:
    """The most popular items that together make up `head_mass` of all interactions;
    every other item is long tail (retrieval's quota, the tail boost and the evaluation's
    tail share all use this one definition)."""
    pop = sorted(popularity.items(), key=lambda kv: (-kv[1], kv[0]))
    total, running, head = sum(c for _, c in pop) or 1, 0, set()
    for item_id, count in pop:
        if running >= head_mass * total:
            break
        head.add(item_id)
        running += count
    return head


@dataclass
class Retrieval:
    candidates: list[Candidate]
    history: list[tuple[str, float]]
    """(item id, rating) oldest first; the items that were excluded."""
    cold_start: bool = False
    flags: list[str] = field(default_factory=list)
    """Why the result is what it is: `unknown_user`, `empty_history`, `short_history`,
    `text_only` ..."""


class CandidateGenerator:
    def __init__(self, artifacts: Artifacts, graph: GraphClient, settings: Settings):
        self.a = artifacts
        self.graph = graph
        self.settings = settings
        self.r = settings.retrieval
        self._text_cache: TextCache | None = None
        self._refresh_tail()

    def _refresh_tail(self) -> None:
        self.head = head_items(self.a.popularity, self.r.head_mass)

    def is_tail(self, item_id: str) -> bool:
        return item_id not in self.head

    # -- sources

    def _text_vector(self, text: str) -> np.ndarray:
        if self._text_cache is None:
            encoder = make_text_encoder(self.settings.embed, self.settings.llm, self.settings.home)
            self._text_cache = TextCache(encoder, self.settings.home / "embeddings")
        return self._text_cache.embed([text])[0]

    def query_vector(self, history: Sequence[tuple[str, float]], text: str | None) -> np.ndarray:
        """The user's fused vector: weighted history; free text joins as a text-only
        vector (its KG half is zero) given the weight of one well-liked item."""
        parts, weights = [], []
        known = [(i, r) for i, r in history if i in self.a.index]
        if known:
            vecs = np.stack([self.a.index.vector(i) for i, _ in known])
            parts.append(profile_vector(vecs, [r for _, r in known],
                                        self.a.embed.history_half_life))
            weights.append(1.0)
        if text:
            parts.append(fuse(self._text_vector(text), np.zeros(self.a.kg.dim, np.float32)))
            weights.append(1.0 if not known else 0.5)
        if not parts:
            return np.zeros(self.a.index.dim, dtype=np.float32)
        return sum(w * p for w, p in zip(weights, parts)).astype(np.float32)

    def _faiss(self, query: np.ndarray, seen: set[str], k: int) -> list[tuple[str, float]]:
        if not np.any(query):
            return []
        return self.a.index.search(query, k, exclude=[seen])[0]

    def _rows(self, rows: list[dict], key: str, seen: set[str]) -> list[tuple[str, float]]:
        return [(r["item_id"], float(r[key])) for r in rows if r["item_id"] not in seen]

    def _entities_of(self, item_ids: Sequence[str]) -> list[str]:
        t = self.a.ds.triples
        links = t[t.item_id.isin(list(item_ids))]
        degree = t.groupby("entity_id").size()
        rare = links[links.entity_id.map(degree) <= self.r.max_entity_degree]
        return list(dict.fromkeys(rare.entity_id))

    def profile_entities(self, profile: ColdStartProfile) -> list[str]:
        """Entity ids for a text profile: its genres, and people matched by exact name."""
        ents = self.a.ds.entities
        by_name = {n.lower(): e for e, n in zip(ents.index, ents["name"])}
        ids = [f"genre:{g}" for g in profile.genres if f"genre:{g}" in ents.index]
        ids += [by_name[p.lower()] for p in profile.people if p.lower() in by_name]
        return list(dict.fromkeys(ids))

    # -- public

    def user_sources(self, user_id: str, k: int
                     ) -> tuple[list[tuple[str, float]], dict[str, list[tuple[str, float]]]]:
        """(history oldest first, each source's top-`k` list) for a user in the graph."""
        rows = self.graph.user_history(user_id, limit=100_000)
        history = [(r["item_id"], float(r["rating"])) for r in reversed(rows)]
        if not history:
            return history, {}
        seen = {i for i, _ in history}
        return history, {
            "faiss": self._faiss(self.query_vector(history, None), seen, k),
            "kg_path": self._rows(self.graph.query(
                "kg_path_candidates", user_id=user_id,
                max_entity_degree=self.r.max_entity_degree, limit=k), "score", seen),
            "collaborative": self._rows(self.graph.query(
                "collaborative_candidates", user_id=user_id, neighbours=self.r.neighbours,
                limit=k), "score", seen),
        }

    def for_user(self, user_id: str, *, budget: int | None = None) -> Retrieval:
        """Candidates for a user the graph may know; unknown users take the cold path."""
        k = budget or self.r.budget
        history, lists = self.user_sources(user_id, k)
        if not history:
            result = self.for_new_user([], budget=k)
            result.flags.insert(0, "unknown_user")
            return result
        if len(history) <= self.r.cold_history:
            result = self.for_new_user([i for i, _ in history], budget=k,
                                       ratings=dict(history))
            result.flags.insert(0, "short_history")
            return result
        return Retrieval(self.merge(lists, {i for i, _ in history}, k), history)

    def for_new_user(self, liked_item_ids: Sequence[str], text: str | None = None, *,
                     profile: ColdStartProfile | None = None, budget: int | None = None,
                     ratings: dict[str, float] | None = None) -> Retrieval:
        """Cold start: a few liked items and/or free text (with its LLM profile)."""
        k = budget or self.r.budget
        liked = [i for i in dict.fromkeys(liked_item_ids) if i in self.a.items]
        history = [(i, (ratings or {}).get(i, 5.0)) for i in liked]
        seen = set(liked)
        entities = self._entities_of(liked) + (self.profile_entities(profile) if profile else [])
        lists = {
            "faiss": self._faiss(self.query_vector(history, text), seen, k),
            "kg_path": self._rows(self.graph.query(
                "popular_by_entity", entity_ids=entities, exclude_item_ids=list(seen),
                limit=k), "score", seen) if entities else [],
            "collaborative": self._rows(self.graph.query(
                "co_rated_items", item_ids=liked, limit=k), "score", seen) if liked else [],
        }
        flags = []
        if not liked and not text:
            flags.append("empty_history")
        elif not liked:
            flags.append("text_only")
        return Retrieval(self.merge(lists, seen, k), history, cold_start=True, flags=flags)

    def merge(self, lists: dict[str, list[tuple[str, float]]], seen: set[str],
              k: int) -> list[Candidate]:
        """The union of the source lists, `k` candidates (see the module docstring)."""
        scores: dict[str, dict[str, float]] = {}
        for source, ranked in lists.items():
            for item_id, score in ranked:
                scores.setdefault(item_id, {})[source] = score
        # Reciprocal-rank fusion: an item proposed by several sources rises, and no
        # source's raw score scale dominates another's.
        fused: dict[str, float] = {}
        for ranked in lists.values():
            for rank, (item_id, _) in enumerate(ranked):
                fused[item_id] = fused.get(item_id, 0.0) + 1.0 / (self.r.rrf_k + rank + 1)
        order = [i for i in sorted(fused, key=lambda i: (-fused[i], i)) if i not in seen]
        tail_quota = int(round(self.r.tail_share * k))
        chosen = order[:k - tail_quota]
        picked = set(chosen)

        def take(item_id: str) -> None:
            if item_id not in picked and item_id not in seen:
                chosen.append(item_id)
                picked.add(item_id)

        for item_id in order[k - tail_quota:]:  # the long-tail share
            if len(chosen) >= k:
                break
            if self.is_tail(item_id):
                take(item_id)
        for item_id in order:  # too few tail items: the quota goes back to the head
            if len(chosen) >= k:
                break
            take(item_id)
        if len(chosen) < k:  # backfill by popularity
            rows = self.graph.query("popular_items", exclude_item_ids=list(seen | picked),
                                    limit=k - len(chosen))
            for r in rows:
                scores.setdefault(r["item_id"], {})["popular"] = float(r["popularity"] or 0)
                take(r["item_id"])
        return [Candidate(item=self.a.items[i], sources=scores[i]) for i in chosen
                if i in self.a.items]

    # -- new items

    def add_item(self, item: Item, links: Sequence[tuple[str, str]]) -> None:
        """Make a new item retrievable at once: graph node + links, and an index vector
        from its text and the mean KG vector of its linked entities."""
        if item.id in self.a.items:
            raise ValueError(f"item {item.id!r} already exists")
        known = [(rel, e) for rel, e in links if e in self.a.ds.entities.index]
        self.graph.query("add_item", item=item.model_dump(mode="json"),
                         links=[{"type": rel.upper(), "entity_id": e} for rel, e in known])
        names = [self.a.ds.entities.loc[e, "name"] for _, e in known]
        text_vec = self._text_vector(item_text(item, names))
        kg_vecs = [self.a.kg.of(e) for _, e in known if self.a.kg.of(e) is not None]
        kg_vec = np.mean(kg_vecs, axis=0) if kg_vecs else np.zeros(self.a.kg.dim, np.float32)
        self.a.index.add([item.id], fuse(text_vec, kg_vec.astype(np.float32))[None, :])
        self.a.items[item.id] = item
        self.a.popularity[item.id] = 0
        self.a.text[item.id] = text_vec
