"""Dataset readers, one per file layout, behind a registry by format name: the generic
catalogue format (`generic.py`, docs/data-format.md) and the MovieLens-family adapters.

In: a folder in one of the layouts below; `detect` picks the format from the files present
(in this order) and names the dataset.

| format    | files                                        | dataset name |
|-----------|----------------------------------------------|--------------|
| `generic` | `interactions.csv` + `items.csv` (+ optional `users.csv`, `triples.csv`, `dataset.toml`) | `dataset.toml` name, else the folder's |
| `recbole` | `NAME.inter`, `NAME.item`, `NAME.user`       | `NAME`       |
| `ml-100k` | `u.data`, `u.item`, `u.user`, `u.genre`      | `ml-100k`    |
| `ml-1m`   | `ratings.dat`, `movies.dat`, `users.dat`     | `ml-1m`      |
| `ml-latest` | `ratings.csv`, `movies.csv`                | `ml-latest`  |

Out: a `Source` whose `read()` gives checked rows as plain tuples, in the order of
`INTERACTION_COLUMNS`, `ITEM_COLUMNS` and `USER_COLUMNS`, each interaction and item row
ending with its line number so later whole-file checks can name it. A bad row raises
`DataError` as `file:line: what is wrong`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag_rec.data import generic
from rag_rec.errors import DataError

INTERACTION_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]
ITEM_COLUMNS = ["item_id", "title", "year", "genres"]
USER_COLUMNS = ["user_id", "age", "gender", "occupation"]
_TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")

Rows = tuple[list[tuple], list[tuple], list[tuple]]
"""(interactions, items, users) as read, before they become frames."""

#: The rating scale of each MovieLens release (RecBole atomic files keep their release's).
RATING_SCALES = {"ml-100k": (1.0, 5.0), "ml-1m": (1.0, 5.0), "ml-latest": (0.5, 5.0)}
GENERIC = "generic"


# --------------------------------------------------------------------------- rows


def _decoded(path: Path, encoding: str) -> Iterator[str]:
    """The file's lines, decoded one at a time so a bad byte is reported with its line."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                yield raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}:{lineno}: not valid {encoding}: byte {raw[exc.start]:#04x} at "
                    f"column {exc.start + 1}; re-save the file as {encoding}") from None


def delimited_rows(path: Path, sep: str, n_fields: int, *, encoding: str = "utf-8",
                   header: bool = False) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) of a delimited file, rejecting rows of the wrong width."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    lines = _decoded(path, encoding)
    if sep == ",":
        reader = csv.reader(lines)
        rows: Iterator[tuple[int, list[str]]] = ((reader.line_num, f) for f in reader)
    else:
        rows = enumerate((line.rstrip("\r\n").split(sep) for line in lines), start=1)
    for lineno, fields in rows:
        if header and lineno == 1:
            continue
        if fields == [] or fields == [""]:
            continue
        if len(fields) < n_fields:
            raise DataError(
                f"{path}:{lineno}: expected {n_fields} fields separated by {sep!r}, "
                f"got {len(fields)}: {sep.join(fields)[:80]!r}"
            )
        yield lineno, fields


def _convert(path: Path, lineno: int, what: str, fn: Callable[[str], object], value: str):
    try:
        return fn(value)
    except ValueError:
        raise DataError(f"{path}:{lineno}: bad {what} {value!r}") from None


def _scale(name: str) -> tuple[float, float]:
    return next((v for k, v in RATING_SCALES.items() if name.startswith(k)), (0.5, 5.0))


def rating_scale(fmt: str, name: str) -> tuple[float, float]:
    """The rating scale a MovieLens-family reader checks its ratings against."""
    return RATING_SCALES.get(fmt) or _scale(name)


def _interaction(path: Path, lineno: int, u: str, i: str, r: str, t: str,
                 scale: tuple[float, float]) -> tuple:
    """(user, item, rating, timestamp, line) of one rating row, checked."""
    rating = _convert(path, lineno, "rating", float, r)
    if not np.isfinite(rating):
        raise DataError(f"{path}:{lineno}: bad rating {r!r}")
    lo, hi = scale
    if not lo <= rating <= hi:
        raise DataError(f"{path}:{lineno}: rating {r.strip()} is outside this dataset's "
                        f"scale {lo:g}-{hi:g}")
    user, item = u.strip(), i.strip()
    for what, value in (("user", user), ("item", item)):
        if not value:
            raise DataError(f"{path}:{lineno}: empty {what} id")
    return user, item, rating, int(_convert(path, lineno, "timestamp", float, t)), lineno


def _split_title(title: str) -> tuple[str, int | None]:
    m = _TITLE_YEAR.match(title)
    return (m["title"], int(m["year"])) if m else (title.strip(), None)


def _title_year(path: Path, lineno: int, title: str, year: str) -> tuple[str, int | None]:
    """Title and year of an atomic item row. RecBole's ml-100k.item has two quirks that
    are repaired rather than rejected: a missing year spelled "unkonwn", and a year "V"
    where the real year was left in the title ("... Great Giving (1995)")."""
    year = year.strip()
    if year.isdigit():
        return title, int(year)
    clean, from_title = _split_title(title)
    if from_title is not None:
        return clean, from_title
    if not year or year.lower().startswith("unk"):
        return title, None
    raise DataError(f"{path}:{lineno}: bad year {year!r}")


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Reader:
    """One file layout: how a folder in it is recognised and read."""

    marker: str
    """A glob whose match marks a folder in this layout."""
    files: tuple[str, ...]
    """The layout's files, ratings first and items second (the whole-file checks name
    them); `{name}` stands for the dataset's name. All of them are fingerprinted."""
    read: Callable[[Path, str], Rows]
    """(folder, dataset name) -> rows."""
    name: str | None
    """The dataset's name; None: the marker's stem (RecBole's `NAME.inter`)."""
    also: tuple[str, ...] = ()
    """Further files that must be present beside the marker."""


READERS: dict[str, Reader] = {}
"""Format name -> reader, in the order `detect` tries them."""


def register(fmt: str, *, marker: str, files: tuple[str, ...], name: str | None = None,
             also: tuple[str, ...] = ()
             ) -> Callable[[Callable[[Path, str], Rows]], Callable[[Path, str], Rows]]:
    """Add a reader to `READERS` under `fmt`."""
    def add(read: Callable[[Path, str], Rows]) -> Callable[[Path, str], Rows]:
        if fmt in READERS:
            raise ValueError(f"a reader for format {fmt!r} is already registered")
        READERS[fmt] = Reader(marker=marker, files=files, read=read, name=name, also=also)
        return read
    return add


@dataclass(frozen=True)
class Source:
    """A dataset folder as detected: its format, the dataset's name and its files."""

    folder: Path
    format: str
    name: str
    files: list[Path]

    def read(self) -> Rows:
        return READERS[self.format].read(self.folder, self.name)


def detect(folder: Path) -> Source:
    """The first registered format whose marker file is in `folder`."""
    if not folder.is_dir():
        raise DataError(f"{folder}: dataset folder not found")
    for fmt, reader in READERS.items():
        found = sorted(folder.glob(reader.marker))
        if found and all((folder / f).is_file() for f in reader.also):
            name = reader.name or found[0].stem
            return Source(folder=folder, format=fmt, name=name,
                          files=[folder / f.format(name=name) for f in reader.files])
    known = ", ".join(f"{fmt} ({' + '.join((reader.marker, *reader.also))})"
                      for fmt, reader in READERS.items())
    raise DataError(f"{folder}: no dataset files found; the formats read are {known} "
                    "(docs/data-format.md describes the generic one)")


# --------------------------------------------------------------------------- readers


@register(GENERIC, marker="interactions.csv", files=("interactions.csv", "items.csv"),
          also=("items.csv",))
def _read_generic(folder: Path, name: str) -> Rows:
    """The generic format's rows in the MovieLens readers' shape (`load_dataset` reads
    the folder through `generic.parse` itself, for its meta, text and facts)."""
    cat = generic.parse(folder)
    if cat.problems:
        raise DataError("\n".join(cat.problems[:20]))
    inter = [(u, i, cat.meta.top_rating if r is None else r, line if t is None else t, line)
             for u, i, r, t, _, line in cat.interactions]
    items = [(i, title, year, cats, line) for i, title, year, cats, _, line in cat.items]
    return inter, items, cat.users


@register("recbole", marker="*.inter", files=("{name}.inter", "{name}.item", "{name}.user"))
def _read_recbole(folder: Path, name: str) -> Rows:
    def typed(path: Path, wanted: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        first = next(_decoded(path, "utf-8"), "").rstrip("\r\n").split("\t")
        columns = [c.split(":")[0] for c in first]
        missing = [w for w in wanted if w not in columns]
        if missing:
            raise DataError(f"{path}:1: header lacks columns {missing}; has {columns}")
        for lineno, fields in delimited_rows(path, "\t", len(columns), header=True):
            yield lineno, dict(zip(columns, fields))

    inter_path = folder / f"{name}.inter"
    inter = [
        _interaction(inter_path, n, r["user_id"], r["item_id"], r["rating"], r["timestamp"],
                     _scale(name))
        for n, r in typed(inter_path, INTERACTION_COLUMNS)
    ]
    item_path = folder / f"{name}.item"
    items = [
        (r["item_id"].strip(), *_title_year(item_path, n, r["movie_title"], r["release_year"]),
         tuple(r["class"].split()), n)
        for n, r in typed(item_path, ["item_id", "movie_title", "release_year", "class"])
    ]
    user_path = folder / f"{name}.user"
    users = [
        (r["user_id"], int(_convert(user_path, n, "age", int, r["age"])), r["gender"],
         r["occupation"])
        for n, r in typed(user_path, USER_COLUMNS)
    ] if user_path.exists() else []
    return inter, items, users


@register("ml-100k", marker="u.data", files=("u.data", "u.item", "u.user", "u.genre"),
          name="ml-100k")
def _read_ml100k(folder: Path, name: str) -> Rows:
    data = folder / "u.data"
    inter = [_interaction(data, n, *f[:4], RATING_SCALES["ml-100k"])
             for n, f in delimited_rows(data, "\t", 4)]
    genre_path = folder / "u.genre"
    genres = [f[0] for _, f in delimited_rows(genre_path, "|", 2, encoding="latin-1")]
    item_path = folder / "u.item"
    items = []
    for n, f in delimited_rows(item_path, "|", 5 + len(genres), encoding="latin-1"):
        title, year = _split_title(f[1])
        flags = f[5:5 + len(genres)]
        items.append((f[0].strip(), title, year,
                      tuple(g for g, on in zip(genres, flags) if on == "1"), n))
    user_path = folder / "u.user"
    users = [(f[0], int(_convert(user_path, n, "age", int, f[1])), f[2], f[3])
             for n, f in delimited_rows(user_path, "|", 5)]
    return inter, items, users


@register("ml-1m", marker="ratings.dat", files=("ratings.dat", "movies.dat", "users.dat"),
          name="ml-1m")
def _read_ml1m(folder: Path, name: str) -> Rows:
    ratings = folder / "ratings.dat"
    inter = [_interaction(ratings, n, *f[:4], RATING_SCALES["ml-1m"])
             for n, f in delimited_rows(ratings, "::", 4)]
    movies = folder / "movies.dat"
    items = []
    for n, f in delimited_rows(movies, "::", 3, encoding="latin-1"):
        title, year = _split_title(f[1])
        items.append((f[0].strip(), title, year, tuple(f[2].split("|")), n))
    users_path = folder / "users.dat"
    users = [(f[0], int(_convert(users_path, n, "age", int, f[2])), f[1], f[3])
             for n, f in delimited_rows(users_path, "::", 5)] if users_path.exists() else []
    return inter, items, users


@register("ml-latest", marker="ratings.csv", files=("ratings.csv", "movies.csv"),
          name="ml-latest")
def _read_latest(folder: Path, name: str) -> Rows:
    ratings = folder / "ratings.csv"
    inter = [_interaction(ratings, n, *f[:4], RATING_SCALES["ml-latest"])
             for n, f in delimited_rows(ratings, ",", 4, header=True)]
    movies = folder / "movies.csv"
    items = []
    for n, f in delimited_rows(movies, ",", 3, header=True):
        title, year = _split_title(f[1])
        genres = () if f[2] == "(no genres listed)" else tuple(f[2].split("|"))
        items.append((f[0].strip(), title, year, genres, n))
    return inter, items, []
