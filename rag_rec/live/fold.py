"""Live writes folded into the data they were written against, for the next build.

`rag-rec data export DIR --with-writes` writes the catalogue as the journal
(rag_rec/live/journal.py) left it: interactions recorded live join the interactions (a
repeated pair takes its latest rating and time), items added or changed replace their
rows and their facts, items hidden live are written hidden. The folder is a generic
catalogue: point `RAG_REC_DATA__SOURCE` at it and `rag-rec build` trains on the writes.
Its fingerprint is new, so the served build's journal stays where it was (nothing is
lost) and the new build starts from none (`writes_since_build` 0).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pandas as pd

from rag_rec.chat.names import NameIndex
from rag_rec.data.dataset import Dataset
from rag_rec.data.kg import side_kg
from rag_rec.live.models import ItemWrite
from rag_rec.live.writer import add_created, resolve_facts


def fold_writes(ds: Dataset, entries: Iterable[dict[str, Any]]
                ) -> tuple[Dataset, dict[str, int]]:
    """`ds` with the journal's `entries` (oldest first) applied, and the entries folded
    per kind. It keeps `ds`'s fingerprint (the journal's data): it is for
    `export_generic`, and a build reads the exported folder, fingerprinted anew."""
    recorded: dict[tuple[str, str], tuple[float, int]] = {}
    written: dict[str, ItemWrite] = {}
    hidden = set(ds.hidden)
    counts: Counter[str] = Counter()
    for entry in entries:
        kind, data = entry["kind"], entry["data"]
        counts[kind] += 1
        if kind == "interaction":
            recorded[data["user_id"], data["item_id"]] = (data["rating"], data["timestamp"])
        elif kind == "item":
            written[data["id"]] = ItemWrite.model_validate(data)
        else:
            (hidden.add if kind == "hide" else hidden.discard)(data["item_id"])
    items, triples, entities = _fold_items(ds, written)
    return dataclasses.replace(ds, interactions=_fold_interactions(ds, recorded),
                               items=items, triples=triples, entities=entities,
                               hidden=frozenset(hidden)), dict(counts)


def _fold_interactions(ds: Dataset, recorded: dict[tuple[str, str], tuple[float, int]]
                       ) -> pd.DataFrame:
    inter = ds.interactions.copy()
    row_of = {pair: n for n, pair in enumerate(zip(inter["user_id"], inter["item_id"]))}
    rating_column, time_column = inter.columns.get_indexer(["rating", "timestamp"])
    added = []
    # Without timestamps the column is the file's order: new rows go after every old one
    # and a repeated pair keeps its place.
    next_line = int(inter["timestamp"].max()) + 1 if len(inter) else 0
    for (user_id, item_id), (rating, timestamp) in recorded.items():
        row = row_of.get((user_id, item_id))
        if row is None:
            added.append((user_id, item_id, rating, timestamp if ds.meta.has_timestamps
                          else next_line + len(added)))
            continue
        inter.iat[row, rating_column] = rating
        if ds.meta.has_timestamps:
            inter.iat[row, time_column] = timestamp
    return pd.concat([inter, pd.DataFrame(added, columns=inter.columns)],
                     ignore_index=True).astype(inter.dtypes.to_dict())


def _fold_items(ds: Dataset, written: dict[str, ItemWrite]
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Items, item triples and entities with the written items' rows and links replaced.
    Links resolve as the live write resolved them; genre and decade links follow the
    categories and year, as the build makes them."""
    if not written:
        return ds.items, ds.triples, ds.entities
    # A copy whose entity table grows with the entities the writes created.
    grown = dataclasses.replace(ds, entities=ds.entities.copy())
    entities = grown.entities
    names = NameIndex(entities[["name", "kind"]].itertuples(), {})
    items = ds.items.reindex([*ds.items.index, *(i for i in written if i not in ds.items.index)])
    facts = []
    for item_id, write in written.items():
        items.at[item_id, "title"] = write.title
        items.at[item_id, "year"] = pd.NA if write.year is None else write.year
        items.at[item_id, "genres"] = tuple(write.categories)
        items.at[item_id, "abstract"] = write.text
        links, created = resolve_facts(write.facts, entities, names,
                                       create=write.new_entities)
        add_created(grown, names, created)
        facts += [(item_id, relation, entity_id) for relation, entity_id in sorted(links)]
    side_entities, side_triples = side_kg(items.loc[list(written)])
    kept = ds.triples[~ds.triples["item_id"].isin(written.keys())]
    triples = pd.concat([kept, pd.DataFrame(facts + side_triples, columns=kept.columns)],
                        ignore_index=True).drop_duplicates(ignore_index=True)
    new = pd.DataFrame([e for e in side_entities if e[0] not in entities.index],
                       columns=["entity_id", "name", "kind"]).set_index("entity_id")
    return items, triples, pd.concat([entities, new])
