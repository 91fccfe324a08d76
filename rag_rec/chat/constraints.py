"""A request as understood (`Plan`) and the catalogue it is checked against (`Catalogue`).

In: a `RecommendRequest`, the parsed text's mentions, the session's shown items and
feedback, and the catalogue's item -> entity links, years and long-tail set. Out: a `Plan`
in graph ids: the hard constraints (`allows` says whether an item satisfies all of them,
`allowed` lists the catalogue's items that do), the soft ones as a score term
(`preference`), the items liked and excluded this turn, and the `Understood` summary that
goes back with the answer. Names the request gives are resolved here (`UnknownName` for
one the graph does not know); a constraint the text or an assistant states both ways, or
a year range that is empty, is refused (`InvalidRequest`) naming both sides.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from rag_rec.chat.names import NameIndex
from rag_rec.chat.parse import Mention, ParsedText
from rag_rec.chat.request import NAME_KINDS, Constraint, RecommendRequest, Understood
from rag_rec.errors import InvalidRequest, UnknownItem

PREFERENCE_WEIGHT = 1.0
"""Log-odds a soft preference adds (an avoided name subtracts) per matching item: about
what separates the 3rd and the 10th candidate of a typical list, so it reorders a list
without overriding the ranking."""
DISLIKED_RELATIONS = ("directed_by", "starring", "written_by")
SIDE_RELATIONS = frozenset({"has_genre", "released_in_decade"})
"""What every item has (data/kg.py's side KG), whether or not the graph knows more."""
SIDE_KINDS = frozenset({"genre", "decade"})
"""The relations of a disliked item whose people are avoided (softly) afterwards."""


@dataclass
class Catalogue:
    """What constraints are checked against: each item's graph entities and year, and
    which items are long-tail."""

    entities: dict[str, set[str]]
    years: dict[str, int | None]
    tail: set[str]
    links: dict[str, list[tuple[str, str]]]
    """Item id -> (relation, entity id)."""
    described: set[str] = field(default_factory=set)
    """Items the graph knows more of than their genres and decade (people, companies,
    categories): only these can be checked against "none of" a person or category."""

    @classmethod
    def of(cls, items: pd.DataFrame, triples: pd.DataFrame, tail: Iterable[str]) -> Catalogue:
        entities: dict[str, set[str]] = defaultdict(set)
        links: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for item_id, relation, entity_id in triples[["item_id", "relation", "entity_id"]] \
                .itertuples(index=False):
            entities[item_id].add(entity_id)
            links[item_id].append((relation, entity_id))
        years = {i: (None if pd.isna(y) else int(y)) for i, y in items["year"].items()}
        described = {i for i, rel in zip(triples.item_id, triples.relation)
                     if rel not in SIDE_RELATIONS}
        return cls({i: entities.get(i, set()) for i in items.index}, years, set(tail),
                   dict(links), described)

    def add_item(self, item_id: str, year: int | None,
                 links: Sequence[tuple[str, str]], tail: bool) -> None:
        self.entities[item_id] = {e for _, e in links}
        self.links[item_id] = list(links)
        self.years[item_id] = year
        if any(relation not in SIDE_RELATIONS for relation, _ in links):
            self.described.add(item_id)
        if tail:
            self.tail.add(item_id)


@dataclass
class Plan:
    """The request in graph ids."""

    groups: list[set[str]] = field(default_factory=list)
    """Each group: the item links to at least one of its entities."""
    banned_described: bool = False
    """Some banned entity is a person, company or category: items the graph knows none
    of those for cannot be shown ("nothing with Jim Carrey" must not let through a film
    whose cast the graph does not know)."""
    banned: set[str] = field(default_factory=set)
    """Entities the item links to none of."""
    years: tuple[int | None, int | None] = (None, None)
    banned_years: list[tuple[int | None, int | None]] = field(default_factory=list)
    excluded: set[str] = field(default_factory=set)
    tail_only: bool = False
    prefer: set[str] = field(default_factory=set)
    avoid: set[str] = field(default_factory=set)
    liked: list[str] = field(default_factory=list)
    """Items liked this turn, oldest first (they extend the history)."""
    taste: str | None = None
    """The text's positive words, for the text-similarity source (never negated ones)."""
    standing: list[dict] = field(default_factory=list)
    """The wishes the session keeps for its next turns (`sessions.standing`)."""
    feedback: dict[str, str] = field(default_factory=dict)
    """Item -> signal as understood this turn (the session's, the request's, the text's
    "not that one"): what the session remembers."""
    understood: Understood = field(default_factory=Understood)

    @property
    def constrained(self) -> bool:
        return bool(self.groups or self.banned or self.years != (None, None)
                    or self.banned_years or self.tail_only)

    def allows(self, item_id: str, catalogue: Catalogue) -> bool:
        """Whether the item satisfies every hard constraint (excluded ids aside)."""
        linked = catalogue.entities.get(item_id, set())
        if any(not group & linked for group in self.groups) or self.banned & linked:
            return False
        if self.banned_described and item_id not in catalogue.described:
            return False
        year = catalogue.years.get(item_id)
        start, end = self.years
        if (start is not None or end is not None) and year is None:
            return False
        if (start is not None and year < start) or (end is not None and year > end):
            return False
        for low, high in self.banned_years:
            if year is not None and (low is None or year >= low) and (high is None
                                                                      or year <= high):
                return False
        return not self.tail_only or item_id in catalogue.tail

    def unchecked(self, catalogue: Catalogue) -> int:
        """Items left out only because the graph knows no people or categories of them
        (`banned_described`)."""
        if not self.banned_described:
            return 0
        lenient = replace(self, banned_described=False)
        return sum(1 for i in catalogue.entities
                   if i not in catalogue.described and lenient.allows(i, catalogue))

    def allowed(self, catalogue: Catalogue) -> set[str] | None:
        """The items satisfying the hard constraints; None when there are none."""
        if not self.constrained:
            return None
        return {i for i in catalogue.entities if self.allows(i, catalogue)}

    def met(self, item_id: str, catalogue: Catalogue, names: NameIndex) -> list[str]:
        """The request's wishes this item meets, in words: the names it is linked to
        among those asked for or preferred, and the year range."""
        linked = catalogue.entities.get(item_id, set())
        wished = set().union(*self.groups, self.prefer) if self.groups or self.prefer \
            else set()
        met = sorted({names.names[e] for e in wished & linked})
        year = catalogue.years.get(item_id)
        if self.years != (None, None) and year is not None:
            met.append(f"released in {year}")
        return met

    def preference(self, item_id: str, catalogue: Catalogue) -> float:
        linked = catalogue.entities.get(item_id, set())
        return PREFERENCE_WEIGHT * (bool(self.prefer & linked) - bool(self.avoid & linked))


def plan_request(request: RecommendRequest, parsed: ParsedText | None, names: NameIndex,
                 catalogue: Catalogue, *, shown: Sequence[str] = (), last: Sequence[str] = (),
                 feedback: Mapping[str, str] | None = None) -> Plan:
    """The request's filters, preferences, text and session feedback as one `Plan`.
    `shown`: every item the session showed; `last`: its last answer, in order (what
    "the second" refers to); `feedback`: item -> signal (the session's and this
    request's)."""
    plan = Plan()
    constraints: list[Constraint] = []
    for kind in NAME_KINDS:
        wanted = getattr(request.filters, kind)
        any_of: set[str] = set()  # the whole any-of list is one group
        for mode in ("any", "all", "none"):
            for name in getattr(wanted, mode):
                ids = names.resolve(name, kind)
                constraints.append(_constraint(kind, mode, name, ids, names, "filters"))
                if mode == "any":
                    any_of |= set(ids)
                else:
                    _apply(plan, mode, ids)
        if any_of:
            plan.groups.append(any_of)
    for mode, wanted in (("prefer", request.prefer), ("avoid", request.avoid)):
        for name in wanted.any:
            ids = names.resolve(name, "entities")
            (plan.prefer if mode == "prefer" else plan.avoid).update(ids)
            constraints.append(_constraint("entities", mode, name, ids, names, "preference"))
    years = request.filters.years
    if years.start is not None or years.end is not None:
        plan.years = (years.start, years.end)
        constraints.append(Constraint(kind="years", mode="range",
                                      asked=_years_text(plan.years),
                                      entities=[_years_text(plan.years)]))
    if request.filters.tail_only:
        plan.tail_only = True
        constraints.append(Constraint(kind="tail", mode="any", asked="long-tail items only"))

    signals = dict(feedback or {})
    liked = list(request.liked_item_ids)
    if parsed is not None:
        _apply_text(plan, parsed, names, constraints, liked, signals, last)
    for item_id, signal in signals.items():
        if signal in ("liked", "more_like"):
            liked.append(item_id)
        else:
            plan.excluded.add(item_id)
            if signal == "disliked":
                plan.avoid |= {e for rel, e in catalogue.links.get(item_id, [])
                               if rel in DISLIKED_RELATIONS}
    plan.excluded |= set(request.disliked_item_ids) | set(request.filters.exclude_item_ids)
    unknown = sorted({i for i in liked + sorted(plan.excluded) if i not in catalogue.entities})
    if unknown:
        raise UnknownItem(f"unknown item ids: {', '.join(unknown[:10])}")
    # A shown item can be liked ("more like the second") and still not be shown again.
    plan.liked = [i for i in dict.fromkeys(liked) if i not in plan.excluded]
    # "no horror, I hate gore" says one thing twice: it is understood once.
    constraints = list({(c.kind, c.mode, tuple(c.entities)): c
                        for c in reversed(constraints)}.values())[::-1]
    plan.understood = Understood(
        constraints=constraints, liked_item_ids=plan.liked,
        excluded_item_ids=sorted(plan.excluded), already_shown=len(set(shown) - plan.excluded),
        text_left=parsed.left if parsed is not None else None)
    plan.excluded |= set(shown)
    plan.feedback = signals
    plan.banned_described = any(names.kinds.get(e) not in SIDE_KINDS for e in plan.banned)
    _check(plan, names)
    return plan


def _apply(plan: Plan, mode: str, ids: Iterable[str]) -> None:
    """One name's entities into the plan: its own group for "any" and "all" (the item
    links to one of them: entities that share the name), banned, preferred, avoided."""
    ids = set(ids)
    if mode == "none":
        plan.banned |= ids
    elif mode == "prefer":
        plan.prefer |= ids
    elif mode == "avoid":
        plan.avoid |= ids
    else:
        plan.groups.append(ids)


def _apply_text(plan: Plan, parsed: ParsedText, names: NameIndex,
                constraints: list[Constraint], liked: list[str], signals: dict[str, str],
                last: Sequence[str]) -> None:
    """The text's mentions into the plan: wanted names of one kind form one any-of group
    ("comedies or dramas"), unwanted ones are banned, titles are liked (or excluded)."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for mention in parsed.mentions:
        if mention.kind == "reference":
            constraints.append(_reference(mention, last, signals))
            continue
        if mention.kind == "years":
            _apply_years(plan, mention, constraints)
            continue
        if mention.kind == "tail":
            plan.tail_only = plan.tail_only or mention.mode == "any"
            constraints.append(Constraint(kind="tail", mode="any", asked=mention.asked,
                                          origin=mention.origin))
            continue
        if mention.kind == "items":
            (liked.extend if mention.mode in ("any", "prefer") else plan.excluded.update)(
                mention.ids)
            constraints.append(Constraint(kind="items", mode=mention.mode, asked=mention.asked,
                                          entities=[names.titles[i] for i in mention.ids],
                                          origin=mention.origin))
            continue
        if mention.mode == "any":
            wanted[mention.kind] |= set(mention.ids)
        else:
            _apply(plan, mention.mode, mention.ids)
        constraints.append(_constraint(mention.kind, mention.mode, mention.asked,
                                       mention.ids, names, mention.origin))
    plan.groups += list(wanted.values())


def _apply_years(plan: Plan, mention: Mention, constraints: list[Constraint]) -> None:
    low, high = mention.years
    if mention.mode == "none":
        plan.banned_years.append((low, high))
    else:
        start, end = plan.years
        start = low if start is None else (start if low is None else max(start, low))
        end = high if end is None else (end if high is None else min(end, high))
        plan.years = (start, end)
    constraints.append(Constraint(kind="years", mode="none" if mention.mode == "none"
                                  else "range", asked=mention.asked, origin=mention.origin,
                                  entities=[_years_text((low, high))]))


def _reference(mention: Mention, last: Sequence[str], signals: dict[str, str]) -> Constraint:
    """"not that one" -> the last answer's item, as feedback."""
    if not last:
        raise InvalidRequest(f"{mention.asked!r} refers to an earlier answer, but this "
                             "request has no session with one: pass the session_id, or "
                             "the item id as feedback")
    position = mention.ordinal - 1 if mention.ordinal > 0 else len(last) + mention.ordinal
    if not 0 <= position < len(last):
        raise InvalidRequest(f"{mention.asked!r}: the last answer had {len(last)} items")
    item = last[position]
    signals[item] = "more_like" if mention.mode == "prefer" else "not_interested"
    return Constraint(kind="items", mode="prefer" if mention.mode == "prefer" else "none",
                      asked=mention.asked, entities=[item], origin="session")


def _constraint(kind: str, mode: str, asked: str, ids: Iterable[str], names: NameIndex,
                origin: str) -> Constraint:
    return Constraint(kind=kind, mode=mode, asked=asked,
                      entities=sorted({names.names[i] for i in ids}), origin=origin)


def _years_text(years: tuple[int | None, int | None]) -> str:
    low, high = years
    return f"{low if low is not None else '…'}-{high if high is not None else '…'}"


def _check(plan: Plan, names: NameIndex) -> None:
    """Contradictions: an entity both required and banned, an empty year range."""
    for group in plan.groups:
        if group and group <= plan.banned:
            both = ", ".join(sorted(names.names[e] for e in group))
            raise InvalidRequest(f"{both} is both asked for and excluded")
    low, high = plan.years
    if low is not None and high is not None and low > high:
        raise InvalidRequest(f"no year is both from {low} and up to {high}")
