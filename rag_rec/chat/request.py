"""The request every entry point sends (`RecommendRequest`) and what comes back of it
(`Understood`): who the person is, and what they ask for this turn.

In: JSON from HTTP, MCP and LlamaIndex, or keyword arguments from Python and the CLI.
Out: a validated request. Names in it (genres, people, categories, any KG entity) are
resolved against the graph's own names by `chat.names`, free text is turned into the same
constraints by `chat.parse`, and the constraints as understood go back with every answer.

Hard constraints (`filters`) are never violated; soft ones (`prefer`, `avoid`) move scores
without excluding anything.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_K = 100
"""The most recommendations one request may ask for."""

Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=120)]
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class _Strict(BaseModel):
    # Unknown fields are refused, not dropped; ids sent as numbers (42) are taken as the
    # strings they name, as "5" is taken for k.
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class NameFilter(_Strict):
    """Names (or entity ids) an item must, or must not, be linked to in the graph."""

    any: list[Name] = Field(default_factory=list, max_length=20,
                            description="The item is linked to at least one of these.")
    all: list[Name] = Field(default_factory=list, max_length=20,
                            description="The item is linked to every one of these.")
    none: list[Name] = Field(default_factory=list, max_length=50,
                             description="The item is linked to none of these.")

    def is_empty(self) -> bool:
        return not (self.any or self.all or self.none)


class Years(_Strict):
    """Release years, both ends included; a decade is written as its years."""

    start: int | None = Field(None, ge=1800, le=2100, description="Earliest release year.")
    end: int | None = Field(None, ge=1800, le=2100, description="Latest release year.")

    @model_validator(mode="after")
    def _ordered(self) -> Years:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"years.start {self.start} is after years.end {self.end}")
        return self


class Filters(_Strict):
    """Hard constraints: no recommended item ever breaks one. Names are the graph's own
    (case, accents and small typos are forgiven; an unknown or ambiguous name is refused
    with the nearest ones)."""

    genres: NameFilter = Field(default_factory=NameFilter, description="Genres, e.g. Comedy.")
    people: NameFilter = Field(default_factory=NameFilter, description=(
        "People or companies in any role (director, cast, writer, producer, ...)."))
    categories: NameFilter = Field(default_factory=NameFilter, description=(
        "Knowledge-graph categories, e.g. '1990s comedy films'."))
    entities: NameFilter = Field(default_factory=NameFilter, description=(
        "Any knowledge-graph entity, whatever its kind."))
    years: Years = Field(default_factory=Years)
    exclude_item_ids: list[Id] = Field(default_factory=list, max_length=500,
                                       description="Items never to recommend.")
    tail_only: bool = Field(False, description="Only long-tail (less popular) items.")

    def is_empty(self) -> bool:
        return (all(getattr(self, kind).is_empty() for kind in NAME_KINDS)
                and self.years == Years() and not self.exclude_item_ids and not self.tail_only)


NAME_KINDS = ("genres", "people", "categories", "entities")
"""The `Filters` fields that hold names, and the graph entity kinds each may match."""


class Feedback(_Strict):
    """What the person said of an item shown earlier in the session (or any item)."""

    item_id: Id
    signal: Literal["liked", "disliked", "not_interested", "more_like"] = Field(
        description="liked/more_like: recommend more like it; disliked/not_interested: "
                    "never show it again (disliked also steers away from similar items).")


Include = Literal["abstract", "facts", "sources"]


class RecommendRequest(_Strict):
    """What every entry point (Python, HTTP, MCP, LlamaIndex, CLI) asks `Recommender` for:
    who (a known user and/or liked items, and/or words), and what now (filters,
    preferences, the goal, the session)."""

    user_id: Id | None = Field(None, description="A known user's id (404 when unknown).")
    liked_item_ids: list[Id] = Field(default_factory=list, max_length=50, description=(
        "Items the person likes (adds to a known user's history)."))
    disliked_item_ids: list[Id] = Field(default_factory=list, max_length=50, description=(
        "Items the person dislikes: never recommended, and similar items move down."))
    text: str | None = Field(None, min_length=1, max_length=1000, description=(
        "What the person asks, in their words: genres, decades, people, titles and "
        "negations ('no horror', 'nothing with Jim Carrey') become constraints."))
    filters: Filters = Field(default_factory=Filters)
    prefer: NameFilter = Field(default_factory=NameFilter, description=(
        "Soft: items linked to `any` of these names move up (`all`, `none` unused)."))
    avoid: NameFilter = Field(default_factory=NameFilter, description=(
        "Soft: items linked to `any` of these names move down."))
    goal: Literal["next", "enjoy"] | None = Field(None, description=(
        "next: what they will watch next; enjoy: also what they will like (P(like) in "
        "the ranking). Unset: the service's default."))
    session_id: str | None = Field(None, description=(
        "Remember this conversation: nothing shown is repeated, and feedback shapes the "
        "next answer. Any id of letters, digits, '-' and '_' (up to 64)."))
    feedback: list[Feedback] = Field(default_factory=list, max_length=50)
    k: int = Field(10, ge=1, le=MAX_K, description="How many recommendations.")
    explain: bool = Field(True, description="Explain each recommendation from the graph.")
    include: list[Include] = Field(default_factory=list, description=(
        "Extra fields in the answer: abstract, facts (the cited graph paths as objects; "
        "their plain words are always in the explanation), sources (each source's score)."))

    @model_validator(mode="after")
    def _valid(self) -> RecommendRequest:
        if (self.user_id is None and not self.liked_item_ids and not self.text
                and self.session_id is None and not self.feedback):
            raise ValueError("give user_id, liked_item_ids, text or a session_id")
        if self.session_id is not None and not SESSION_ID.match(self.session_id):
            raise ValueError("session_id must be 1-64 letters, digits, '-' or '_'")
        both = set(self.liked_item_ids) & set(self.disliked_item_ids)
        if both:
            raise ValueError(f"items both liked and disliked: {', '.join(sorted(both))}")
        for kind in NAME_KINDS:
            names = getattr(self.filters, kind)
            clash = {n.casefold() for n in names.any + names.all} & {
                n.casefold() for n in names.none}
            if clash:
                raise ValueError(f"filters.{kind} both includes and excludes "
                                 f"{', '.join(sorted(clash))}")
        return self


class Constraint(BaseModel):
    """One constraint as understood: where it came from, and the graph entities it means."""

    kind: Literal["genres", "people", "categories", "entities", "years", "items", "tail"]
    mode: Literal["any", "all", "none", "prefer", "avoid", "range"]
    asked: str
    """What was asked: a name as written, a year range, an item id."""
    entities: list[str] = Field(default_factory=list)
    """The graph entities it resolved to (their display names)."""
    origin: Literal["filters", "text", "text_llm", "preference", "session"] = "filters"


class Understood(BaseModel):
    """What the request was taken to mean, returned with every answer so an assistant can
    check and correct it."""

    constraints: list[Constraint] = Field(default_factory=list)
    liked_item_ids: list[str] = Field(default_factory=list)
    """Items treated as liked this turn: the request's, titles named in its text, and the
    session's liked and "more like" items."""
    excluded_item_ids: list[str] = Field(default_factory=list)
    """Items never shown this turn: disliked, not interested, excluded by the filters."""
    already_shown: int = 0
    """Items the session showed before, left out too (counted, not listed: a long session
    would repeat hundreds of ids in every answer)."""
    goal: Literal["next", "enjoy"] = "next"
    text_left: str | None = None
    """Words of the text no rule understood; they still steer the text-similarity source."""
    ignored: list[str] = Field(default_factory=list)
    """What the LLM proposed from the text that the graph or the text did not support."""
    matching_items: int | None = None
    """How many catalogue items satisfy the hard constraints (None: no constraint)."""
