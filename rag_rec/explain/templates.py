"""Templates: sentences rendered by code from the evidence, the floor under the LLM.

In: the recommended `Item`, its ranked `Evidence` (`select_evidence`) and the user's rated
history. Out: up to `MAX_OPTIONS` `Option`s (`template_options`), each a sentence with
the one or two paths it states, every one passed by the claim checker; the first is the
template shipped when the LLM is not used, and they are what the LLM chooses among in
`choose` mode. One path reads "Directed by Ridley Scott, like Blade Runner, which you
rated 5 stars."; two paths can share a sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rag_rec.explain.claims import check_claims
from rag_rec.explain.phrasing import (
    PARTICIPLES,
    attribute,
    capitalised,
    display_entity,
    display_title,
    rated,
    stars,
    via,
)
from rag_rec.models import Evidence, Fact, Item
from rag_rec.wording import dataset_words

MAX_OPTIONS = 4
"""Sentences offered to the LLM in `choose` mode (labels A..D)."""
BROAD_DEGREE = 50
"""An entity linked to more films (a genre, a decade, "American films") is never the
second half of a two-path sentence: it would dilute the first."""
NO_EVIDENCE = ("Picked for its similarity to the films you rated and its popularity; the "
               "knowledge graph links it to none of the films you rated well.")
NO_EVIDENCE_LIKED = ("Picked for its similarity to the films you liked and its popularity; "
                     "the knowledge graph links it to none of them.")
NO_EVIDENCE_NO_HISTORY = ("Picked from what you asked for, by how well the words match it "
                          "and how often it is watched; there is no film of yours to link "
                          "it to yet.")


def no_evidence(history: Sequence[tuple[Item, float | None]],
                description: str | None = None) -> str:
    """The sentence when no path explains an item: it never says "rated" to someone who
    rated nothing (liked is not five stars), nor "similar" with no film to compare. With
    the item's own `description` (`phrasing.describe_item`) it leads, so no two items of
    a list get the same sentence."""
    if not history:
        why = NO_EVIDENCE_NO_HISTORY
    elif all(rating is None for _, rating in history):
        why = NO_EVIDENCE_LIKED
    else:
        why = NO_EVIDENCE
    words = dataset_words()
    if words.noun != "film":  # another catalogue's noun, and what its users did
        why = (why.replace("films", f"{words.noun}s").replace("film", words.noun)
               .replace("is watched", "is chosen"))
    if words.unrated != "liked":
        why = why.replace("you liked", f"you {words.unrated}")
    return f"{description}: {why[0].lower()}{why[1:]}" if description else why


@dataclass(frozen=True)
class Option:
    """A sentence rendered by code from `evidence` (1 or 2 paths), checked before use."""

    text: str
    evidence: tuple[Evidence, ...]


def _one(path: Evidence) -> str:
    return f"{capitalised(attribute(path.fact))}, {via(path.fact)}, {rated(path.history_rating)}."


def _history_first(path: Evidence) -> str | None:
    """The history film first: "You rated Alien 5 stars; this one is also directed by
    Ridley Scott." (only when the entity plays the same part in both films)."""
    if path.fact.relation != path.fact.history_relation:
        return None
    title = display_title(path.fact.history_title)
    opener = (f"You {dataset_words().unrated} {title}" if path.history_rating is None
              else f"You rated {title} {path.history_rating:g} stars")
    phrase = attribute(path.fact)
    if phrase.startswith("starring "):
        return f"{opener}; this one also stars {phrase.removeprefix('starring ')}."
    if phrase.startswith("with a score by "):
        return f"{opener}; this one also has a score by {phrase.removeprefix('with a score by ')}."
    return f"{opener}; this one is also {phrase}."


def _pair(first: Evidence, second: Evidence) -> str | None:
    """Two paths in one sentence; None when they read better apart."""
    fact1, fact2 = first.fact, second.fact
    if fact1.history_item_id == fact2.history_item_id:
        if via(fact1) != via(fact2) or not all(attribute(fact).startswith(PARTICIPLES)
                                               for fact in (fact1, fact2)):
            return None  # one film twice, in two shapes: the single sentences read better
        return (f"{capitalised(attribute(fact1))} and {attribute(fact2)}, {via(fact1)}, "
                f"{rated(first.history_rating)}.")
    if fact1.entity_id == fact2.entity_id and fact1.relation == fact2.relation and \
            fact1.history_relation == fact2.history_relation == fact1.relation:
        title1, title2 = display_title(fact1.history_title), display_title(fact2.history_title)
        if first.history_rating is not None and first.history_rating == second.history_rating:
            return (f"{capitalised(attribute(fact1))}, like {title1} and {title2}, both of which "
                    f"you rated {first.history_rating:g} stars.")
        return (f"{capitalised(attribute(fact1))}, like {title1} ({stars(first.history_rating)}) "
                f"and {title2} ({stars(second.history_rating)}).")
    return (f"{capitalised(attribute(fact1))}, {via(fact1)} ({stars(first.history_rating)}), "
            f"and {attribute(fact2)}, {via(fact2)} ({stars(second.history_rating)}).")


def _overlaps(fact1: Fact, fact2: Fact) -> bool:
    """Two paths that say the same thing (a director and "Films directed by" them)."""
    name1 = display_entity(fact1.entity_name).lower()
    name2 = display_entity(fact2.entity_name).lower()
    return name1 in name2 or name2 in name1


def template_options(item: Item, evidence: Sequence[Evidence],
                     history: Sequence[tuple[Item, float | None]] = (),
                     description: str | None = None) -> list[Option]:
    """Up to `MAX_OPTIONS` checked sentences, the default (the template) first: the two
    strongest paths on different entities when the second is at least half as strong,
    else the strongest alone; then other phrasings and paths for the LLM to choose from."""
    if not evidence:
        return [Option(no_evidence(history, description), ())]
    best = evidence[0]
    # `other`: the strongest path about something else; `same`: the best path's entity
    # again, through another history film ("like Alien and Blade Runner").
    other = next((path for path in evidence[1:] if not _overlaps(path.fact, best.fact)), None)
    same = next((path for path in evidence[1:] if path.fact.entity_id == best.fact.entity_id
                 and path.fact.history_item_id != best.fact.history_item_id), None)
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
        if text and text not in {option.text for option in options} and \
                not check_claims(text, item, [path.fact for path in used], history):
            options.append(Option(text, used))
    return options[:MAX_OPTIONS] or [Option(no_evidence(history, description), ())]
