"""Writes tests/data/tiny: the fast test tier's catalogue, small enough to build in seconds.

Items are 40 films of the project's DBpedia KG (data/ml-100k-dbpedia, CC BY-SA: titles,
years, genres and facts come from it); users and ratings are invented here, from a fixed
seed, so the folder holds no MovieLens data (its licence forbids redistribution). The
files are in MovieLens-100K's layout (`u.data`, `u.item`, `u.genre`, `u.user`) beside a
cut of the KG (`kg/map.csv`, `kg/enriched.csv`), so the ordinary readers load it.

    python scripts/make_tiny_dataset.py        # rewrites tests/data/tiny (deterministic)
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
KG = ROOT / "data" / "ml-100k-dbpedia"
OUT = ROOT / "tests" / "data" / "tiny"
N_ITEMS, N_USERS, PER_USER = 40, 60, 18
SEED = 7
# Genres read off each film's DBpedia categories, first match wins.
GENRES = [("Animation", "animated"), ("Horror", "horror"), ("Sci-Fi", "science fiction"),
          ("Comedy", "comedy"), ("Thriller", "thriller"), ("Drama", "")]


def films() -> list[dict[str, str]]:
    csv.field_size_limit(sys.maxsize)
    with open(KG / "enriched.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["director::string_list"]]
    rows.sort(key=lambda r: int(r["item_id::string"]))
    return rows[:N_ITEMS]


def genre(row: dict[str, str]) -> str:
    subjects = row["subject::string_list"].replace("_", " ").lower()
    return next(name for name, cue in GENRES if cue in subjects)


def main() -> None:
    rng = np.random.default_rng(SEED)
    rows = films()
    with open(KG / "map.csv", newline="", encoding="utf-8") as f:
        uris = {r["item_id::string"]: r["URI::string"] for r in csv.DictReader(f)}
    OUT.joinpath("kg").mkdir(parents=True, exist_ok=True)
    ids = [r["item_id::string"] for r in rows]
    genres = [genre(r) for r in rows]
    names = [name for name, _ in GENRES]

    with open(OUT / "kg" / "enriched.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(OUT / "kg" / "map.csv", "w", newline="", encoding="utf-8") as f:
        f.write("item_id::string,URI::string\n")
        f.writelines(f"{i},{uris[i]}\n" for i in ids)
    (OUT / "u.genre").write_text("".join(f"{name}|{n}\n" for n, name in enumerate(names)))
    with open(OUT / "u.item", "w", encoding="latin-1") as f:
        for item_id, row, kind in zip(ids, rows, genres):
            title = uris[item_id].rsplit("/", 1)[1].replace("_", " ")
            title = re.sub(r"\s*\((?:\d{4} )?film\)$", "", title)
            year = re.search(r"\b(19\d\d|20\d\d)\b", row["abstract::string"])
            flags = "|".join("1" if name == kind else "0" for name in names)
            f.write(f"{item_id}|{title} ({year.group(1) if year else 1995})||||{flags}\n")

    # Each invented user likes two genres: their films are drawn more often and rated
    # higher, so sources and scorer have a signal to learn.
    by_genre = np.array([names.index(g) for g in genres])
    inter, users = [], []
    for user in range(1, N_USERS + 1):
        liked = rng.choice(len(names), size=2, replace=False)
        fond = np.isin(by_genre, liked)
        weights = np.where(fond, 4.0, 1.0)
        picked = rng.choice(N_ITEMS, size=PER_USER, replace=False, p=weights / weights.sum())
        for step, col in enumerate(picked):
            rating = rng.integers(4, 6) if fond[col] else rng.integers(1, 4)
            inter.append(f"{user}\t{ids[col]}\t{rating}\t{880_000_000 + user * 1000 + step}\n")
        users.append(f"{user}|{rng.integers(18, 70)}|{'MF'[user % 2]}|other|00000\n")
    (OUT / "u.data").write_text("".join(inter))
    (OUT / "u.user").write_text("".join(users))
    print(f"wrote {OUT}: {N_USERS} users, {N_ITEMS} items, {len(inter)} ratings")


if __name__ == "__main__":
    main()
