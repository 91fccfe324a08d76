"""Evidence: which KG paths can explain a recommendation, strongest first.

In: an item's KG paths to the user's history (`Fact`s from `GraphClient.candidate_facts`),
the user's ratings of the history films, and the scorer's attention over them. Out:
`Evidence` objects, each a usable path with the numbers that ranked it
(`select_evidence`).

A path's weight is relation weight (director, writer, lead actor over camera crew and
distributors) × specificity 1/log2(1 + max(entity degree, 8)) × rating factor × the
scorer's attention on that history film. Paths through films rated 1-2 never count, and
those through 3-star films only when no 4-5 star (or liked) film offers one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from rag_rec.wording import dataset_words
from rag_rec.models import Evidence, Fact

RELATION_WEIGHT = {
    "directed_by": 1.0, "written_by": 0.9, "starring": 0.9, "subject": 0.6,
    "has_genre": 0.35, "produced_by": 0.35, "cinematography_by": 0.25,
    "distributed_by": 0.15, "released_in_decade": 0.15,
}
"""How much a shared entity says about taste, before its specificity: people who shape a
film first, technical crew and distributors last (issue 11)."""
UNLISTED_RELATION_WEIGHT = 0.2
"""A relation missing from `RELATION_WEIGHT`: below a genre, above a distributor."""
_CATEGORY_WEIGHT = [  # DBpedia categories (`subject`) by what they name
    (re.compile(r"^films directed by ", re.I), 0.95),
    (re.compile(r"^(screenplays|films written) by ", re.I), 0.85),
    (re.compile(r"^films based on ", re.I), 0.7),
    (re.compile(r"^films (set|about) ", re.I), 0.5),
    (re.compile(r"^films produced by |^film scores by ", re.I), 0.35),
    (re.compile(r"^films (shot|filmed) |imax|3d |re-release|^\d{4} films$|-language films$|"
                r"^[A-Z][a-z]+ films$"), 0.15),  # "American films": a nationality says little
    # A studio's or distributor's catalogue ("20th Century Fox films") is production
    # trivia, not taste.
    (re.compile(r"\b(fox|bros\.?|pictures|studios?|entertainment|productions|miramax|"
                r"paramount|universal|columbia|disney|metro-goldwyn-mayer|mgm|new line|"
                r"touchstone|tristar|dimension|orion|lionsgate|dreamworks|united artists)"
                r"\b.* films$", re.I), 0.15),
]
SPECIFIC_DEGREE = 8
"""Entities linked to at most this many films count as equally specific: below it, the
degree says more about DBpedia's coverage (a bit-part actor in 2 films) than about taste,
so the relation decides (the director over a supporting actor)."""


def relation_weight(fact: Fact) -> float:
    """What the path's relation says about taste; a category by what it names."""
    if fact.relation == "subject":
        for pattern, weight in _CATEGORY_WEIGHT:
            if pattern.search(fact.entity_name):
                return weight
    return RELATION_WEIGHT.get(fact.relation, UNLISTED_RELATION_WEIGHT)


def rating_factor(rating: float | None) -> float:
    """5 stars 1.0, 4 stars 0.8, 3 stars 0.3, unknown (a new user's liked film) 0.9;
    1-2 stars: never evidence (0). Another scale is read at the same places
    (`DatasetWords.stars`: 9 of 1-10 is 4.6 stars)."""
    if rating is None:
        return 0.9
    rating = dataset_words().stars(rating)
    if rating >= 5:
        return 1.0
    if rating >= 4:
        return 0.8
    return 0.3 if rating >= 3 else 0.0


def liked(rating: float | None) -> bool:
    """Rated 4-5 stars (or the same part of another scale), or liked with no rating (a
    new user's liked film)."""
    return rating is None or dataset_words().stars(rating) >= 4


def select_evidence(facts: Sequence[Fact], ratings: Mapping[str, float | None],
                    attention: Mapping[str, float] | None = None) -> list[Evidence]:
    """The usable paths, strongest first. `ratings`: the user's history (item id ->
    rating, None if unknown); `attention`: the scorer's weight on each history item for
    this candidate (None: uniform). Paths through films rated below 3 are dropped, and
    through 3-star films whenever a 4-5 star (or liked) film offers one."""
    top = max(attention.values(), default=0.0) if attention else 0.0
    # One path per (entity, history film): the heaviest of the relations joining them.
    strongest: dict[tuple[str, str], Evidence] = {}
    for fact in facts:
        rating = (ratings[fact.history_item_id] if fact.history_item_id in ratings
                  else fact.history_rating)
        factor = rating_factor(rating)
        if factor == 0:
            continue
        share = attention.get(fact.history_item_id, 0.0) / top if top > 0 else 1.0
        specificity = 1.0 / math.log2(1 + max(fact.entity_degree or 1, SPECIFIC_DEGREE))
        # The attention decides among paths, but a history film outside the scorer's
        # window (attention 0) can still explain: it is still a film the user rated.
        weight = relation_weight(fact) * specificity * factor * (0.25 + 0.75 * share)
        key = (fact.entity_id, fact.history_item_id)
        if key not in strongest or strongest[key].weight < weight:
            strongest[key] = Evidence(fact=fact, history_rating=rating,
                                      attention=round(share, 4),
                                      specificity=round(specificity, 4),
                                      weight=round(weight, 5))
    ranked = sorted(strongest.values(), key=lambda path: (-path.weight, path.fact.id))
    if any(liked(path.history_rating) for path in ranked):
        ranked = [path for path in ranked if liked(path.history_rating)]
    return ranked
