"""The data model that crosses every stage boundary (graph, retrieval, LLM, scorer, API)."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field, computed_field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Item(_Frozen):
    """A catalogue item (a movie in MovieLens)."""

    id: str
    title: str
    year: int | None = None
    genres: tuple[str, ...] = ()
    abstract: str | None = None
    """Wikipedia abstract, where the item is matched to DBpedia."""


class User(_Frozen):
    id: str
    age: int | None = None
    gender: str | None = None
    occupation: str | None = None


class Interaction(_Frozen):
    user_id: str
    item_id: str
    rating: float
    timestamp: int


class Entity(_Frozen):
    """A KG entity: a DBpedia resource (id = its URI), a genre or a release decade."""

    id: str
    name: str
    kind: str
    """`dbpedia`, `genre` or `decade`."""


class Fact(_Frozen):
    """A KG path linking a candidate to an item in the user's history:
    `(candidate)-[relation]->(entity)<-[history_relation]-(history item)`."""

    candidate_id: str
    candidate_title: str
    relation: str
    entity_id: str
    entity_name: str
    history_relation: str
    history_item_id: str
    history_title: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def id(self) -> str:
        """Stable id: the same path always gets the same id, across runs and servers."""
        key = "|".join(
            (self.candidate_id, self.relation, self.entity_id, self.history_relation,
             self.history_item_id)
        )
        return "f" + hashlib.sha1(key.encode()).hexdigest()[:10]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def text(self) -> str:
        return (
            f"({self.candidate_title})-[{self.relation}]->({self.entity_name})"
            f"<-[{self.history_relation}]-({self.history_title})"
        )


class Candidate(BaseModel):
    """An item proposed for a user, with where it came from and why."""

    item: Item
    sources: dict[str, float] = Field(default_factory=dict)
    """Candidate source name -> that source's score (higher is better)."""
    facts: list[Fact] = Field(default_factory=list)
