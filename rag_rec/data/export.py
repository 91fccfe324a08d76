"""A loaded `Dataset` written out in the generic format (`rag-rec data export`).

The round trip of issue 31: MovieLens read through its adapter, exported, and read back
through the generic reader gives the same users, items, interactions, categories,
decades and knowledge-graph facts (tests/test_catalogue_format.py checks it). Entities
are written by their readable name, which is how the generic format keys them: two
DBpedia resources sharing a name become one entity.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from rag_rec.data.dataset import Dataset
from rag_rec.data.kg import DECADE_RELATION, GENRE_RELATION

SIDE_RELATIONS = {GENRE_RELATION, DECADE_RELATION}
"""Relations the generic reader makes from items.csv (categories, year), not triples.csv."""


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_csv(path: Path, header: list[str], rows: list[list]) -> int:
    """One CSV file as the generic format has it (UTF-8, a header row), its folder made
    if missing; returns the rows written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        out.writerows(rows)
    return len(rows)


def export_generic(ds: Dataset, folder: Path) -> dict[str, int]:
    """Write `ds` into `folder` (created; existing files replaced); returns rows written
    per file."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = ds.meta
    counts: dict[str, int] = {}

    def write(name: str, header: list[str], rows: list[list]) -> None:
        counts[name] = write_csv(folder / name, header, rows)

    inter = ds.interactions
    columns = ["user_id", "item_id"] + (["rating"] if meta.has_ratings else []) + (
        ["timestamp"] if meta.has_timestamps else [])
    write("interactions.csv", columns, inter[columns].astype(str).values.tolist()
          if not meta.has_ratings else [
              [u, i, f"{r:g}", *([str(t)] if meta.has_timestamps else [])]
              for u, i, r, t in inter[["user_id", "item_id", "rating", "timestamp"]]
              .itertuples(index=False)])
    header = ["item_id", "title", "year", "categories", "text"]
    rows = [[item_id, r.title, "" if pd.isna(r.year) else int(r.year), "|".join(r.genres),
             r.abstract or ""] for item_id, r in ds.items.iterrows()]
    if ds.hidden:  # the column only where some item is hidden
        header.append("hidden")
        for row in rows:
            row.append("true" if row[0] in ds.hidden else "")
    write("items.csv", header, rows)
    if len(ds.users):
        write("users.csv", ["user_id", "age", "gender", "occupation"], [
            [uid, "" if pd.isna(r.age) else int(r.age), r.gender or "", r.occupation or ""]
            for uid, r in ds.users.iterrows()])
    # A resource without a readable name (ML-100K's map has two non-DBpedia URIs ending
    # in "/") is written by its id, so the fact is kept.
    names = ds.entities["name"].where(ds.entities["name"].str.strip() != "",
                                      ds.entities.index.to_series())
    kinds = ds.entities["kind"]
    facts = [[i, rel, names[e], kinds[e]] for i, rel, e in ds.triples.itertuples(index=False)
             if rel not in SIDE_RELATIONS]
    facts += [[names[h], rel, names[t], kinds[t]]
              for h, rel, t in ds.entity_triples.itertuples(index=False)]
    write("triples.csv", ["head", "relation", "tail", "tail_kind"], facts)
    lines = [f"name = {_toml_string(ds.name)}", f"item_noun = {_toml_string(meta.item_noun)}"]
    if meta.rating_scale is not None:
        lo, hi = meta.rating_scale
        lines += ["", "[ratings]", f"scale = [{lo:g}, {hi:g}]",
                  f"like_threshold = {meta.like_threshold:g}"]
    for relation, phrase in meta.relation_phrases.items():
        lines += ["", f"[relations.{relation}]", f"phrase = {_toml_string(phrase)}"]
    (folder / "dataset.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return counts
