"""Facts in words: how titles, entities, relations, genres and categories are phrased.

In: `Fact` / `Evidence` objects (and MovieLens titles, DBpedia names). Out: strings: a
title as people write it (`display_title`), an entity without its disambiguation
(`display_entity`), the recommended film's side of a path as a phrase (`attribute`),
the way back to the history film (`via`), and a whole path in plain words
(`fact_in_words`, `evidence_in_words`, which back `Fact.plain` and `Evidence.plain`).

The phrases themselves are data, in `phrasing.toml` next to this file, read once at
import: one `[relation.<name>]` table per relation is the place to phrase a new one; a
dataset phrases its own in dataset.toml (`[relations.NAME] phrase = "made by {tail}"`,
applied inside `rag_rec.wording.speaking_of`, with its item noun), and a relation
nobody phrased reads from its name ("edited by Peter Honess"; "Rob Roy and Schindler's List are both edited
by Peter Honess."). This module only decides which phrase applies.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag_rec.models import Evidence, Fact, Item, use_phrasing
from rag_rec.wording import dataset_words

_DATA = tomllib.loads(Path(__file__).with_name("phrasing.toml").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class RelationPhrasing:
    """One relation's phrases (`phrasing.toml` explains each field)."""

    attribute: str
    both: str
    history_verb: str | None = None
    plain_verb: str | None = None
    pronoun: str = "who"


DEFAULT_PHRASING = RelationPhrasing(**_DATA["default"])
RELATIONS: dict[str, RelationPhrasing] = {
    name: RelationPhrasing(**(_DATA["default"] | table))
    for name, table in _DATA["relation"].items()}
"""Relation name -> its phrases; what a relation's table leaves out comes from [default]."""


def _readable(relation: str) -> RelationPhrasing:
    """A relation nobody phrased, read from its name: `written_by` -> "written by X",
    `has_author` -> "with author X"."""
    words = relation.replace("_", " ").strip()
    if words.startswith("has "):
        return RelationPhrasing(attribute=f"with {words[4:]} {{entity}}",
                                both=f"{{candidate}} and {{history}} both have {words[4:]} "
                                     "{entity}.")
    return RelationPhrasing(attribute=f"{words} {{entity}}",
                            both=f"{{candidate}} and {{history}} are both {words} {{entity}}.")


def relation_phrasing(relation: str) -> RelationPhrasing:
    """The phrases of `relation`: the dataset's own, phrasing.toml's, or read from the
    relation's name (`_readable`) for a relation nobody phrased."""
    own = dataset_words().relation_phrases.get(relation)
    if own is not None:
        phrase = own.replace("{tail}", "{entity}")
        return RelationPhrasing(attribute=phrase,
                                both="{candidate} and {history} are both " + phrase + ".")
    return RELATIONS.get(relation) or _readable(relation)


GENRE_WORDS: dict[str, tuple[str, ...]] = {
    genre: tuple(table["words"]) for genre, table in _DATA["genre"].items()}
"""Genre -> the words a text may name it with."""
_GENRE_PHRASE = {genre: table["phrase"] for genre, table in _DATA["genre"].items()
                 if "phrase" in table}
CATEGORY_PERSON = re.compile(
    "^(" + "|".join(re.escape(prefix) for prefix in _DATA["category"]["person"]) + ") (.+)$",
    re.I)
"""Categories that name a person's part in the film: group 1 the part, group 2 the person."""
_CATEGORY_PHRASE = {prefix.lower(): phrase
                    for prefix, phrase in _DATA["category"]["person"].items()}
_COMMON_FIRST = frozenset(_DATA["category"]["common_first"].split())
PARTICIPLES: tuple[str, ...] = tuple(_DATA["sentence"]["participles"])
"""Attribute phrases starting with one of these can share a sentence with another."""

# --------------------------------------------------------------------------- names

_ARTICLES = ("The", "A", "An", "Les", "La", "Le", "Il", "Das", "Der", "Die", "El")
TRAILING_PAREN = re.compile(r"\s*\([^()]*\)\s*$")
"""A name's trailing "(...)": a MovieLens year or alternative title, a DBpedia
disambiguation."""


def display_title(title: str) -> str:
    """MovieLens title as people write it: "Usual Suspects, The" -> "The Usual Suspects",
    "Seven (Se7en)" -> "Seven"."""
    name = title.strip()
    while TRAILING_PAREN.search(name) and TRAILING_PAREN.sub("", name):
        name = TRAILING_PAREN.sub("", name)
    head, sep, article = name.rpartition(", ")
    if sep and article in _ARTICLES:
        name = f"{article} {head}"
    elif sep and article == "L'":
        name = f"L'{head}"
    return name


def display_entity(name: str) -> str:
    """DBpedia name without its disambiguation: "David Warner (actor)" -> "David Warner"."""
    return TRAILING_PAREN.sub("", name).strip() or name


# --------------------------------------------------------------------------- phrases


def attribute(fact: Fact) -> str:
    """The candidate's side of the path as a lower-case phrase: "directed by Ridley
    Scott", "a science-fiction film", "one of the 1990s crime films"."""
    name = display_entity(fact.entity_name)
    if fact.relation == "has_genre":
        return genre_phrase(fact.entity_name)
    if fact.relation == "subject":
        if (person := CATEGORY_PERSON.match(name)) is not None:
            return f"{_CATEGORY_PHRASE[person.group(1).lower()]} {person.group(2)}"
        first = name.split()[0]
        if first.lower() in _COMMON_FIRST:  # "Time travel films" -> "time travel films"
            name = first.lower() + name[len(first):]
        if re.search(r"\bfilms\b", name) and not name.endswith(" in films"):
            return f"one of the {name}"
        return f"listed under “{name}”"
    return relation_phrasing(fact.relation).attribute.format(entity=name)


def capitalised(text: str) -> str:
    """`text` with its first letter upper-case (the rest untouched, unlike `str.capitalize`)."""
    return text[:1].upper() + text[1:]


def rated(rating: float | None) -> str:
    """The user's rating as a clause: "which you rated 5 stars" ("which you liked": unknown;
    "which you chose" on data without ratings)."""
    if rating is None:
        return f"which you {dataset_words().unrated}"
    return f"which you rated {rating:g} stars"


def stars(rating: float | None) -> str:
    """The user's rating, short enough for brackets: "5 stars" ("you liked it": unknown)."""
    return f"you {dataset_words().unrated} it" if rating is None else f"{rating:g} stars"


def via(fact: Fact) -> str:
    """How the entity reaches the history film: "like Blade Runner" when it plays the same
    part there, else "who directed Blade Runner"."""
    title = display_title(fact.history_title)
    history_side = relation_phrasing(fact.history_relation)
    if fact.relation == fact.history_relation or history_side.history_verb is None:
        return f"like {title}"
    return f"{history_side.pronoun} {history_side.history_verb} {title}"


def fact_in_words(fact: Fact) -> str:
    """A path in plain words, e.g. "Rob Roy stars Liam Neeson, who also starred in
    Schindler's List." (`Fact.plain`)."""
    candidate, history = display_title(fact.candidate_title), display_title(fact.history_title)
    name = display_entity(fact.entity_name)
    candidate_side = relation_phrasing(fact.relation)
    history_side = relation_phrasing(fact.history_relation)
    if candidate_side.plain_verb and history_side.history_verb:
        return (f"{candidate} {candidate_side.plain_verb} {name}, {history_side.pronoun} also "
                f"{history_side.history_verb} {history}.")
    return candidate_side.both.format(candidate=candidate, history=history, entity=name,
                                      entity_name=fact.entity_name,
                                      relation=fact.relation.replace("_", " "),
                                      noun=dataset_words().noun)


def evidence_in_words(evidence: Evidence) -> str:
    """`fact_in_words` plus the user's rating of the history film (`Evidence.plain`)."""
    history = display_title(evidence.fact.history_title)
    rating = (f"you {dataset_words().unrated} it" if evidence.history_rating is None
              else f"you rated it {evidence.history_rating:g} stars")
    return f"{fact_in_words(evidence.fact)} ({history}: {rating}.)"


# The data model declares that facts and evidence have plain words; these are they.
use_phrasing(fact=fact_in_words, evidence=evidence_in_words)


def genre_phrase(genre: str) -> str:
    """"a comedy film", "an animated film", "a documentary"; for another dataset's noun,
    "a kitchen product", "an outdoor product"."""
    noun = dataset_words().noun
    if genre in _GENRE_PHRASE:
        phrase = _GENRE_PHRASE[genre]
        return phrase if noun == "film" else phrase.replace(" film", f" {noun}")
    words = f"{genre.lower()} {noun}"
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def describe_item(item: Item, people: Mapping[str, Sequence[str]]) -> str:
    """What the graph says of the item itself, as one clause: "The Shawshank Redemption,
    a drama film from 1994, directed by Frank Darabont, starring Tim Robbins and Morgan
    Freeman". `people`: relation -> display names (directed_by, starring, written_by),
    most telling first. Every word is the item's own data or a graph fact about it."""
    parts = [display_title(item.title)]
    noun = dataset_words().noun
    kind = genre_phrase(item.genres[0]) if item.genres else \
        f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
    parts.append(f"{kind} from {item.year}" if item.year else kind)
    if people.get("directed_by"):
        parts.append("directed by " + _and(people["directed_by"][:2]))
    elif people.get("written_by"):
        parts.append("written by " + _and(people["written_by"][:2]))
    if people.get("starring"):
        parts.append("starring " + _and(people["starring"][:2]))
    return ", ".join(parts)


def _and(names: Sequence[str]) -> str:
    names = [display_entity(name) for name in names]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
