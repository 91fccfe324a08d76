"""The claim checker: does a text state only what its cited facts and the user's history say?

In: a text, the recommended `Item`, the `Fact`s the text cites, and the user's rated
history. Out: the list of unsupported claims (`check_claims`), empty when the text is
clean. Every title, person, category, genre, decade, year, star rating and relation word
in the text must be backed by a cited fact (same entity, same relation) or be one of the
user's own rated films; any other proper name, a relation the facts do not state, or
looping/field-list text rejects it. Templates are checked before they are offered, and
the LLM's free text before it ships.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from rag_rec.explain.phrasing import (
    CATEGORY_PERSON,
    GENRE_WORDS,
    RELATIONS,
    TRAILING_PAREN,
    display_entity,
    display_title,
    relation_phrasing,
)
from rag_rec.models import Fact, Item

_PERSON_RELATIONS = {"directed_by", "starring", "written_by", "produced_by",
                     "cinematography_by", "distributed_by"}
_CATEGORY_RELATION = [(re.compile(r"\bdirected by ", re.I), "directed_by"),
                      (re.compile(r"\b(screenplays|written) by ", re.I), "written_by"),
                      (re.compile(r"\bproduced by ", re.I), "produced_by")]
"""A category that names a person's part: the relation it gives its person."""
_CUES = [  # relation words -> the relations they state
    (r"direct\w*|helm\w*|filmmaker\w*", {"directed_by"}),
    (r"star|stars|starr\w*|actor\w*|actress\w*|acts|acting|cast|casts|played|plays|"
     r"role\w*|performance\w*", {"starring"}),
    (r"writ\w*|wrote|screenplay\w*|script\w*|penned", {"written_by"}),
    (r"produc(?!ts?\b)\w*", {"produced_by", "distributed_by"}),  # not "product(s)"
    (r"cinematograph\w*|camera\w*|photograph\w*|shot|shoots", {"cinematography_by"}),
    (r"distribut\w*|studio\w*", {"distributed_by"}),
]
_CUE_RE = re.compile(r"\b(" + "|".join(cue for cue, _ in _CUES) + r")\b", re.I)
_ALLOWED = set("""
a about after all also an and another any are as at be because been both but by can
could do does each enjoy enjoyed enjoying even every fan fans film films for from fun
given great has have here how if in into is it its just like liked likes love loved
many more most movie movies much new no not now of on one only or other our picked
plus rated rating recommended same see seen should similar since so some such than
that the their them then there these they this those through to too two very was watch
watched we well were what when where which while who whom why will with would yes you
your yours listed among sounds check try directed starring written produced shot
distributed cinematographer knowledge graph popularity favourite favorite next
""".split())
"""Words a sentence may start with a capital without naming anything."""


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    kind: str  # title, entity, genre, decade
    key: str


@lru_cache(maxsize=8192)
def _title_aliases(title: str) -> frozenset[str]:
    # Cached: the checker runs for every draft sentence of every item over the whole
    # history (~35 calls a request), and these regexes dominated its time.
    return frozenset({title, display_title(title), TRAILING_PAREN.sub("", title)} - {""})


def _find_spans(text: str, names: list[tuple[str, str, str]]) -> list[_Span]:
    """Non-overlapping occurrences of known names (longest first), case-insensitive."""
    taken = [False] * len(text)
    spans = []
    lowered = text.lower()
    present = [name for name in set(names) if name[0].lower() in lowered]  # cheap filter first
    for alias, kind, key in sorted(present, key=lambda name: (-len(name[0]), name)):
        pattern = re.compile(r"(?<![\w])" + re.escape(alias) + r"(?:['’]s)?(?![\w])", re.I)
        for m in pattern.finditer(text):
            if not any(taken[m.start():m.end()]):
                taken[m.start():m.end()] = [True] * (m.end() - m.start())
                spans.append(_Span(m.start(), m.end(), kind, key))
    return sorted(spans, key=lambda span: span.start)


def _repetition(text: str) -> str | None:
    words = re.findall(r"[\w'’-]+", text.lower())
    grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
    seen: set[tuple[str, ...]] = set()
    for gram in grams:
        if gram in seen:
            return f"repeated text: “{' '.join(gram)}”"
        seen.add(gram)
    if len(words) >= 12 and len(set(words)) < 0.5 * len(words):
        return "repetitive text"
    return None


def _shape(masked: str) -> list[str]:
    """Not a sentence: "Title: X, Genres: Y" field lists, "(cinematography by)" labels.
    Run on the text with known names masked (titles may hold colons)."""
    problems = []
    if len(re.findall(r"(?:^|[\s,;(])[A-Z][\w ]{0,15}:\s", masked)) >= 2:
        problems.append("a list of fields, not a sentence")
    if re.search(r"\w_by\b|has_genre|\(\s*[a-z ]*\b(by|genre|subject|decade)\s*\)", masked):
        problems.append("a raw relation label, not a sentence")
    return problems


def check_claims(text: str, item: Item, cited: Sequence[Fact],
                 history: Sequence[tuple[Item, float | None]]) -> list[str]:
    """Everything `text` states that its cited facts and the user's history do not
    support; empty when the text is clean.

    Supported: the recommended item's title and year; titles of the user's rated films
    (rated 3+; a claim about a film rated 1-2 is rejected) and their years; the names of
    the cited facts' entities (or a person's surname), each with only the relations
    those facts give it ("director" next to a cinematographer is rejected); genres and
    decades that are cited or belong to the item; a star rating only right after the
    film it belongs to. Rejected besides: any other capitalised word or number, looping
    text, and text that names none of the cited facts."""
    problems: list[str] = []
    if (rep := _repetition(text)) is not None:
        problems.append(rep)
    ratings = {past.id: rating for past, rating in history}
    years = {past.id: past.year for past, _ in history} | {item.id: item.year}
    # Known names as (alias, kind, key): key is the item id of a title, the entity id of
    # an entity, the genre's name of a genre word.
    names: list[tuple[str, str, str]] = [(alias, "title", item.id)
                                         for alias in _title_aliases(item.title)]
    for past, _ in history:
        names += [(alias, "title", past.id) for alias in _title_aliases(past.title)]
    supported: dict[str, set[str]] = {}  # entity id -> the relations cited facts give it
    for fact in cited:
        names += [(alias, "title", fact.history_item_id)
                  for alias in _title_aliases(fact.history_title)]
        ratings.setdefault(fact.history_item_id, fact.history_rating)
        given = supported.setdefault(fact.entity_id, set())
        if fact.relation == "subject":
            given |= {relation for pattern, relation in _CATEGORY_RELATION
                          if pattern.search(fact.entity_name)}
        else:
            given |= {fact.relation, fact.history_relation} & _PERSON_RELATIONS
        shown = display_entity(fact.entity_name)
        names += [(fact.entity_name, "entity", fact.entity_id), (shown, "entity", fact.entity_id)]
        if fact.relation == "subject" and (person := CATEGORY_PERSON.match(shown)):
            names.append((person.group(2), "entity", fact.entity_id))
        if fact.relation in _PERSON_RELATIONS and fact.entity_kind != "category":
            surname = shown.split()[-1]
            if len(surname) > 3 and len(shown.split()) > 1:
                names.append((surname, "entity", fact.entity_id))
    genres = {fact.entity_name for fact in cited if fact.relation == "has_genre"} | set(item.genres)
    for genre, words in GENRE_WORDS.items():
        names += [(word, "genre", genre) for word in words]
    spans = _find_spans(text, [name for name in names if name[0].strip()])

    # Known names masked, so that only what no fact or film backs is left to judge.
    masked = list(text)
    for span in spans:
        masked[span.start:span.end] = "_" * (span.end - span.start)
    masked_text = "".join(masked)
    problems += _shape(masked_text)
    decade = f"{item.year // 10 * 10}s" if item.year else None
    cited_decades = {fact.entity_name for fact in cited if fact.relation == "released_in_decade"}

    for span in spans:
        if span.kind == "genre" and span.key not in genres:
            problems.append(f"genre “{text[span.start:span.end]}” is not the film's")
        if span.kind == "title" and span.key != item.id and (ratings.get(span.key) or 5) < 3:
            problems.append(f"names {text[span.start:span.end]}, which the user rated "
                            f"{ratings[span.key]:g} stars")
    titles = [span for span in spans if span.kind == "title"]
    for m in re.finditer(r"\d+(?:\.\d+)?s?", masked_text):
        token, before = m.group(), masked_text[:m.start()]
        after = masked_text[m.end():m.end() + 8].lower()
        if re.match(r"\s*(?:-\s*)?stars?\b", after) or re.search(r"rated\s*$", before):
            prior = [span for span in titles if span.end <= m.start()]
            if not prior:
                problems.append(f"rating {token} names no film")
            elif prior[-1].key == item.id or ratings.get(prior[-1].key) != float(token):
                problems.append(f"rating {token} is not the user's rating of "
                                f"{text[prior[-1].start:prior[-1].end]}")
        elif re.fullmatch(r"\d{4}s", token):
            if token not in cited_decades and token != decade:
                problems.append(f"decade {token} is not supported")
        elif re.fullmatch(r"\d{4}", token):
            mentioned = {years.get(span.key) for span in titles}
            if int(token) not in mentioned:
                problems.append(f"year {token} is not supported")
        else:
            problems.append(f"unsupported number {token}")
    # The words of a dataset's own relation phrases ("Made by ...", from dataset.toml or
    # the relation's name) may open a sentence too; phrasing.toml's relations need none.
    allowed = _ALLOWED | {w for fact in cited if fact.relation not in RELATIONS
                          for w in re.findall(r"[a-z]+", re.sub(
                              r"\{\w+\}", "", relation_phrasing(fact.relation).attribute.lower()))}
    for m in re.finditer(r"[^\W\d_][\w'’.-]*", masked_text):
        word = m.group().rstrip(".")
        if word[:1].isupper() and word.lower().rstrip("'’s") not in allowed \
                and word.lower() not in allowed:
            problems.append(f"unsupported name “{word}”")
    entities = [span for span in spans if span.kind == "entity"]
    for m in _CUE_RE.finditer(masked_text):
        if re.match(r"\d", masked_text[max(0, m.start() - 3):m.start()].strip()[-1:] or "x"):
            continue  # "5 stars" is a rating, checked above
        relations = next(stated for cue, stated in _CUES if re.fullmatch(cue, m.group(), re.I))
        sentence = _sentence_bounds(masked_text, m.start())
        near = [span for span in entities if sentence[0] <= span.start < sentence[1]]
        after = [span for span in near if span.start > m.start()]
        before = [span for span in near if span.end <= m.start()]
        target = after[0] if after else (before[-1] if before else None)
        if target is None:
            problems.append(f"“{m.group()}” is said of no cited person")
        elif not relations & supported.get(target.key, set()):
            problems.append(f"“{m.group()}” is not what {text[target.start:target.end]} "
                            "did according to the cited facts")
    # A film named beside a person or category is said to share it: that pair must be a
    # cited fact ("Randle, who also starred in The American President" needs that path).
    linkable = [span for span in spans if span.kind in ("entity", "genre")]
    for title in titles:
        if title.key == item.id:
            continue
        bounds = _sentence_bounds(masked_text, title.start, stops=".!?")
        near = [span for span in linkable if bounds[0] <= span.start < bounds[1]]
        before = [span for span in near if span.end <= title.start]
        after = [span for span in near if span.start >= title.end]
        link = before[-1] if before else (after[0] if after else None)
        if link is not None and not any(
                fact.history_item_id == title.key
                and (fact.entity_id == link.key if link.kind == "entity"
                     else fact.entity_name == link.key)
                for fact in cited):
            problems.append(f"no cited fact links {text[link.start:link.end]} to "
                            f"{text[title.start:title.end]}")
    keys = {span.key for span in spans}
    if cited and not keys & ({fact.entity_id for fact in cited}
                             | {fact.history_item_id for fact in cited}):
        problems.append("names none of the cited facts' entities or films")
    return list(dict.fromkeys(problems))


def _sentence_bounds(text: str, pos: int, stops: str = ".!?;") -> tuple[int, int]:
    """The start and end of the sentence (or clause, with ';' among `stops`) around `pos`."""
    starts = [m.end() for m in re.finditer(rf"[{stops}]\s", text[:pos])]
    end = re.search(rf"[{stops}](\s|$)", text[pos:])
    return (starts[-1] if starts else 0, pos + end.start() if end else len(text))
