"""The generic catalogue format: any domain's items, interactions and facts as CSV files.

In: a folder with `interactions.csv` (`user_id,item_id`, optional `timestamp`, `rating`
or `weight`), `items.csv` (`item_id,title`, optional `year`, `text`, `categories`),
optional `users.csv`, `triples.csv` (`head,relation,tail`, optional `tail_kind`) and
`dataset.toml` (docs/data-format.md is the specification, examples/catalogue/ an example).

Out: `parse(folder)` gives a `Catalogue`: the rows, the dataset's `DatasetMeta`, and every
problem found as `file:line: reason` (collected, not only the first: `rag-rec data
validate` prints them all; `load_dataset` refuses a folder that has any). Nothing here
raises on bad data, so one pass reports the whole folder.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rag_rec.data.meta import DatasetMeta, given_scale, meta_from, read_dataset_toml

INTERACTIONS, ITEMS, USERS, TRIPLES, META = (
    "interactions.csv", "items.csv", "users.csv", "triples.csv", "dataset.toml")
COLUMNS = {
    INTERACTIONS: (("user_id", "item_id"), ("timestamp", "rating", "weight")),
    ITEMS: (("item_id", "title"), ("year", "text", "categories", "hidden")),
    USERS: (("user_id",), ("age", "gender", "occupation")),
    TRIPLES: (("head", "relation", "tail"), ("tail_kind",)),
}
"""File -> (required columns, optional columns); other columns are ignored with a warning
(users.csv keeps any attribute column, so none is warned about there)."""
RELATION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
ENTITY_PREFIX = "entity:"
"""Entity ids of triples.csv tails: the prefix and the readable name."""
DEFAULT_TAIL_KIND = "entity"
TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}
"""items.csv `hidden` values (case-insensitive)."""


@dataclass
class Catalogue:
    """A generic-format folder as read: rows, meta and what is wrong with it."""

    folder: Path
    name: str
    meta: DatasetMeta = field(default_factory=DatasetMeta)
    interactions: list[tuple] = field(default_factory=list)
    """(user_id, item_id, rating, timestamp, weight, line); rating/timestamp/weight None
    where the column is absent."""
    items: list[tuple] = field(default_factory=list)
    """(item_id, title, year, categories tuple, text or None, line)."""
    hidden: set[str] = field(default_factory=set)
    """Items never recommended (`hidden` true): kept in histories, e.g. withdrawn from
    sale, or hidden by a live write before `rag-rec data export --with-writes`."""
    users: list[tuple] = field(default_factory=list)
    """(user_id, age, gender, occupation); None where absent."""
    item_facts: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(item_id, relation, tail name, tail kind)."""
    entity_facts: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(head entity name, relation, tail name, tail kind)."""
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    """The files read, in a fixed order: the dataset's fingerprint hashes them."""

    def stats(self) -> dict[str, int | str | bool | None]:
        users = {r[0] for r in self.interactions}
        return {
            "dataset": self.name, "users": len(users), "items": len(self.items),
            "interactions": len(self.interactions),
            "item_facts": len(self.item_facts), "entity_facts": len(self.entity_facts),
            "relations": len({f[1] for f in self.item_facts + self.entity_facts}),
            "items_with_text": sum(1 for r in self.items if r[4]),
            "hidden_items": len(self.hidden),
            "ratings": self.meta.has_ratings, "weights": self.meta.has_weights,
            "timestamps": self.meta.has_timestamps,
            "problems": len(self.problems), "warnings": len(self.warnings),
        }


def is_generic(folder: Path) -> bool:
    return (folder / INTERACTIONS).is_file() and (folder / ITEMS).is_file()


# --------------------------------------------------------------------------- reading


def _lines(path: Path, cat: Catalogue, bad: set[int]) -> Iterator[str]:
    """The file's lines; a line that is not UTF-8 is a problem (its number joins `bad`,
    its row is skipped) and is read with replacement characters so the line numbers
    after it stay right."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                cat.problems.append(
                    f"{path}:{lineno}: not valid UTF-8: byte {raw[exc.start]:#04x} at column "
                    f"{exc.start + 1}; re-save the file as UTF-8")
                line = raw.decode("utf-8", errors="replace")
                bad.add(lineno)
            yield line


def _records(path: Path, cat: Catalogue, required: tuple[str, ...],
             optional: tuple[str, ...], *, warn_extra: bool = True
             ) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header, [(line, row by column)]) of a CSV file with a header; a missing file or
    required column is a problem and gives no rows."""
    if not path.is_file():
        cat.problems.append(f"{path}: file not found")
        return [], []
    cat.files.append(path)
    bad: set[int] = set()
    reader = csv.reader(_lines(path, cat, bad))
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in required if c not in header]
    if missing:
        cat.problems.append(f"{path}:1: missing required column(s) {', '.join(missing)}; "
                            f"the header has {', '.join(header) or 'nothing'}")
        return header, []
    for column in header:
        if warn_extra and column not in required + optional:
            cat.warnings.append(f"{path}:1: column {column!r} is ignored")
    rows = []
    try:
        for fields in reader:
            lineno = reader.line_num
            if not fields or fields == [""] or lineno in bad:
                continue
            if len(fields) != len(header):
                cat.problems.append(f"{path}:{lineno}: {len(fields)} fields, the header "
                                    f"has {len(header)}")
                continue
            rows.append((lineno, {c: v.strip() for c, v in zip(header, fields)}))
    except csv.Error as exc:
        cat.problems.append(f"{path}:{reader.line_num}: {exc}")
    if not rows:
        cat.problems.append(f"{path}:1: no rows: the file is empty or holds only a header")
    return header, rows


def _number(value: str) -> float | None:
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def parse_timestamp(value: str) -> int | None:
    """Unix seconds (an integer) or ISO-8601 (naive means UTC); None if neither."""
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp())


def parse(folder: Path) -> Catalogue:
    """Read a generic-format folder, collecting every problem (see the module docstring)."""
    cat = Catalogue(folder=folder, name=folder.name)
    if not folder.is_dir():
        cat.problems.append(f"{folder}: dataset folder not found")
        return cat
    data_toml: dict = {}
    if (folder / META).is_file():
        cat.files.append(folder / META)
        data_toml = read_dataset_toml(folder / META, cat.problems)
    cat.name = str(data_toml.get("name", folder.resolve().name))
    item_lines = _read_items(folder / ITEMS, cat)
    _read_interactions(folder / INTERACTIONS, cat, item_lines, data_toml)
    if (folder / USERS).is_file():
        _read_users(folder / USERS, cat)
    if (folder / TRIPLES).is_file():
        _read_triples(folder / TRIPLES, cat, set(item_lines))
    cat.problems = _in_file_order(cat.problems)
    return cat


def _in_file_order(problems: list[str]) -> list[str]:
    """Problems grouped by file (in the order first named) and by line within one."""
    files: dict[str, int] = {}
    keyed = []
    for n, problem in enumerate(problems):
        m = re.match(r"^(.*?):(\d+):", problem)
        path, line = (m[1], int(m[2])) if m else (problem.split(":", 1)[0], 0)
        keyed.append((files.setdefault(path, len(files)), line, n, problem))
    return [p for *_, p in sorted(keyed)]


def _first_time(path: Path, lineno: int, column: str, value: str, first: dict[str, int],
                cat: Catalogue) -> bool:
    """Whether `value` is a new, non-empty id (recorded in `first`); else the problem."""
    if not value:
        cat.problems.append(f"{path}:{lineno}: empty {column}")
        return False
    if value in first:
        cat.problems.append(f"{path}:{lineno}: duplicate {column} {value!r} "
                            f"(first at line {first[value]})")
        return False
    first[value] = lineno
    return True


def _read_items(path: Path, cat: Catalogue) -> dict[str, int]:
    _, rows = _records(path, cat, *COLUMNS[ITEMS])
    first: dict[str, int] = {}
    for lineno, r in rows:
        item_id, title = r["item_id"], r["title"]
        if not _first_time(path, lineno, "item_id", item_id, first, cat):
            continue
        if not title:
            cat.problems.append(f"{path}:{lineno}: empty title for item {item_id!r}")
        year = None
        if r.get("year"):
            if re.fullmatch(r"-?\d{1,4}", r["year"]):
                year = int(r["year"])
            else:
                cat.problems.append(f"{path}:{lineno}: bad year {r['year']!r} (an integer)")
        categories = tuple(dict.fromkeys(
            c.strip() for c in r.get("categories", "").split("|") if c.strip()))
        flag = r.get("hidden", "").strip().lower()
        if flag in TRUE:
            cat.hidden.add(item_id)
        elif flag not in FALSE:
            cat.problems.append(f"{path}:{lineno}: bad hidden {r['hidden']!r} (true or "
                                "false, or empty)")
        cat.items.append((item_id, title, year, categories, r.get("text") or None, lineno))
    return first


def _read_interactions(path: Path, cat: Catalogue, items: dict[str, int],
                       data_toml: dict) -> None:
    header, rows = _records(path, cat, *COLUMNS[INTERACTIONS])
    scale = given_scale(data_toml)
    seen: dict[tuple[str, str], int] = {}
    seen_index: dict[tuple[str, str], int] = {}
    merged = 0
    kept: list[list] = []
    for lineno, r in rows:
        user, item = r["user_id"], r["item_id"]
        bad = False
        for what, value in (("user_id", user), ("item_id", item)):
            if not value:
                cat.problems.append(f"{path}:{lineno}: empty {what}")
                bad = True
        if item and item not in items:
            cat.problems.append(f"{path}:{lineno}: unknown item {item!r}: not in {ITEMS}")
            bad = True
        rating = timestamp = weight = None
        if "rating" in header:
            rating = _number(r["rating"])
            if rating is None:
                cat.problems.append(f"{path}:{lineno}: bad rating {r['rating']!r} (a number)")
                bad = True
            elif scale and not scale[0] <= rating <= scale[1]:
                cat.problems.append(f"{path}:{lineno}: rating {r['rating']} is outside the "
                                    f"scale [{scale[0]:g}, {scale[1]:g}] of {META}")
                bad = True
        if "weight" in header:
            weight = _number(r["weight"])
            if weight is None or weight <= 0:
                cat.problems.append(f"{path}:{lineno}: bad weight {r['weight']!r} "
                                    "(a positive number)")
                bad = True
        if "timestamp" in header:
            timestamp = parse_timestamp(r["timestamp"])
            if timestamp is None:
                cat.problems.append(f"{path}:{lineno}: bad timestamp {r['timestamp']!r} "
                                    "(integer unix seconds or ISO-8601)")
                bad = True
        if bad:
            continue
        if (user, item) in seen:
            if "rating" in header:
                cat.problems.append(f"{path}:{lineno}: user {user!r} rated item {item!r} "
                                    f"again (first at line {seen[user, item]})")
                continue
            # Implicit feedback repeats (a second purchase): one positive, the latest
            # time, the weights summed.
            row = kept[seen_index[user, item]]
            row[3] = max(row[3], timestamp) if timestamp is not None else None
            row[4] = row[4] + weight if weight is not None else None
            merged += 1
            continue
        seen[user, item] = lineno
        seen_index[user, item] = len(kept)
        kept.append([user, item, rating, timestamp, weight, lineno])
    if merged:
        cat.warnings.append(f"{path}: {merged} repeated user-item rows merged into one "
                            "interaction each (latest timestamp, weights summed)")
    cat.interactions = [tuple(r) for r in kept]
    cat.meta = meta_from(data_toml, header, [r[2] for r in kept if r[2] is not None],
                         cat.problems, path.parent / META, path)


def _read_users(path: Path, cat: Catalogue) -> None:
    _, rows = _records(path, cat, *COLUMNS[USERS], warn_extra=False)
    first: dict[str, int] = {}
    for lineno, r in rows:
        user = r["user_id"]
        if not _first_time(path, lineno, "user_id", user, first, cat):
            continue
        age = None
        if r.get("age"):
            if r["age"].isdigit():
                age = int(r["age"])
            else:
                cat.problems.append(f"{path}:{lineno}: bad age {r['age']!r} (an integer)")
        cat.users.append((user, age, r.get("gender") or None, r.get("occupation") or None))


def _read_triples(path: Path, cat: Catalogue, item_ids: set[str]) -> None:
    _, rows = _records(path, cat, *COLUMNS[TRIPLES])
    checked = []
    for lineno, r in rows:
        head, relation, tail = r["head"], r["relation"], r["tail"]
        if not (head and relation and tail):
            cat.problems.append(f"{path}:{lineno}: empty head, relation or tail")
            continue
        if not RELATION_NAME.match(relation):
            cat.problems.append(f"{path}:{lineno}: relation {relation!r} must be a name "
                                "of letters, digits and _ (e.g. written_by)")
            continue
        checked.append((lineno, head, relation, tail, r.get("tail_kind") or DEFAULT_TAIL_KIND))
    tails = {t for _, _, _, t, _ in checked}
    seen: set[tuple[str, str, str]] = set()
    for lineno, head, relation, tail, kind in checked:
        if (head, relation, tail) in seen:
            cat.warnings.append(f"{path}:{lineno}: repeated triple, kept once")
            continue
        seen.add((head, relation, tail))
        if head in item_ids:
            cat.item_facts.append((head, relation, tail, kind))
        elif head in tails:
            cat.entity_facts.append((head, relation, tail, kind))
        else:
            cat.problems.append(f"{path}:{lineno}: head {head!r} is neither an item_id in "
                                f"{ITEMS} nor an entity named as a tail in this file")


def entity_id(name: str) -> str:
    """The graph id of a triples.csv entity (its readable name, prefixed)."""
    return f"{ENTITY_PREFIX}{name}"
