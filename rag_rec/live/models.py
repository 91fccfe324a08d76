"""What a live write takes and answers: the request models every entry point shares
(Python, HTTP, MCP) and the outcome of one write."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f/]+$")]
"""An id: 1-64 characters, no control characters and no slash (ids travel in paths)."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InteractionWrite(_Strict):
    """A user interacted with an item: a rating on the catalogue's scale, or none (a
    positive interaction, recorded at the top of the scale as a liked item)."""

    user_id: Id
    """Unknown users are created."""
    item_id: Id
    """Must be in the catalogue (built or added live): otherwise 404."""
    rating: float | None = Field(None, allow_inf_nan=False)
    """On the scale of the catalogue's ratings (MovieLens: 1-5), else 422."""
    timestamp: int | None = Field(None, ge=0, le=2**41)
    """Unix seconds; None: now for a new interaction, unchanged for a repeated one."""


class ItemBody(_Strict):
    """`PUT /v1/items/{id}`'s body: an `ItemWrite` without the id (it is in the path)."""

    title: str = Field(min_length=1, max_length=500)
    year: int | None = Field(None, ge=0, le=9999)
    text: str | None = Field(None, max_length=20_000)
    """Its description: embedded for retrieval and shown as the abstract."""
    categories: tuple[str, ...] = Field((), max_length=50)
    """Genres or categories; those the graph knows become links (MovieLens genres)."""
    facts: tuple[tuple[str, str], ...] = Field((), max_length=500)
    """(relation, entity name or id), e.g. ("directed_by", "Ridley Scott"): links to
    entities the graph holds (an unknown name is refused, naming it, unless
    `new_entities`)."""
    new_entities: bool = False
    """Create the entities `facts` name that the graph does not hold (a new brand, a new
    author) instead of refusing them: off by default, so a misspelt name is an error, not
    a new entity."""


class ItemWrite(ItemBody):
    """An item to add, or the new state of one (a repeated write changes nothing)."""

    id: Id


Outcome = Literal["created", "updated", "unchanged"]


class WriteResult(BaseModel):
    """What one write did: `unchanged` when it repeated the current state (idempotent)."""

    outcome: Outcome
    kind: Literal["interaction", "item", "hide", "unhide"]
    id: str
    """The item id; for an interaction, "user_id/item_id"."""
    writes_since_build: int
    notes: list[str] = Field(default_factory=list)
    """E.g. categories the graph does not know (kept on the item, not linked)."""


class WriteStatus(BaseModel):
    """How far the served build lags behind the live writes."""

    writes_since_build: int
    retrain_after: int
    rebuild_due: bool
    journal: str
