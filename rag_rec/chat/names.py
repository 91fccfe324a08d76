"""Names to graph entities and items: what a person writes ("jim carey", "Amélie",
"comedies") to the entities and titles the knowledge graph holds.

In: the catalogue's entities (id, name, kind) and item titles. Out: entity ids for a name
of a given kind (`resolve`), or ranked matches for a lookup (`search`). Matching ignores
case, accents and punctuation, and forgives small typos through rapidfuzz; a name that
matches nothing well, or several different names equally well, raises `UnknownName`
naming the nearest ones, so a caller can ask again instead of getting a guess.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from rag_rec.errors import UnknownName

KINDS: dict[str, tuple[str, ...]] = {
    "genres": ("genre",), "people": ("dbpedia",), "categories": ("category",),
    "entities": ("genre", "dbpedia", "category", "decade"),
}
"""Which graph entity kinds each name filter matches (`Filters` fields); `entities` also
matches any other kind a catalogue's triples.csv gives (`tail_kind`: brand, author)."""
OWN_KINDS = "entity"
"""The search kind standing for those other kinds: a catalogue's own entities (a tail
with no `tail_kind` is of kind `entity` itself)."""
ACCEPT = 90.0
"""rapidfuzz WRatio a near match needs to stand for a name (one typo in a short name)."""
CLEAR_LEAD = 4.0
"""How far the best near match must lead the next different name to be taken alone."""


_PARENTHESIS = re.compile(r"\s*\([^()]*\)\s*$")
_ARTICLE = re.compile(r"^(?P<rest>.+), (?P<article>the|a|an|les|la|le|il|das|der|die|el)$",
                      re.IGNORECASE)


def aliases(name: str) -> set[str]:
    """The normalised forms a name is found by: as written, without a trailing
    disambiguation ("Harry Carey (actor)"), and a trailing article moved to the front
    ("Usual Suspects, The")."""
    forms = {name, _PARENTHESIS.sub("", name)}
    forms |= {f"{m['article']} {m['rest']}" for f in list(forms) if (m := _ARTICLE.match(f))}
    return {normalise(f) for f in forms if f.strip()}


def normalise(text: str) -> str:
    """Lower case, no accents, punctuation as spaces: how names are compared."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


@dataclass(frozen=True)
class Match:
    """A lookup hit: an entity or an item, its display name, and how well it matched."""

    id: str
    name: str
    kind: str
    """The entity kind (genre, dbpedia, category, decade, a catalogue's own), or `item`."""
    score: float


class NameIndex:
    """Every entity name and item title of a catalogue, normalised once."""

    def __init__(self, entities: Iterable[tuple[str, str, str]],
                 titles: Mapping[str, str]):
        """`entities`: (entity id, name, kind); `titles`: item id -> title."""
        self.names: dict[str, str] = {}
        self.kinds: dict[str, str] = {}
        self.by_name: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.titles: dict[str, str] = {}
        self.by_title: dict[str, list[str]] = defaultdict(list)
        self._choices: dict[str, list[str]] = defaultdict(list)
        for entity_id, name, kind in entities:
            self.add_entity(entity_id, name, kind)
        for item_id, title in titles.items():
            self.add_title(item_id, title)

    def add_entity(self, entity_id: str, name: str, kind: str) -> None:
        if entity_id in self.names:
            return
        self.names[entity_id], self.kinds[entity_id] = name, kind
        for key in aliases(name):
            if not self.by_name[(kind, key)]:
                self._choices[kind].append(key)
            self.by_name[(kind, key)].append(entity_id)

    def add_title(self, item_id: str, title: str) -> None:
        self.titles[item_id] = title
        for key in aliases(title):
            self.by_title[key].append(item_id)

    def exact(self, name: str, kinds: Iterable[str]) -> list[str]:
        """Entity ids whose normalised name is `name`'s, of these kinds."""
        key = normalise(name)
        return [e for kind in kinds for e in self.by_name.get((kind, key), [])]

    def resolve(self, name: str, filter_kind: str) -> list[str]:
        """The entity ids `name` means among a filter's kinds (several when entities share
        the name); `UnknownName` with the nearest names when none or several differ."""
        kinds = KINDS[filter_kind]
        if filter_kind == "entities":  # whatever its kind: a catalogue's own (brand, author)
            kinds = kinds + self.own_kinds()
        if name in self.names and self.kinds[name] in kinds:  # an entity id
            return [name]
        found = self.exact(name, kinds)
        if found:
            return found
        near = self.near(name, kinds, limit=5)
        if near and near[0].score >= ACCEPT and (
                len(near) == 1 or near[0].score - near[1].score >= CLEAR_LEAD):
            return self.exact(near[0].name, kinds)
        shown = ", ".join(f"{m.name!r}" for m in near) or "none"
        why = "matches several names equally" if near and near[0].score >= ACCEPT else \
            "is not in the knowledge graph"
        raise UnknownName(f"{filter_kind} name {name!r} {why}; nearest: {shown}",
                          nearest=[m.name for m in near])

    def own_kinds(self) -> tuple[str, ...]:
        """The kinds this catalogue's entities have beyond MovieLens' graph kinds."""
        return tuple(k for k in self._choices if k not in KINDS["entities"])

    def near(self, name: str, kinds: Iterable[str], limit: int = 5) -> list[Match]:
        """The best distinct names of these kinds for `name`, best first."""
        key = normalise(name)
        hits: dict[str, Match] = {}
        for kind in kinds:
            for choice, score, _ in process.extract(key, self._choices.get(kind, []),
                                                    scorer=fuzz.WRatio, limit=limit):
                entity = self.by_name[(kind, choice)][0]
                display = self.names[entity]
                if display not in hits or hits[display].score < score:
                    hits[display] = Match(entity, display, kind, float(score))
        return sorted(hits.values(), key=lambda m: (-m.score, m.name))[:limit]

    def title_items(self, title: str) -> list[str]:
        """Item ids whose normalised title is `title`'s."""
        return list(self.by_title.get(normalise(title), []))

    def search(self, query: str, *, kinds: Iterable[str] = ("item", "genre", "dbpedia",
                                                              "category", OWN_KINDS),
               limit: int = 10) -> list[Match]:
        """Items by title and entities by name for a lookup, best first; the kind
        `entity` searches all of the catalogue's own kinds (`own_kinds`)."""
        key = normalise(query)
        kinds = list(kinds)
        if OWN_KINDS in kinds:
            kinds += [k for k in self.own_kinds() if k not in kinds]
        hits: list[Match] = []
        if "item" in kinds:
            best: dict[str, Match] = {}
            for choice, score, _ in process.extract(key, list(self.by_title),
                                                    scorer=fuzz.WRatio, limit=2 * limit):
                for item in self.by_title[choice]:
                    if item not in best or best[item].score < score:
                        best[item] = Match(item, self.titles[item], "item", float(score))
            hits += best.values()
        hits += self.near(query, [k for k in kinds if k != "item"], limit=limit)
        # On a tie a title wins: "Toy Story" is the film before the category.
        return sorted(hits, key=lambda m: (-m.score, m.kind != "item", m.kind, m.name))[:limit]
