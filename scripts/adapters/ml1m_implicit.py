"""MovieLens-1M as implicit feedback, from a public copy, onto the generic catalogue format.

MovieLens-1M's `ratings.dat` (24 MB) is in no repository snapshot this project can read
(files of 4 MiB and more are left out), and its licence forbids committing it here. The
CoLaKG paper's repository (github.com/ziqiangcui/CoLaKG, `data/ml-1m/`) publishes ML-1M's
interactions in LightGCN's layout, small enough to be read: `train.txt` and `test.txt`
(a line per user: the user's index, then the indices of the movies the user rated),
`user_map.txt` and `item_map.txt` (MovieLens id, index). Together they hold 998,539 of
ML-1M's 1,000,209 ratings: all 6,040 users, the 3,260 movies the authors kept. What the
copy lacks is the rating and the timestamp of each, so the catalogue written here is
implicit feedback (P(like) unavailable, leave-last-out refused) of ML-1M's size and
shape, not ML-1M's explicit ratings.

    python scripts/adapters/ml1m_implicit.py --interactions DIR --movies DIR \\
        [--facts DIR] --out DIR

`--interactions` is CoLaKG's `data/ml-1m/` folder; `--movies` a folder with ML-1M's
`movies.dat` and `users.dat` (in many public repositories, 171 KB and 134 KB; GroupLens
ships them in ml-1m.zip, in Latin-1; some copies were re-saved as UTF-8 with accented
letters lost, e.g. KEHANG/Film-Recommender's, where 49 titles hold U+FFFD); `--facts` an ML-100K catalogue in the generic format
(`rag-rec data export DIR` writes it from the bundled MovieLens-100K and DBpedia KG):
the movies ML-1M shares with ML-100K (same title and year) get ML-100K's checked DBpedia
facts and abstract. Out, in `--out` (keep it outside the repository: MovieLens' licence
forbids redistribution): `interactions.csv`, `items.csv`, `users.csv`, `triples.csv`,
`dataset.toml`. Each user's movies are written in the copy's order, train then test (the
order of ML-1M's `ratings.dat` within a user, not time).
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

from rag_rec.data.export import write_csv
from rag_rec.data.links import title_variants

_TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")


def _index_map(path: Path) -> dict[str, str]:
    """index -> MovieLens id, from a LightGCN `*_map.txt` (MovieLens id, index)."""
    pairs = (line.split() for line in path.read_text(encoding="utf-8").splitlines())
    return {index: original for original, index in pairs}


def _dat_rows(path: Path) -> list[list[str]]:
    """GroupLens ships the `.dat` files in Latin-1; some copies were re-saved as UTF-8."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return [line.split("::") for line in text.splitlines() if line.strip()]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def interactions(folder: Path) -> list[list[str]]:
    """(MovieLens user id, MovieLens movie id) pairs, each user's train then test movies,
    a movie listed twice for a user kept once."""
    users = _index_map(folder / "user_map.txt")
    items = _index_map(folder / "item_map.txt")
    rows: dict[str, list[str]] = {}
    for name in ("train.txt", "test.txt"):
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            user, *movies = line.split()
            rows.setdefault(users[user], []).extend(items[m] for m in movies)
    return [[user, movie] for user, movies in rows.items() for movie in dict.fromkeys(movies)]


def shared_movies(movies: dict[str, tuple[str, int | None]],
                  facts: list[dict[str, str]]) -> dict[str, str]:
    """ML-1M id -> ML-100K id for the movies both hold: same year, a title name in common
    (`title_variants`: articles in front, parenthesised alternatives)."""
    by_year: dict[int, list[tuple[set[str], str]]] = {}
    for row in facts:
        if row["year"]:
            by_year.setdefault(int(row["year"]), []).append(
                (title_variants(row["title"]), row["item_id"]))
    shared = {}
    for movie, (title, year) in movies.items():
        names = title_variants(title)
        matches = [item for variants, item in by_year.get(year, []) if names & variants]
        if len(matches) == 1:
            shared[movie] = matches[0]
    return shared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=Path, required=True,
                        help="CoLaKG's data/ml-1m folder")
    parser.add_argument("--movies", type=Path, required=True,
                        help="folder with ML-1M's movies.dat and users.dat")
    parser.add_argument("--facts", type=Path,
                        help="ML-100K in the generic format (rag-rec data export DIR)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    pairs = interactions(args.interactions)
    kept = {movie for _, movie in pairs}
    active = {user for user, _ in pairs}
    movies: dict[str, tuple[str, int | None]] = {}
    categories: dict[str, str] = {}
    for movie, title, genres in _dat_rows(args.movies / "movies.dat"):
        if movie in kept:
            dated = _TITLE_YEAR.match(title)
            movies[movie] = ((dated["title"], int(dated["year"])) if dated
                             else (title.strip(), None))
            categories[movie] = genres
    if kept - movies.keys():
        raise SystemExit(f"{len(kept - movies.keys())} movies of the interactions are not "
                         f"in {args.movies / 'movies.dat'}")

    texts: dict[str, str] = {}
    triples: list[list[str]] = []
    if args.facts:
        catalogue = _read_csv(args.facts / "items.csv")
        shared = shared_movies(movies, catalogue)
        text_of = {row["item_id"]: row["text"] for row in catalogue}
        facts_of: dict[str, list[dict[str, str]]] = {}
        for row in _read_csv(args.facts / "triples.csv"):
            facts_of.setdefault(row["head"], []).append(row)
        for movie, item in sorted(shared.items(), key=lambda pair: int(pair[0])):
            texts[movie] = text_of[item]
            triples += [[movie, f["relation"], f["tail"], f["tail_kind"]]
                        for f in facts_of.get(item, [])]
        print(f"{len(shared)} of {len(movies)} movies matched to ML-100K "
              f"({len(triples)} facts)", file=sys.stderr)

    args.out.mkdir(parents=True, exist_ok=True)
    counts = {
        "interactions.csv": write_csv(args.out / "interactions.csv", ["user_id", "item_id"],
                                       pairs),
        "items.csv": write_csv(
            args.out / "items.csv", ["item_id", "title", "year", "categories", "text"],
            [[movie, title, "" if year is None else year, categories[movie],
              texts.get(movie, "")]
             for movie, (title, year) in sorted(movies.items(), key=lambda kv: int(kv[0]))]),
        "users.csv": write_csv(
            args.out / "users.csv", ["user_id", "gender", "age"],
            [[user, gender, age] for user, gender, age, *_ in
             _dat_rows(args.movies / "users.dat") if user in active]),
        "triples.csv": write_csv(args.out / "triples.csv",
                                  ["head", "relation", "tail", "tail_kind"], triples),
    }
    (args.out / "dataset.toml").write_text(
        'name = "ml-1m-implicit"\nitem_noun = "movie"\n', encoding="utf-8")
    for name, rows in counts.items():
        print(f"{name}: {rows} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
