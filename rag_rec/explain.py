"""Explanations a user can trust: evidence, templates, a claim checker, and the LLM on top.

Inputs (per request): the user, their rated history [(item, rating)], the recommended
items, each item's KG paths to the history (`GraphClient.candidate_facts`) and, per item,
the scorer's attention over the history. Output: one `Explanation` per item.

1. **Evidence** (`select_evidence`): paths through history items rated 3 or more (never a
   film rated 1-2), those through 4-5 star items only when there are any, ranked by
   relation weight (director, writer, lead actor over camera crew and distributors) ×
   specificity 1/log2(1 + max(entity degree, 8)) × rating × the scorer's attention on that
   history item.
2. **Templates** (`template_options`): one phrasing per relation, up to two paths in one
   sentence ("Directed by Ridley Scott, like Blade Runner, which you rated 5 stars.").
   They are the floor: every text rag_rec ships can be one of them.
3. **Claim checker** (`check_claims`): every title, person, category, genre, decade,
   year, star rating and relation word in a text must be backed by a cited fact (same
   entity, same relation) or be one of the user's own rated films; any other proper
   name, a relation the facts do not state, or looping/field-list text rejects it.
4. **LLM** (`explain_many`): in `choose` mode (the default, for the small model) the LLM
   picks one of a few checked sentences through a one-token `choice` (structured
   output): it cannot add a word. In `free` mode (a larger model) it writes JSON text
   citing evidence labels; the text must pass the claim checker, else one sampled
   retry, else the template. LLM down, slow or junk: the template, flagged in `note`.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from pydantic import Field, ValidationError, create_model

from rag_rec.llm import LLMBackend, render
from rag_rec.models import Evidence, Explanation, Fact, Item, User
from rag_rec.rerank import LABELS, TITLE_CHARS
from rag_rec.settings import LLMSettings

Mode = Literal["choose", "free"]
MAX_OPTIONS = 4
"""Sentences offered to the LLM in `choose` mode (labels A..D)."""
FREE_EVIDENCE = 5
"""Evidence paths offered to the LLM in `free` mode."""
RETRY_TEMPERATURE = 0.7

# --------------------------------------------------------------------------- names

_ARTICLES = ("The", "A", "An", "Les", "La", "Le", "Il", "Das", "Der", "Die", "El")
_TRAILING_PAREN = re.compile(r"\s*\([^()]*\)\s*$")


def display_title(title: str) -> str:
    """MovieLens title as people write it: "Usual Suspects, The" -> "The Usual Suspects",
    "Seven (Se7en)" -> "Seven"."""
    name = title.strip()
    while _TRAILING_PAREN.search(name) and _TRAILING_PAREN.sub("", name):
        name = _TRAILING_PAREN.sub("", name)
    head, sep, article = name.rpartition(", ")
    if sep and article in _ARTICLES:
        name = f"{article} {head}"
    elif sep and article == "L'":
        name = f"L'{head}"
    return name


def display_entity(name: str) -> str:
    """DBpedia name without its disambiguation: "David Warner (actor)" -> "David Warner"."""
    return _TRAILING_PAREN.sub("", name).strip() or name


GENRE_WORDS = {
    "Action": ("action",), "Adventure": ("adventure",),
    "Animation": ("animation", "animated"), "Children's": ("children's",),
    "Comedy": ("comedy", "comedies"), "Crime": ("crime",), "Documentary": ("documentary",),
    "Drama": ("drama", "dramas"), "Fantasy": ("fantasy",),
    "Film-Noir": ("film noir", "film-noir"), "Horror": ("horror",),
    "Musical": ("musical", "musicals"), "Mystery": ("mystery",),
    "Romance": ("romance", "romantic"), "Sci-Fi": ("science-fiction", "science fiction", "sci-fi"),
    "Thriller": ("thriller", "thrillers"), "War": ("war",), "Western": ("western", "westerns"),
}
_GENRE_PHRASE = {"Action": "an action film", "Adventure": "an adventure film",
                 "Animation": "an animated film", "Children's": "a children's film",
                 "Documentary": "a documentary", "Film-Noir": "a film noir",
                 "Sci-Fi": "a science-fiction film", "Thriller": "a thriller",
                 "Western": "a western", "Musical": "a musical"}

# --------------------------------------------------------------------------- phrasing

_ATTRIBUTE = {  # the candidate's side of a path, as a phrase about the candidate
    "directed_by": "directed by {e}", "starring": "starring {e}",
    "written_by": "written by {e}", "produced_by": "produced by {e}",
    "cinematography_by": "shot by cinematographer {e}",
    "distributed_by": "distributed by {e}", "released_in_decade": "from the {e}",
}
_HISTORY_VERB = {  # what the entity did for the history film
    "directed_by": "directed", "starring": "starred in", "written_by": "wrote",
    "produced_by": "produced", "cinematography_by": "shot",
    "distributed_by": "distributed",
}
_PLAIN_VERB = {  # the candidate's side, as a verb phrase for plain-words facts
    "directed_by": "is directed by", "starring": "stars", "written_by": "is written by",
    "produced_by": "is produced by", "cinematography_by": "is shot by cinematographer",
    "distributed_by": "is distributed by",
}


def attribute(fact: Fact) -> str:
    """The candidate's side of the path as a lower-case phrase: "directed by Ridley
    Scott", "a science-fiction film", "one of the 1990s crime films"."""
    name = display_entity(fact.entity_name)
    if fact.relation == "has_genre":
        return _GENRE_PHRASE.get(fact.entity_name, f"a {fact.entity_name.lower()} film")
    if fact.relation == "subject":
        if (person := _CATEGORY_PERSON.match(name)) is not None:
            return f"{_CATEGORY_PHRASE[person.group(1).lower()]} {person.group(2)}"
        first = name.split()[0]
        if first.lower() in _COMMON_FIRST:  # "Time travel films" -> "time travel films"
            name = first.lower() + name[len(first):]
        if re.search(r"\bfilms\b", name) and not name.endswith(" in films"):
            return f"one of the {name}"
        return f"listed under “{name}”"
    return _ATTRIBUTE.get(fact.relation, "linked to {e}").format(e=name)


_CATEGORY_PERSON = re.compile(
    r"^(Films directed by|Screenplays by|Films written by|Films produced by|Film scores by) "
    r"(.+)$", re.I)
"""Categories that name a person's part in the film: phrased (and checked) as that part."""
_CATEGORY_PHRASE = {"films directed by": "directed by", "screenplays by": "written by",
                    "films written by": "written by", "films produced by": "produced by",
                    "film scores by": "with a score by"}
_COMMON_FIRST = set("""films film time romantic epic teen buddy space science disaster
musical comedy crime drama war western horror mystery action adventure animated fantasy
christmas sports biographical historical political coming-of-age heist road monster vampire
spy satirical independent erotic psychological supernatural children's martial legal
medical prison courtroom slasher parody mockumentary musical""".split())
_PARTICIPLES = ("directed by", "written by", "starring", "produced by", "shot by",
                "distributed by", "from the", "with a score by")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _rated(rating: float | None) -> str:
    if rating is None:
        return "which you liked"
    return f"which you rated {rating:g} stars"


def _stars(rating: float | None) -> str:
    return "you liked it" if rating is None else f"{rating:g} stars"


def _via(fact: Fact) -> str:
    """How the entity reaches the history film: "like Blade Runner" when it plays the same
    part there, else "who directed Blade Runner"."""
    title = display_title(fact.history_title)
    if fact.relation == fact.history_relation or fact.history_relation not in _HISTORY_VERB:
        return f"like {title}"
    who = "which" if fact.history_relation == "distributed_by" else "who"
    return f"{who} {_HISTORY_VERB[fact.history_relation]} {title}"


def fact_in_words(fact: Fact) -> str:
    """A path in plain words, e.g. "Rob Roy stars Liam Neeson, who also starred in
    Schindler's List." (used by `Fact.plain`)."""
    cand, hist = display_title(fact.candidate_title), display_title(fact.history_title)
    name = display_entity(fact.entity_name)
    if fact.relation in _PLAIN_VERB and fact.history_relation in _HISTORY_VERB:
        who = "which" if fact.history_relation == "distributed_by" else "who"
        return (f"{cand} {_PLAIN_VERB[fact.relation]} {name}, {who} also "
                f"{_HISTORY_VERB[fact.history_relation]} {hist}.")
    if fact.relation == "has_genre":
        return f"{cand} and {hist} are both {fact.entity_name} films."
    if fact.relation == "released_in_decade":
        return f"{cand} and {hist} are both from the {name}."
    if fact.relation == "subject":
        return f"{cand} and {hist} are both in the category “{name}”."
    return f"{cand} and {hist} share {name} ({fact.relation.replace('_', ' ')})."


def evidence_in_words(ev: Evidence) -> str:
    """`fact_in_words` plus the user's rating of the history film (`Evidence.plain`)."""
    hist = display_title(ev.fact.history_title)
    rating = ("you liked it" if ev.history_rating is None
              else f"you rated it {ev.history_rating:g} stars")
    return f"{fact_in_words(ev.fact)} ({hist}: {rating}.)"


# --------------------------------------------------------------------------- evidence

RELATION_WEIGHT = {
    "directed_by": 1.0, "written_by": 0.9, "starring": 0.9, "subject": 0.6,
    "has_genre": 0.35, "produced_by": 0.35, "cinematography_by": 0.25,
    "distributed_by": 0.15, "released_in_decade": 0.15,
}
"""How much a shared entity says about taste, before its specificity: people who shape a
film first, technical crew and distributors last (issue 11)."""
_CATEGORY_WEIGHT = [  # DBpedia categories (`subject`) by what they name
    (re.compile(r"^films directed by ", re.I), 0.95),
    (re.compile(r"^(screenplays|films written) by ", re.I), 0.85),
    (re.compile(r"^films based on ", re.I), 0.7),
    (re.compile(r"^films (set|about) ", re.I), 0.5),
    (re.compile(r"^films produced by |^film scores by ", re.I), 0.35),
    (re.compile(r"^films (shot|filmed) |imax|3d |re-release|^\d{4} films$|-language films$|"
                r"^[A-Z][a-z]+ films$"), 0.15),  # "American films": a nationality says little
]
_CATEGORY_RELATION = [(re.compile(r"\bdirected by ", re.I), "directed_by"),
                      (re.compile(r"\b(screenplays|written) by ", re.I), "written_by"),
                      (re.compile(r"\bproduced by ", re.I), "produced_by")]


BROAD_DEGREE = 50
"""An entity linked to more films (a genre, a decade, "American films") is never the
second half of a two-path sentence: it would dilute the first."""
SPECIFIC_DEGREE = 8
"""Entities linked to at most this many films count as equally specific: below it, the
degree says more about DBpedia's coverage (a bit-part actor in 2 films) than about taste,
so the relation decides (the director over a supporting actor)."""


def relation_weight(fact: Fact) -> float:
    if fact.relation == "subject":
        for pattern, weight in _CATEGORY_WEIGHT:
            if pattern.search(fact.entity_name):
                return weight
    return RELATION_WEIGHT.get(fact.relation, 0.2)


def rating_factor(rating: float | None) -> float:
    """5 stars 1.0, 4 stars 0.8, 3 stars 0.3, unknown (a new user's liked film) 0.9;
    1-2 stars: never evidence (0)."""
    if rating is None:
        return 0.9
    if rating >= 5:
        return 1.0
    if rating >= 4:
        return 0.8
    return 0.3 if rating >= 3 else 0.0


def liked(rating: float | None) -> bool:
    return rating is None or rating >= 4


def select_evidence(facts: Sequence[Fact], ratings: Mapping[str, float | None],
                    attention: Mapping[str, float] | None = None) -> list[Evidence]:
    """The usable paths, strongest first. `ratings`: the user's history (item id ->
    rating, None if unknown); `attention`: the scorer's weight on each history item for
    this candidate (None: uniform). Paths through films rated below 3 are dropped, and
    through 3-star films whenever a 4-5 star (or liked) film offers one."""
    top = max(attention.values(), default=0.0) if attention else 0.0
    out: dict[tuple[str, str], Evidence] = {}
    for f in facts:
        rating = ratings[f.history_item_id] if f.history_item_id in ratings else f.history_rating
        factor = rating_factor(rating)
        if factor == 0:
            continue
        att = attention.get(f.history_item_id, 0.0) / top if top > 0 else 1.0
        specificity = 1.0 / math.log2(1 + max(f.entity_degree or 1, SPECIFIC_DEGREE))
        # The attention decides among paths, but a history film outside the scorer's
        # window (attention 0) can still explain: it is still a film the user rated.
        weight = relation_weight(f) * specificity * factor * (0.25 + 0.75 * att)
        key = (f.entity_id, f.history_item_id)
        if key not in out or out[key].weight < weight:
            out[key] = Evidence(fact=f, history_rating=rating, attention=round(att, 4),
                                specificity=round(specificity, 4), weight=round(weight, 5))
    ranked = sorted(out.values(), key=lambda e: (-e.weight, e.fact.id))
    if any(liked(e.history_rating) for e in ranked):
        ranked = [e for e in ranked if liked(e.history_rating)]
    return ranked


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class Option:
    """A sentence rendered by code from `evidence` (1 or 2 paths), checked before use."""

    text: str
    evidence: tuple[Evidence, ...]


def _one(e: Evidence) -> str:
    return f"{_cap(attribute(e.fact))}, {_via(e.fact)}, {_rated(e.history_rating)}."


def _history_first(e: Evidence) -> str | None:
    if e.fact.relation != e.fact.history_relation:
        return None
    title = display_title(e.fact.history_title)
    opener = (f"You liked {title}" if e.history_rating is None
              else f"You rated {title} {e.history_rating:g} stars")
    phrase = attribute(e.fact)
    if phrase.startswith("starring "):
        return f"{opener}; this one also stars {phrase.removeprefix('starring ')}."
    if phrase.startswith("with a score by "):
        return f"{opener}; this one also has a score by {phrase.removeprefix('with a score by ')}."
    return f"{opener}; this one is also {phrase}."


def _pair(a: Evidence, b: Evidence) -> str | None:
    fa, fb = a.fact, b.fact
    if fa.history_item_id == fb.history_item_id:
        if _via(fa) != _via(fb) or not all(attribute(f).startswith(_PARTICIPLES)
                                           for f in (fa, fb)):
            return None  # one film twice, in two shapes: the single sentences read better
        return f"{_cap(attribute(fa))} and {attribute(fb)}, {_via(fa)}, {_rated(a.history_rating)}."
    if fa.entity_id == fb.entity_id and fa.relation == fb.relation and \
            fa.history_relation == fb.history_relation == fa.relation:
        ta, tb = display_title(fa.history_title), display_title(fb.history_title)
        if a.history_rating is not None and a.history_rating == b.history_rating:
            return (f"{_cap(attribute(fa))}, like {ta} and {tb}, both of which you rated "
                    f"{a.history_rating:g} stars.")
        return (f"{_cap(attribute(fa))}, like {ta} ({_stars(a.history_rating)}) and {tb} "
                f"({_stars(b.history_rating)}).")
    return (f"{_cap(attribute(fa))}, {_via(fa)} ({_stars(a.history_rating)}), and "
            f"{attribute(fb)}, {_via(fb)} ({_stars(b.history_rating)}).")


def _overlaps(a: Fact, b: Fact) -> bool:
    """Two paths that say the same thing (a director and "Films directed by" them)."""
    na, nb = display_entity(a.entity_name).lower(), display_entity(b.entity_name).lower()
    return na in nb or nb in na


NO_EVIDENCE = ("Picked for its similarity to the films you rated and its popularity; the "
               "knowledge graph links it to none of the films you rated well.")


def template_options(item: Item, evidence: Sequence[Evidence],
                     history: Sequence[tuple[Item, float | None]] = ()) -> list[Option]:
    """Up to `MAX_OPTIONS` checked sentences, the default (the template) first: the two
    strongest paths on different entities when the second is at least half as strong,
    else the strongest alone; then other phrasings and paths for the LLM to choose from."""
    if not evidence:
        return [Option(NO_EVIDENCE, ())]
    best = evidence[0]
    other = next((e for e in evidence[1:] if not _overlaps(e.fact, best.fact)), None)
    same = next((e for e in evidence[1:] if e.fact.entity_id == best.fact.entity_id
                 and e.fact.history_item_id != best.fact.history_item_id), None)
    drafts: list[tuple[str | None, tuple[Evidence, ...]]] = []
    if other is not None and other.weight >= 0.5 * best.weight and \
            (other.fact.entity_degree or 0) <= BROAD_DEGREE:
        drafts.append((_pair(best, other), (best, other)))
    drafts += [(_one(best), (best,)), (_history_first(best), (best,))]
    if same is not None:
        drafts.append((_pair(best, same), (best, same)))
    if other is not None:
        drafts += [(_one(other), (other,)), (_pair(best, other), (best, other))]
    options: list[Option] = []
    for text, used in drafts:
        if text and text not in {o.text for o in options} and \
                not check_claims(text, item, [e.fact for e in used], history):
            options.append(Option(text, used))
    return options[:MAX_OPTIONS] or [Option(NO_EVIDENCE, ())]


# --------------------------------------------------------------------------- claim checker

_PERSON_RELATIONS = {"directed_by", "starring", "written_by", "produced_by",
                     "cinematography_by", "distributed_by"}
_CUES = [  # relation words -> the relations they state
    (r"direct\w*|helm\w*|filmmaker\w*", {"directed_by"}),
    (r"star|stars|starr\w*|actor\w*|actress\w*|acts|acting|cast|casts|played|plays|"
     r"role\w*|performance\w*", {"starring"}),
    (r"writ\w*|wrote|screenplay\w*|script\w*|penned", {"written_by"}),
    (r"produc\w*", {"produced_by", "distributed_by"}),
    (r"cinematograph\w*|camera\w*|photograph\w*|shot|shoots", {"cinematography_by"}),
    (r"distribut\w*|studio\w*", {"distributed_by"}),
]
_CUE_RE = re.compile(r"\b(" + "|".join(c for c, _ in _CUES) + r")\b", re.I)
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
    return frozenset({title, display_title(title), _TRAILING_PAREN.sub("", title)} - {""})


def _find_spans(text: str, names: list[tuple[str, str, str]]) -> list[_Span]:
    """Non-overlapping occurrences of known names (longest first), case-insensitive."""
    taken = [False] * len(text)
    spans = []
    lowered = text.lower()
    present = [n for n in set(names) if n[0].lower() in lowered]  # cheap filter first
    for alias, kind, key in sorted(present, key=lambda n: (-len(n[0]), n)):
        pattern = re.compile(r"(?<![\w])" + re.escape(alias) + r"(?:['’]s)?(?![\w])", re.I)
        for m in pattern.finditer(text):
            if not any(taken[m.start():m.end()]):
                taken[m.start():m.end()] = [True] * (m.end() - m.start())
                spans.append(_Span(m.start(), m.end(), kind, key))
    return sorted(spans, key=lambda s: s.start)


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
    ratings = {h.id: r for h, r in history}
    years = {h.id: h.year for h, _ in history} | {item.id: item.year}
    names: list[tuple[str, str, str]] = [(a, "title", item.id)
                                         for a in _title_aliases(item.title)]
    for h, _ in history:
        names += [(a, "title", h.id) for a in _title_aliases(h.title)]
    supported: dict[str, set[str]] = {}
    for f in cited:
        names += [(a, "title", f.history_item_id) for a in _title_aliases(f.history_title)]
        ratings.setdefault(f.history_item_id, f.history_rating)
        rels = supported.setdefault(f.entity_id, set())
        if f.relation == "subject":
            rels |= {rel for pattern, rel in _CATEGORY_RELATION if pattern.search(f.entity_name)}
        else:
            rels |= {f.relation, f.history_relation} & _PERSON_RELATIONS
        shown = display_entity(f.entity_name)
        names += [(f.entity_name, "entity", f.entity_id), (shown, "entity", f.entity_id)]
        if f.relation == "subject" and (person := _CATEGORY_PERSON.match(shown)):
            names.append((person.group(2), "entity", f.entity_id))
        if f.relation in _PERSON_RELATIONS and f.entity_kind != "category":
            surname = shown.split()[-1]
            if len(surname) > 3 and len(shown.split()) > 1:
                names.append((surname, "entity", f.entity_id))
    genres = {f.entity_name for f in cited if f.relation == "has_genre"} | set(item.genres)
    for genre, words in GENRE_WORDS.items():
        names += [(w, "genre", genre) for w in words]
    spans = _find_spans(text, [n for n in names if n[0].strip()])

    masked = list(text)
    for s in spans:
        masked[s.start:s.end] = "_" * (s.end - s.start)
    masked_text = "".join(masked)
    problems += _shape(masked_text)
    decade = f"{item.year // 10 * 10}s" if item.year else None
    cited_decades = {f.entity_name for f in cited if f.relation == "released_in_decade"}

    for s in spans:
        if s.kind == "genre" and s.key not in genres:
            problems.append(f"genre “{text[s.start:s.end]}” is not the film's")
        if s.kind == "title" and s.key != item.id and (ratings.get(s.key) or 5) < 3:
            problems.append(f"names {text[s.start:s.end]}, which the user rated "
                            f"{ratings[s.key]:g} stars")
    titles = [s for s in spans if s.kind == "title"]
    for m in re.finditer(r"\d+(?:\.\d+)?s?", masked_text):
        token, before = m.group(), masked_text[:m.start()]
        after = masked_text[m.end():m.end() + 8].lower()
        if re.match(r"\s*(?:-\s*)?stars?\b", after) or re.search(r"rated\s*$", before):
            prior = [s for s in titles if s.end <= m.start()]
            if not prior:
                problems.append(f"rating {token} names no film")
            elif prior[-1].key == item.id or ratings.get(prior[-1].key) != float(token):
                problems.append(f"rating {token} is not the user's rating of "
                                f"{text[prior[-1].start:prior[-1].end]}")
        elif re.fullmatch(r"\d{4}s", token):
            if token not in cited_decades and token != decade:
                problems.append(f"decade {token} is not supported")
        elif re.fullmatch(r"\d{4}", token):
            mentioned = {years.get(s.key) for s in titles}
            if int(token) not in mentioned:
                problems.append(f"year {token} is not supported")
        else:
            problems.append(f"unsupported number {token}")
    for m in re.finditer(r"[^\W\d_][\w'’.-]*", masked_text):
        word = m.group().rstrip(".")
        if word[:1].isupper() and word.lower().rstrip("'’s") not in _ALLOWED \
                and word.lower() not in _ALLOWED:
            problems.append(f"unsupported name “{word}”")
    entities = [s for s in spans if s.kind == "entity"]
    for m in _CUE_RE.finditer(masked_text):
        if re.match(r"\d", masked_text[max(0, m.start() - 3):m.start()].strip()[-1:] or "x"):
            continue  # "5 stars" is a rating, checked above
        relations = next(r for c, r in _CUES if re.fullmatch(c, m.group(), re.I))
        sentence = _sentence_bounds(masked_text, m.start())
        near = [s for s in entities if sentence[0] <= s.start < sentence[1]]
        after = [s for s in near if s.start > m.start()]
        before = [s for s in near if s.end <= m.start()]
        target = after[0] if after else (before[-1] if before else None)
        if target is None:
            problems.append(f"“{m.group()}” is said of no cited person")
        elif not relations & supported.get(target.key, set()):
            problems.append(f"“{m.group()}” is not what {text[target.start:target.end]} "
                            "did according to the cited facts")
    # A film named beside a person or category is said to share it: that pair must be a
    # cited fact ("Randle, who also starred in The American President" needs that path).
    linkable = [s for s in spans if s.kind in ("entity", "genre")]
    for t in titles:
        if t.key == item.id:
            continue
        bounds = _sentence_bounds(masked_text, t.start, stops=".!?")
        near = [s for s in linkable if bounds[0] <= s.start < bounds[1]]
        before = [s for s in near if s.end <= t.start]
        after = [s for s in near if s.start >= t.end]
        link = before[-1] if before else (after[0] if after else None)
        if link is not None and not any(
                f.history_item_id == t.key and (f.entity_id == link.key if link.kind == "entity"
                                                else f.entity_name == link.key)
                for f in cited):
            problems.append(f"no cited fact links {text[link.start:link.end]} to "
                            f"{text[t.start:t.end]}")
    keys = {s.key for s in spans}
    if cited and not keys & ({f.entity_id for f in cited} | {f.history_item_id for f in cited}):
        problems.append("names none of the cited facts' entities or films")
    return list(dict.fromkeys(problems))


def _sentence_bounds(text: str, pos: int, stops: str = ".!?;") -> tuple[int, int]:
    starts = [m.end() for m in re.finditer(rf"[{stops}]\s", text[:pos])]
    end = re.search(rf"[{stops}](\s|$)", text[pos:])
    return (starts[-1] if starts else 0, pos + end.start() if end else len(text))


# --------------------------------------------------------------------------- the LLM


def _template(options: list[Option], *, note: str | None, mode: Mode | None = None,
              rejected: tuple[str, ...] = ()) -> Explanation:
    return _shipped(options[0], "template", note=note, mode=mode, rejected=rejected)


def _shipped(option: Option, source: Literal["llm", "llm_retry", "template"], **kw) -> Explanation:
    return Explanation(text=option.text, fact_ids=tuple(e.fact.id for e in option.evidence),
                       evidence=option.evidence, source=source, **kw)


def _item_json(item: Item) -> dict:
    return {"title": display_title(item.title)[:TITLE_CHARS], "year": item.year,
            "genres": list(item.genres)}


def _unavailable(exc: Exception) -> str:
    """The note of a template shipped because the LLM failed (down, slow or junk)."""
    return ("LLM unavailable: timeout" if isinstance(exc, TimeoutError)
            else f"LLM unavailable: {exc}"[:300])


async def _choose(backend: LLMBackend, settings: LLMSettings, user: User, item: Item,
                  options: list[Option]) -> Explanation:
    """The LLM picks one checked sentence: one token, restricted to the option labels."""
    labels = LABELS[:len(options)]
    messages = render("explain", mode="choose", user=user, item=_item_json(item),
                      options=[{"label": lb, "text": o.text} for lb, o in zip(labels, options)],
                      labels=labels)
    try:
        logprobs = await asyncio.wait_for(backend.choice_logprobs(messages, labels),
                                          timeout=settings.request_timeout_s)
        pick = max(labels, key=lambda lb: logprobs[lb])
        if not all(math.isfinite(logprobs[lb]) for lb in labels):
            raise ValueError("non-finite log-probabilities")
    except Exception as exc:  # noqa: BLE001 - down or junk: the template, never an error
        return _template(options, note=_unavailable(exc), mode="choose")
    return _shipped(options[labels.index(pick)], "llm", mode="choose")


async def _free(backend: LLMBackend, settings: LLMSettings, user: User, item: Item,
                evidence: list[Evidence], options: list[Option],
                history: Sequence[tuple[Item, float | None]]) -> Explanation:
    """The LLM writes the text and cites evidence labels; the claim checker decides."""
    offered = evidence[:FREE_EVIDENCE]
    labels = [f"E{i + 1}" for i in range(len(offered))]
    lo, hi = settings.explanation_chars
    reply_model = create_model(
        "ExplanationReply",
        evidence=(list[Literal[tuple(labels)]], Field(min_length=1, max_length=2)),  # type: ignore[valid-type]
        text=(str, Field(min_length=lo, max_length=hi)))
    messages = render("explain", mode="free", user=user, item=_item_json(item),
                      evidence=[{"label": lb, "fact": e.plain} for lb, e in zip(labels, offered)])
    rejected: list[str] = []
    for attempt in range(2):
        try:
            reply = await asyncio.wait_for(
                backend.generate_json(messages, reply_model.model_json_schema(),
                                      settings.explain_max_tokens,
                                      temperature=RETRY_TEMPERATURE if attempt else 0.0),
                timeout=settings.request_timeout_s)
        except Exception as exc:  # noqa: BLE001
            return _template(options, note=_unavailable(exc), mode="free",
                             rejected=tuple(rejected))
        if reply.finish_reason == "length":
            rejected.append("reply truncated at max_tokens")
            continue
        try:
            parsed = reply_model.model_validate_json(reply.text)
        except ValidationError as exc:
            rejected.append(f"invalid reply: {exc.errors()[0]['msg']}")
            continue
        used = tuple(dict.fromkeys(offered[labels.index(lb)] for lb in parsed.evidence))
        text = " ".join(parsed.text.split())
        problems = check_claims(text, item, [e.fact for e in used], history)
        if problems:
            rejected.append("; ".join(problems))
            continue
        return _shipped(Option(text, used), "llm" if attempt == 0 else "llm_retry",
                        mode="free", rejected=tuple(rejected),
                        note=rejected[0] if rejected else None)
    return _template(options, note="the claim checker rejected the LLM's text twice",
                     mode="free", rejected=tuple(rejected))


def explain_mode(settings: LLMSettings) -> Mode:
    return settings.explain_mode


async def explain_many(backend: LLMBackend | None, settings: LLMSettings, user: User,
                       history: Sequence[tuple[Item, float | None]], items: Sequence[Item],
                       facts: Mapping[str, Sequence[Fact]],
                       attention: Mapping[str, Mapping[str, float]] | None = None, *,
                       mode: Mode | None = None) -> list[Explanation]:
    """One explanation per item in `items`, in order. `history`: the user's rated films
    (rating 1-5, None when unknown); `facts`: each item's KG paths to the history
    (`GraphClient.candidate_facts`); `attention`: item id -> {history item id: the
    scorer's attention weight for that item} (None: uniform). All LLM requests go out at
    once (vLLM batches them). Never raises for LLM trouble: the template, flagged."""
    mode = mode or explain_mode(settings)
    ratings = {h.id: r for h, r in history}
    gate = asyncio.Semaphore(settings.concurrency)

    async def one(item: Item) -> Explanation:
        evidence = select_evidence(facts.get(item.id, ()), ratings,
                                   (attention or {}).get(item.id))
        options = template_options(item, evidence, history)
        if not evidence:
            return _template(options, note="no KG path links this item to a film you rated well")
        if backend is None:
            return _template(options, note="LLM unavailable")
        async with gate:
            if mode == "free":
                return await _free(backend, settings, user, item, evidence, options, history)
            if len(options) == 1:
                return _template(options, note="only one checked sentence to choose from")
            return await _choose(backend, settings, user, item, options)

    return list(await asyncio.gather(*(one(item) for item in items)))
