"""Candidate retrieval: the union of the sources, and each candidate's source features.

For a batch of queries, every fitted source (sources.py) scores the whole catalogue; items
the user already has are masked. Each source's top `per_source` items enter the union,
ordered by reciprocal-rank fusion weighted by how much of what users go on to choose each
source finds (`union_weights`: items several sources agree on rise, no source's score
scale dominates another's, and a weak source cannot crowd out a strong one's), with a
`tail_share` of the `budget` kept for long-tail items. Every candidate then carries, for
*every* source (not only those that proposed it), the source's score standardised over the
user's unseen items and 1/log2(2 + its rank among them): the features the scorer stacks,
written by name into the columns of the scorer's `FeatureSchema` (`ease.score`,
`ease.rank`, ...). Sources that were not fitted, and scores a source cannot give (NaN,
inf, -inf), become 0 features, never a NaN.

All of it is in memory: a query costs a few milliseconds for MovieLens-sized catalogues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rag_rec.artifacts import Artifacts
from rag_rec.scorer.features import FeatureSchema, column
from rag_rec.sources import CandidateSource, Query, held_out_matrices
from rag_rec.settings import RetrievalSettings


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
    """One query's candidates, in union order."""

    items: list[str]
    features: np.ndarray
    """(len(items), len(schema.columns())) float32, finite: the source columns of the
    retriever's `schema`, which `FeatureSchema.index` names."""
    proposed_by: list[dict[str, float]]
    """Per candidate: source name -> raw score, for the sources whose top it was in."""
    cold_start: bool = False
    """The history is at most `cold_history` long (the cold-start floor applied)."""
    flags: list[str] = field(default_factory=list)
    fused: np.ndarray | None = None
    """Per candidate, the union's fused score (weighted reciprocal ranks): the order a
    request without history is served in."""


class Retriever:
    def __init__(self, artifacts: Artifacts, sources: dict[str, CandidateSource],
                 source_names: Sequence[str], settings: RetrievalSettings,
                 weights: dict[str, float] | None = None):
        self.artifacts = artifacts
        self.sources = sources
        self.source_names = list(source_names)
        """Every source the scorer was trained with, fitted or not (feature order)."""
        self.schema = FeatureSchema(tuple(self.source_names))
        """The feature columns `retrieve` writes (its source columns)."""
        self.settings = settings
        self.weights = weights or {}
        """Source -> its weight in the fusion (`union_weights`; 1 when absent)."""
        self.refresh_tail()

    def refresh_tail(self) -> None:
        """The catalogue's column map and long-tail mask (again after items are added)."""
        self.col = {i: c for c, i in enumerate(self.artifacts.index.ids)}
        self.head = head_items(self.artifacts.popularity, self.settings.head_mass)
        self.tail = np.array([i not in self.head for i in self.artifacts.index.ids])

    def is_tail(self, item_id: str) -> bool:
        return item_id not in self.head

    def retrieve(self, queries: Sequence[Query], exclude: Sequence[set[str]] | None = None,
                 budget: int | None = None) -> list[Retrieval]:
        """Candidates for each query: never an item of its history or of `exclude`."""
        budget = budget or self.settings.budget
        ids = self.artifacts.index.ids
        if len(self.tail) != len(ids):
            self.refresh_tail()
        col = self.col
        seen = np.zeros((len(queries), len(ids)), dtype=bool)
        for r, q in enumerate(queries):
            extra = exclude[r] if exclude is not None else ()
            cols = [col[i] for i, _ in q.history if i in col] + [col[i] for i in extra if i in col]
            seen[r, cols] = True
        n_unseen = (~seen).sum(1)
        cold = np.array([len(q.history) <= self.settings.cold_history for q in queries])
        feats = np.zeros((len(queries), len(ids), len(self.schema.columns())), dtype=np.float32)
        fused = np.zeros((len(queries), len(ids)), dtype=np.float64)
        floor = np.zeros((len(queries), len(ids)), dtype=np.int32)
        tops = {}
        for name in self.source_names:
            if name not in self.sources:
                continue
            raw = self.sources[name].scores(queries).astype(np.float64)
            valid = np.isfinite(raw) & ~seen
            masked = np.where(valid, raw, -np.inf)
            order = np.argsort(-masked, axis=1, kind="stable")
            rank = np.empty_like(order)
            np.put_along_axis(rank, order, np.arange(len(ids))[None, :], axis=1)
            safe = np.where(valid, raw, 0.0)
            count = np.maximum(valid.sum(1, keepdims=True), 1)
            mean = safe.sum(1, keepdims=True) / count
            var = np.where(valid, (safe - mean) ** 2, 0.0).sum(1, keepdims=True) / count
            z = np.where(valid, (safe - mean) / np.sqrt(var + 1e-12), 0.0)
            feats[:, :, self.schema.index(column(name, "score"))] = np.clip(z, -10, 10)
            feats[:, :, self.schema.index(column(name, "rank"))] = np.where(
                valid, 1.0 / np.log2(rank + 2.0), 0.0)
            top = (rank < self.settings.per_source) & valid
            fused += np.where(top, self.weights.get(name, 1.0)
                              / (self.settings.rrf_k + rank + 1.0), 0.0)
            # Cold start: each source's own best always get a place (ahead of any fused
            # sum), so content and KG paths are not crowded out by sources that know little.
            floor += (rank < self.settings.cold_floor) & valid & cold[:, None]
            tops[name] = (top, raw)
        out = []
        for r, q in enumerate(queries):
            chosen = self._choose(fused[r], floor[r], seen[r], budget)
            proposed = [{name: float(raw[r, c]) for name, (top, raw) in tops.items()
                         if top[r, c]} for c in chosen]
            out.append(Retrieval([ids[c] for c in chosen], feats[r, chosen], proposed,
                                 cold_start=bool(cold[r]), fused=fused[r, chosen]))
            if n_unseen[r] == 0:
                out[-1].flags.append("nothing_left_to_recommend")
        return out

    def _choose(self, fused: np.ndarray, floor: np.ndarray, seen: np.ndarray,
                budget: int) -> list[int]:
        """The budget: the union by cold-floor count, then fused rank, with a long-tail
        quota, then unseen items by popularity if the sources proposed too few."""
        # Two keys, not floor + fused in one sum: a tiny weight (a sharp union) added to 1.0
        # is lost to rounding, and that source's floor items would tie in catalogue order.
        order = np.lexsort((-fused, -floor))
        proposed = order[((fused[order] > 0) | (floor[order] > 0)) & ~seen[order]]
        quota = int(round(self.settings.tail_share * budget))
        chosen = list(proposed[:budget - quota])
        rest = proposed[budget - quota:]
        chosen += list(rest[self.tail[rest]][:budget - len(chosen)])
        if len(chosen) < budget:  # too few tail items: the quota goes back to the head
            taken = set(chosen)
            chosen += [c for c in rest if c not in taken][:budget - len(chosen)]
        if len(chosen) < budget:  # backfill by popularity
            taken = set(chosen)
            pop = np.array([self.artifacts.popularity.get(i, 0) for i in self.artifacts.index.ids])
            for c in np.argsort(-pop, kind="stable"):
                if len(chosen) >= budget:
                    break
                if not seen[c] and c not in taken:
                    chosen.append(int(c))
        return [int(c) for c in chosen]


UNION_SHARPNESS_GRID = (1.0, 2.0, 4.0, 8.0, 16.0, 64.0)
"""Powers tried when `union_sharpness` is left to the build; 64 is in effect the best
source alone, so the chosen union finds at least what the best single source finds."""


def union_weights(artifacts: Artifacts, sources: dict[str, CandidateSource],
                  histories: dict[str, list], targets: pd.DataFrame,
                  settings: RetrievalSettings) -> tuple[dict[str, float], dict]:
    """Each source's fusion weight: its recall of `targets` within its top `per_source`
    given each user's history, relative to the best source's, to the power
    `union_sharpness`; left unset, the power whose union (budget, tail quota and all) finds
    most of `targets`. The build measures on the ranker slice, never on test data.
    Returns the weights and a report: each source's recall, the union's per power tried."""
    col = {i: c for c, i in enumerate(artifacts.index.ids)}
    queries, seen, wanted = held_out_matrices(histories, targets, col)
    per_user = np.maximum(wanted.sum(1), 1)
    recall = {}
    for name, source in sources.items():
        scores = np.where(seen, -np.inf, source.scores(queries))
        scores = np.where(np.isnan(scores), -np.inf, scores)
        if settings.per_source < scores.shape[1]:
            top = np.argpartition(-scores, settings.per_source, axis=1)[:, :settings.per_source]
        else:  # a catalogue this small is all in every source's top
            top = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        found = np.take_along_axis(wanted & np.isfinite(scores), top, axis=1).sum(1)
        recall[name] = float(np.mean(found / per_user))
    best = max(recall.values()) or 1.0

    def weights(power: float) -> dict[str, float]:
        # Not rounded: at a high power a weak source's weight is tiny, yet still orders
        # its own items (rounded to 0 they would tie, in catalogue order).
        return {name: (r / best) ** power for name, r in recall.items()}

    if settings.union_sharpness is not None:
        return weights(settings.union_sharpness), {"source_recall": recall}
    union = {}
    for power in UNION_SHARPNESS_GRID:
        retriever = Retriever(artifacts, sources, list(sources), settings, weights(power))
        found = [wanted[r, [col[i] for i in g.items]].sum()
                 for r, g in enumerate(retriever.retrieve(queries))]
        union[power] = float(np.mean(np.array(found) / per_user))
    power = max(union, key=lambda p: (union[p], -p))
    return weights(power), {"source_recall": recall, "union_recall": union,
                            "union_sharpness": power}
