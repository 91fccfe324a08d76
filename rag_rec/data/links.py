"""The entity-link check: does each item's DBpedia resource describe that item?

FranKGraphBench joined MovieLens-100K to DBpedia by title, and some joins land on
another film of a similar name (`Ghost (1990)` on *Ghost Dad*, `The Shadow (1994)` on
*The Shadow of Hate*). A wrong link brings the other film's cast, crew, categories and
abstract into the graph, and explanations then cite them. This module scores each link
and drops the doubtful ones before the graph is made.

In: the items frame (title, year), the abstracts and DBpedia triples `kg.read_dbpedia`
read, and the item -> resource map (`map.csv` in the KG folder). Out: the abstracts and
triples of the links kept, and a `DoubtfulLink` per link dropped (with its scores).

A link's score (0-100) is its title similarity plus a year adjustment:
- title: the best `rapidfuzz.fuzz.ratio` between the item's title variants (`Postino,
  Il` -> `Il Postino`, each parenthesised alternative title, what follows a colon, a
  possessive credit dropped) and the resource's names (its label without the `(film)`
  disambiguation, either side of a colon, the name the abstract opens with and the
  aliases it gives), all folded (case, accents, punctuation, leading articles, number
  words). 100 when only spacing differs (`Jungle2Jungle`); `CONTAINED` less when one
  name only contains the other (`Ghost` in `Ghost Dad`, `Quest` in `Conquest`), the
  way a join by title goes wrong. `ratio`, not a token-set score, for the same reason.
- year: the label's `(1994 film)` or, failing that, the years in the abstract's first
  sentence. The item's year among them adds `YEAR_MATCH`, one year off (release dates
  differ by country) `YEAR_NEAR`, none close subtracts `YEAR_CONFLICT`; no year, 0.
"""

from __future__ import annotations

import csv
import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
from pydantic import BaseModel
from rapidfuzz import fuzz

log = logging.getLogger(__name__)

MAP_FILE = "map.csv"
YEAR_MATCH, YEAR_NEAR, YEAR_CONFLICT = 10.0, 5.0, 25.0
CONTAINED = 15.0

_ARTICLES = ("the", "a", "an", "il", "la", "le", "les", "l", "el", "der", "die", "das",
             "lo", "los", "las", "un", "une")
_NUMBERS = {w: str(n) for n, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
_TRAILING_ARTICLE = re.compile(r"^(?P<rest>.*?),\s*(?P<art>[A-Za-z']+)$")
_PARENS = re.compile(r"\s*\(([^()]*)\)")
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")
_FILM_YEAR = re.compile(r"\((\d{4})[^)]*\)\s*$")
_ALIAS_LEAD = re.compile(
    r"^\s*(?:[A-Z][a-z]+(?: title)?:|original title|aka:?|or simply|"
    r"(?:also |often |sometimes |originally )?(?:known|released|titled|abbreviated|"
    r"stylized|stylised)[^:]*?\bas\b|sometimes titled|titled)\s*", re.IGNORECASE)
_ALIAS_SPLIT = re.compile(r"[;,\u2014\u2013]")
_OPENING = re.compile(r"^(?P<name>.+?)\s*(?:\([^)]*\)\s*)*,?\s+(?:is|was|are|were)\s")


class DoubtfulLink(BaseModel):
    """A link dropped by `check_links`, with what it was judged on."""

    item_id: str
    title: str
    year: int | None
    uri: str
    label: str
    title_score: float
    """Best fuzz.ratio between the folded title variants and resource names (0-100)."""
    year_score: float
    """The year adjustment (see the module docstring)."""
    score: float
    """title_score + year_score, compared with `data.link_min_score`."""
    abstract_opening: str
    """The abstract's first 160 characters (the hand check reads them)."""


def label_of(uri: str) -> str:
    """A resource's label: its URI's last segment, `_` as spaces."""
    return unquote(uri.rsplit("/", 1)[-1]).replace("_", " ")


def fold(text: str) -> str:
    """Lower case, no accents or punctuation, `&` as `and`, number words as digits,
    leading articles dropped: the form titles are compared in."""
    text = text.replace("\u00bd", " 1 2")  # `8½`: NFKD would glue the 1 to the 8
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = text.lower().replace("&", " and ").replace("+", " and ")
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    words = [_NUMBERS.get(w, w) for w in words]
    while len(words) > 1 and words[0] in _ARTICLES:
        words = words[1:]
    return " ".join(words)


def _without_owner(name: str) -> str:
    """`William Shakespeare's Romeo and Juliet` -> `Romeo and Juliet`, `Def Jam's How to
    Be a Player` -> `How to Be a Player`: a possessive credit in front of a title (kept
    only when two words or more remain, so `Carlito's Way` is not reduced to `Way`)."""
    head, sep, rest = name.partition("'s ")
    return rest if sep and len(head.split()) <= 3 and len(rest.split()) >= 2 else name


def _front_article(title: str) -> str:
    """`Usual Suspects, The` -> `The Usual Suspects` (MovieLens files articles last)."""
    m = _TRAILING_ARTICLE.match(title.strip())
    if m and m["art"].lower().strip("'") in _ARTICLES:
        return f"{m['art']} {m['rest']}"
    return title.strip()


def title_variants(title: str) -> set[str]:
    """The item's names: the title without its parentheses, each parenthesised
    alternative (`Seven (Se7en)`, `Shanghai Triad (Yao a yao ...)`) and what follows a
    colon (`Tales from the Crypt Presents: Demon Knight`), articles in front."""
    names = [_PARENS.sub("", title)] + _PARENS.findall(title)
    names += [n.split(":", 1)[1] for n in names if ":" in n]
    names += [_without_owner(n) for n in names]
    return {fold(_front_article(n)) for n in names if n.strip()} - {""}


def resource_names(label: str, abstract: str | None) -> set[str]:
    """The resource's names: its label without the disambiguation, either side of a
    colon (`Il Postino: The Postman`, `Police Story 4: First Strike`), the name its
    abstract opens with and the other names given there in parentheses (`Man Bites
    Dog (French: C'est arrivé près de chez vous, ...)`, `(also known as ...)`)."""
    names = {_PARENS.sub("", label).strip()}
    if abstract:
        m = _OPENING.match(abstract[:400])
        if m:
            for aside in [m["name"], *_PARENS.findall(m[0])]:
                names.update(_ALIAS_LEAD.sub("", part) for part in _ALIAS_SPLIT.split(aside))
    names |= {side for n in names if ":" in n for side in n.split(":", 1)}
    names |= {_without_owner(n) for n in names}
    return {fold(n) for n in names} - {""}


def year_score(year: int | None, label: str, abstract: str | None) -> float:
    """The year adjustment: the label's `(1994 film)`, else the abstract's first
    sentence's years, against the item's year."""
    if year is None or pd.isna(year):
        return 0.0
    m = _FILM_YEAR.search(label)
    if m:
        years = {int(m[1])}
    else:
        first = re.split(r"(?<=[a-z0-9)]{3})\.\s", (abstract or "")[:400], maxsplit=1)[0]
        years = {int(y) for y in _YEAR.findall(first)}
    if not years:
        return 0.0
    gap = min(abs(int(year) - y) for y in years)
    return YEAR_MATCH if gap == 0 else YEAR_NEAR if gap == 1 else -YEAR_CONFLICT


def score_link(item_id: str, title: str, year: int | None, uri: str,
               abstract: str | None) -> DoubtfulLink:
    """The link's scores (a `DoubtfulLink` whether or not it is kept)."""
    label = label_of(uri)
    mine, theirs = title_variants(title), resource_names(label, abstract)
    t, a, b = max(((fuzz.ratio(a, b), a, b) for a in mine for b in theirs),
                  default=(0.0, "", ""))
    squeezed_a, squeezed_b = a.replace(" ", ""), b.replace(" ", "")
    if squeezed_a == squeezed_b:  # spacing only: `Jungle2Jungle`, `MouseHunt`
        t = 100.0
    elif t < 100 and a and (squeezed_a in squeezed_b or squeezed_b in squeezed_a):
        # One name inside the other (`Ghost` / `Ghost Dad`, `Quest` / `Conquest`): how
        # a join by title goes wrong, not a spelling difference.
        t -= CONTAINED
    y = year_score(year, label, abstract)
    return DoubtfulLink(
        item_id=item_id, title=title, year=None if year is None or pd.isna(year) else int(year),
        uri=uri, label=label, title_score=round(t, 1), year_score=y,
        score=round(min(100.0, t + y), 1),
        abstract_opening=" ".join((abstract or "")[:160].split()))


def read_map(kg_dir: Path) -> dict[str, str]:
    """Item id -> DBpedia resource URI from `map.csv` (items without one left out)."""
    path = kg_dir / MAP_FILE
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        next(rows, None)
        return {r[0].strip(): r[1].strip() for r in rows if len(r) >= 2 and r[1].strip()}


def score_links(items: pd.DataFrame, abstracts: Mapping[str, str], uris: Mapping[str, str]
                ) -> list[DoubtfulLink]:
    """Every linked item's scores, in item order."""
    return [score_link(i, items.at[i, "title"], items.at[i, "year"], uris[i], abstracts.get(i))
            for i in items.index if i in uris]


def check_links(items: pd.DataFrame, abstracts: Mapping[str, str],
                triples: Iterable[tuple[str, str, str]], *, kg_dir: Path, min_score: float
                ) -> tuple[dict[str, str], list[tuple[str, str, str]], list[DoubtfulLink]]:
    """(kept abstracts, kept triples, dropped links): a link scoring under `min_score`
    loses its abstract and every DBpedia fact; the item keeps its genre and decade.
    Items with facts but no resource in `map.csv` are kept as they are (nothing to
    judge); no map at all, nothing is checked, and the log says so."""
    triples = list(triples)
    uris = read_map(kg_dir)
    if not uris:
        if abstracts or triples:
            log.warning("no %s in %s: DBpedia links not checked", MAP_FILE, kg_dir)
        return dict(abstracts), triples, []
    dropped = [s for s in score_links(items, abstracts, uris) if s.score < min_score]
    gone = {d.item_id for d in dropped}
    if dropped:  # counted in Dataset.stats(); `data stats` stays quiet on stderr
        log.debug("%d doubtful DBpedia links dropped (score < %s): %s", len(dropped),
                 min_score, ", ".join(f"{d.title} -> {d.label}" for d in dropped[:5])
                 + (" ..." if len(dropped) > 5 else ""))
    return ({i: a for i, a in abstracts.items() if i not in gone},
            [t for t in triples if t[0] not in gone], dropped)
