"""Free text to constraints, by rules the graph's own names make precise.

In: what a person wrote ("a 1990s comedy, nothing with Jim Carrey"), the catalogue's
`NameIndex`, and the vocabulary (vocabulary.toml: genre words, decade words, negation,
soft and clause cues). Out: `ParsedText`: each mention (a genre, a person or company, a
category, a title, a decade or year bound, a wish for less-known items, a reference to
the session's last answer) with its mode (wanted, unwanted, preferred, avoided) and its
span, the positive part of the text (what a text-similarity source may read: never the
negated words, so "no horror" does not pull horror films closer), and the words no rule
understood (what an LLM may be asked about; chat/llm_parse.py).

A negation cue makes the mentions after it in its clause unwanted; clauses end at
punctuation and at words like "but", so "comedies but nothing with Jim Carrey" wants
comedies and excludes the actor. A soft cue ("ideally", "maybe") turns a clause's wishes
into preferences. Names are matched whole (two words or more for people and titles, so
"Seven" the word is not "Se7en" the film), and a misspelt two- or three-word name is
matched when rapidfuzz finds one graph name close enough and clearly closest.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from rapidfuzz import fuzz, process

from rag_rec.chat.names import NameIndex, normalise

VOCABULARY = Path(__file__).with_name("vocabulary.toml")
Mode = Literal["any", "none", "prefer", "avoid"]
FUZZY_ACCEPT = 88.0
"""rapidfuzz ratio a misspelt name needs ("jim carey", "stephen spielberg"), when it is
also clearly closer than the next name (`CLEAR_LEAD`)."""
CLEAR_LEAD = 5.0
STOPWORDS = frozenset("""a an the of and or to in on for with by from about like some
any anything something movie movies film films please i me my we us you want watch
would love like likes really very just one ones that this these those tonight today
something show shows give recommend recommendations kind sort good great best new old
is are be it its im i m let s lets have has had get got more less than""".split())


@dataclass(frozen=True)
class Vocabulary:
    genres: dict[str, str]
    """Normalised word -> genre name."""
    decades: dict[str, int]
    negation: tuple[str, ...]
    soft: tuple[str, ...]
    clause: tuple[str, ...]
    tail: tuple[str, ...]
    after: tuple[str, ...]
    before: tuple[str, ...]
    ordinals: dict[str, int]
    more_like: tuple[str, ...]
    not_interested: tuple[str, ...]


@cache
def vocabulary(path: Path = VOCABULARY) -> Vocabulary:
    data = tomllib.loads(path.read_text())
    genres = {}
    for name, words in data["genres"].items():
        for word in [name, *words]:
            genres[normalise(word)] = name
    cues = data["cues"]
    refs = data["references"]
    return Vocabulary(
        genres=genres, decades={normalise(k): v for k, v in data["decades"].items()},
        **{key: tuple(normalise(w) for w in cues[key])
           for key in ("negation", "soft", "clause", "tail", "after", "before")},
        ordinals={normalise(k): v for k, v in data["ordinals"].items()},
        more_like=tuple(normalise(w) for w in refs["more_like"]),
        not_interested=tuple(normalise(w) for w in refs["not_interested"]))


@dataclass
class Mention:
    """One thing the text asks for, or against."""

    kind: Literal["genres", "people", "categories", "items", "years", "tail", "reference"]
    mode: Mode
    asked: str
    """The words as matched (normalised)."""
    ids: list[str] = field(default_factory=list)
    """Entity ids (genres, people, categories) or item ids (items)."""
    years: tuple[int | None, int | None] | None = None
    ordinal: int | None = None
    """For a reference: 1-based position in the last answer (-1: the last one)."""
    origin: Literal["text", "text_llm", "session"] = "text"
    """Read by the rules, proposed by the LLM and checked, or carried from an earlier turn
    of the session."""


@dataclass
class ParsedText:
    mentions: list[Mention]
    taste_text: str | None
    """The text without its negated clauses' parts: what the text-similarity source reads."""
    left: str | None
    """Content words no rule understood."""


def _phrase(words: tuple[str, ...]) -> str:
    return r"\b(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) \
        + r")\b"


def clauses(text: str, vocab: Vocabulary) -> list[str]:
    """Normalised clauses: split at punctuation and at clause words ("but", ...), except
    inside a negation cue that holds one ("anything but")."""
    out = []
    # A full stop after a lone capital is an initial ("Samuel L. Jackson"), not an end.
    for part in re.split(r"[,;()\n]+|(?<!\b[A-Z])[.!?]+", text):
        norm = normalise(part)
        protected = norm
        for cue in vocab.negation:
            if " " in cue:
                protected = protected.replace(cue, cue.replace(" ", "_"))
        for piece in re.split(_phrase(vocab.clause), protected):
            piece = piece.replace("_", " ").strip()
            if piece:
                out.append(piece)
    return out


class Parser:
    """The rules, bound to one catalogue's names."""

    def __init__(self, names: NameIndex, vocab: Vocabulary | None = None):
        self.names = names
        self.vocab = vocab or vocabulary()
        self._named: set[str] = set()
        self.genre_ids = {normalise(n): ids for n, ids in (
            (name, names.exact(name, ("genre",))) for name in set(self.vocab.genres.values()))
            if ids}
        self._people = [key for (kind, key) in names.by_name if kind == "dbpedia"
                        and " " in key]

    def parse(self, text: str) -> ParsedText:
        mentions: list[Mention] = []
        positive, left = [], []
        # A one-word title counts only where the writer marked it as a name: capitalised
        # past a sentence's first word ("like Fargo", not "fargo" or "Seven").
        self._named = {normalise(word) for word in re.findall(
            r"(?<![.!?]\s)(?<!^)\b[A-Z][\w'-]{3,}", text)}
        for clause in clauses(text, self.vocab):
            negated_from = _first(clause, self.vocab.negation)
            soft = _first(clause, self.vocab.soft) is not None
            found, taken = self._clause_mentions(clause)
            for mention, start in found:
                negative = negated_from is not None and start >= negated_from
                mention.mode = ("avoid" if negative else "prefer") if soft and \
                    mention.kind not in ("years", "reference") else \
                    ("none" if negative else mention.mode)
                mentions.append(mention)
            keep = clause if negated_from is None else clause[:negated_from]
            if set(keep.split()) - STOPWORDS:
                positive.append(keep)
            left += [w for n, w in enumerate(clause.split())
                     if n not in taken and w not in STOPWORDS and not w.isdigit()
                     and not any(w in cue.split() for cue in self.vocab.negation
                                 + self.vocab.soft + self.vocab.after + self.vocab.before)]
        taste = " ".join(positive) or None
        return ParsedText(mentions, taste, " ".join(left) or None)

    def _clause_mentions(self, clause: str) -> tuple[list[tuple[Mention, int]], set[int]]:
        """(mention, character offset) of everything recognised in a clause, and the word
        positions they cover (longest match first: a title or name before its words)."""
        words = clause.split()
        starts = [m.start() for m in re.finditer(r"\S+", clause)]
        taken: set[int] = set()
        found: list[tuple[Mention, int]] = []

        def claim(first: int, last: int) -> bool:
            span = set(range(first, last))
            if span & taken:
                return False
            taken.update(span)
            return True

        found += self._references(clause, words, starts, claim)
        found += self._years(clause, words, starts, claim)
        for size in (6, 5, 4, 3, 2, 1):
            for first in range(len(words) - size + 1):
                phrase = " ".join(words[first:first + size])
                mention = self._name(phrase, size)
                if mention is not None and claim(first, first + size):
                    found.append((mention, starts[first]))
        found += self._fuzzy_people(words, starts, claim)
        for cue in self.vocab.tail:
            match = re.search(_phrase((cue,)), clause)
            if match:
                found.append((Mention("tail", "any", cue), match.start()))
                first = len(clause[:match.start()].split())
                claim(first, first + len(cue.split()))
        return found, taken

    def _name(self, phrase: str, size: int) -> Mention | None:
        """A title (two words or more, or one capitalised word), genre word,
        person/company or category."""
        if phrase in STOPWORDS:
            return None
        genre = self.vocab.genres.get(phrase)
        if size >= 2 or (phrase in self._named and genre is None):
            items = self.names.title_items(phrase)
            if items:
                return Mention("items", "any", phrase, items)
        if genre is not None and normalise(genre) in self.genre_ids:
            return Mention("genres", "any", phrase, self.genre_ids[normalise(genre)])
        if size >= 2:
            people = self.names.exact(phrase, ("dbpedia",))
            if people:
                return Mention("people", "any", phrase, people)
            categories = self.names.exact(phrase, ("category",))
            if categories:
                return Mention("categories", "any", phrase, categories)
        return None

    def _fuzzy_people(self, words, starts, claim) -> list[tuple[Mention, int]]:
        """Misspelt two- and three-word names. A lone surname is left alone: "Christie"
        would be Julie Christie to the graph when the writer meant Agatha."""
        out = []
        for size in (3, 2):
            for first in range(len(words) - size + 1):
                span = words[first:first + size]
                if any(w in STOPWORDS or len(w) < 3 for w in span):
                    continue
                phrase = " ".join(span)
                best = process.extract(phrase, self._people, scorer=fuzz.ratio, limit=2)
                if not best or best[0][1] < FUZZY_ACCEPT or (
                        len(best) > 1 and best[1][1] > best[0][1] - CLEAR_LEAD):
                    continue
                if claim(first, first + size):
                    ids = self.names.exact(best[0][0], ("dbpedia",))
                    out.append((Mention("people", "any", phrase, ids), starts[first]))
        return out

    def _years(self, clause, words, starts, claim) -> list[tuple[Mention, int]]:
        out = []
        decade = r"(?:the\s+)?(?:(?P<century>1[89]|20)?(?P<tens>\d)0s|(?P<word>" + "|".join(
            self.vocab.decades) + r"))"
        bound = r"(?:(?P<after>" + "|".join(map(re.escape, self.vocab.after)) + r")|(?P<before>" \
            + "|".join(map(re.escape, self.vocab.before)) + r"))\s+"
        pattern = re.compile(r"\b(?:between\s+(?P<from>\d{4})\s+and\s+(?P<to>\d{4})|(?:"
                             + bound + r")?(?:" + decade + r"|(?P<year>\d{4})))\b")
        for match in pattern.finditer(clause):
            start_year = end_year = None
            if match["from"]:
                start_year, end_year = sorted((int(match["from"]), int(match["to"])))
            else:
                if match["year"]:
                    first = last = int(match["year"])
                elif match["word"]:
                    first = self.vocab.decades[match["word"]]
                    last = first + 9
                else:
                    century = match["century"] or ("20" if match["tens"] in "01" else "19")
                    first = int(century + match["tens"] + "0")
                    last = first + 9
                if match["after"] == "from" and not match["year"]:
                    start_year, end_year = first, last  # "from the 80s": in them
                elif match["after"]:
                    start_year = last + 1 if match["after"] in ("after", "post", "later than",
                                                                  "newer than") else first
                elif match["before"]:
                    end_year = first - 1 if match["before"] in ("before", "pre", "older than",
                                                                "earlier than") else last
                elif match["year"]:
                    continue  # a bare year is too often something else ("2 of 1999")
                else:
                    start_year, end_year = first, last
            word = len(clause[:match.start()].split())
            if claim(word, word + len(match[0].split())):
                out.append((Mention("years", "any", match[0], years=(start_year, end_year)),
                            match.start()))
        return out

    def _references(self, clause, words, starts, claim) -> list[tuple[Mention, int]]:
        """"not that one", "more like the second": the session's last answer."""
        out = []
        for phrase, ordinal in sorted(self.vocab.ordinals.items(), key=lambda p: -len(p[0])):
            for match in re.finditer(_phrase((phrase,)), clause):
                before = clause[:match.start()].strip()
                if any(before.endswith(cue) for cue in self.vocab.more_like):
                    mode: Mode = "prefer"
                elif any(before.endswith(cue) for cue in self.vocab.not_interested):
                    mode = "none"
                else:
                    continue
                word = len(before.split())
                if claim(word, word + len(phrase.split())):
                    out.append((Mention("reference", mode, match[0], ordinal=ordinal),
                                match.start()))
        return out


def _first(clause: str, cues: tuple[str, ...]) -> int | None:
    match = re.search(_phrase(cues), clause)
    return match.start() if match else None
