"""The data model that crosses every stage boundary (graph, retrieval, LLM, scorer, API)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from rag_rec.chat.request import Understood


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

    # `id` and `text` are derived, and serialised for readers; on input they are ignored
    # and derived again, so a round trip through JSON works and an id cannot be forged.
    model_config = ConfigDict(frozen=True, extra="ignore")

    candidate_id: str
    candidate_title: str
    relation: str
    entity_id: str
    entity_name: str
    history_relation: str
    history_item_id: str
    history_title: str
    # Context for choosing and phrasing evidence; not part of the path, so not of its id.
    entity_kind: str | None = None
    """`dbpedia` (a person or company), `category`, `genre` or `decade`."""
    entity_degree: int | None = None
    """Items linked to the entity: 2 for a rare director, hundreds for a genre."""
    history_rating: float | None = None
    """The user's rating of the history item, where known."""

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

    @computed_field  # type: ignore[prop-decorator]
    @property
    def plain(self) -> str:
        """The path in plain words, e.g. "Rob Roy stars Liam Neeson, who also starred in
        Schindler's List." (for readers: no ids, no arrows; see `use_phrasing`)."""
        return _in_words("fact", self)


_phrasing: dict[str, Callable[[Any], str]] = {}


def use_phrasing(*, fact: Callable[[Fact], str], evidence: Callable[[Evidence], str]) -> None:
    """Install how `Fact.plain` and `Evidence.plain` are worded. The data model says that
    a path has plain words, the explainer says which: `rag_rec.explain.phrasing` calls
    this when imported. Installed rather than imported here, because the explainer
    imports this module (explain -> models, never back)."""
    _phrasing.update(fact=fact, evidence=evidence)


def _in_words(kind: str, value: Fact | Evidence) -> str:
    if kind not in _phrasing:
        raise RuntimeError(f"{type(value).__name__}.plain needs the phrasing: import "
                           "rag_rec.explain (it installs rag_rec.explain.phrasing)")
    return _phrasing[kind](value)


class Candidate(BaseModel):
    """An item proposed for a user, with where it came from and why."""

    item: Item
    sources: dict[str, float] = Field(default_factory=dict)
    """Candidate source name -> that source's score (higher is better)."""
    facts: list[Fact] = Field(default_factory=list)


class Evidence(_Frozen):
    """One KG path used to explain an item, with the numbers that chose it."""

    model_config = ConfigDict(frozen=True, extra="ignore")  # `plain` is derived

    fact: Fact
    history_rating: float | None = None
    """The user's rating of the history item the path goes through (None: unknown, as
    for a new user's liked items)."""
    attention: float = Field(ge=0, le=1)
    """The scorer's attention on that history item for this candidate, scaled so the
    most-attended history item is 1 (uniform when the scorer gave none)."""
    specificity: float = Field(ge=0)
    """1 / log2(1 + max(entity degree, 8)): a director of 3 films beats a genre of 700."""
    weight: float = Field(ge=0)
    """What ranked this path: relation weight × specificity × rating factor ×
    attention factor (`rag_rec.explain.select_evidence`)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def plain(self) -> str:
        """The fact in plain words, with the user's rating of the history item (see
        `use_phrasing`)."""
        return _in_words("evidence", self)


class Explanation(_Frozen):
    """Why an item is recommended: a short sentence, and the KG facts (evidence) behind it.

    Every text is either rendered by code from the evidence (templates, and the options
    the small LLM chooses among) or LLM free text that passed the claim checker
    (`rag_rec.explain.check_claims`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")  # `facts_in_words` is derived

    text: str
    """The short "why", in plain words (no fact ids)."""
    fact_ids: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    """The paths the text states, strongest first, with their weights."""
    source: Literal["llm", "llm_retry", "template"]
    """`llm`: the LLM's choice or text, accepted first time; `llm_retry`: accepted after
    one retry; `template`: rendered from the strongest evidence, because the LLM was
    unavailable, failed, or its text was rejected (`rejected` says why)."""
    mode: Literal["choose", "free"] | None = None
    """How the LLM was asked: `choose` among verified sentences, or write `free` text
    that the claim checker must pass; None when it was not asked."""
    rejected: tuple[str, ...] = ()
    """The claim checker's (or validator's) reasons for each LLM reply it rejected."""
    note: str | None = None
    """Why a retry or the template was needed."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def facts_in_words(self) -> tuple[str, ...]:
        """The cited facts in plain words, for the CLI and the API to list under the why."""
        return tuple(e.plain for e in self.evidence)


class Recommendation(BaseModel):
    """One recommended item with its evidence."""

    item: Item
    rank: int = Field(ge=1)
    score: float
    """The ranking score: the calibrated log-odds, plus the LLM's weighted rerank score
    and the long-tail boost where those are on (`llm.fusion_weight`,
    `retrieval.tail_boost`)."""
    p_next: float | None = Field(None, ge=0, le=1)
    """The calibrated chance that the item is among what the user interacts with next
    (calibrated on held-out candidate lists; with the LLM score fused in when
    `llm.fusion_weight` > 0). A ranking probability, not a like probability. None for a
    request with no history at all (text or filters only): nothing to calibrate on."""
    p_like: float | None = Field(None, ge=0, le=1)
    """The chance the user rates the item 4 or 5 stars if they watch it (the like head),
    where the build has one."""
    llm_score: float | None = None
    """The LLM's rerank score, log(p·n) over a window of n (0 = no preference), when the
    LLM scored this item."""
    explanation: Explanation | None = None
    facts: list[Fact] = Field(default_factory=list)
    """The KG facts the explanation cites."""
    sources: dict[str, float] = Field(default_factory=dict)


class Recommendations(BaseModel):
    """An answer. `degraded` is derived here, in one place, from every stage's `flags`: a
    stage only says what happened, and a flag in `DEGRADATION_FLAGS` makes the answer
    degraded whichever stage raised it. Flags and explanation notes reach clients, so
    the addresses and paths an error text may hold (the vLLM URL, a model folder) are
    replaced by placeholders; the logs and an authorised /healthz keep them."""

    DEGRADATION_FLAGS: ClassVar[frozenset[str]] = frozenset({
        "llm_unavailable", "llm_score_unavailable", "text_without_llm",
        "explanations_from_templates", "explanations_timed_out",
    })
    """Flags (the part before any `: detail`) meaning a stage fell back. Informational
    flags (`short_history`, `text_only`, `no_history`, `session_new`, ...) are not
    in it."""

    user_id: str | None
    items: list[Recommendation]
    cold_start: bool = False
    degraded: bool = False
    """True when a stage fell back (LLM down, ...): `flags` says which. Set from `flags`
    on construction; a caller can only add to it, never clear a degradation flag's."""
    flags: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    """What the person should know about the answer, in words ("only 3 items satisfy the
    filters")."""
    understood: Understood | None = None
    """The constraints, likes and exclusions the request was taken to mean."""
    session_id: str | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _derive(self) -> Recommendations:
        self.flags = [_redact(f) for f in self.flags]
        for r in self.items:
            if r.explanation is not None and r.explanation.note:
                r.explanation = r.explanation.model_copy(
                    update={"note": _redact(r.explanation.note)})
        self.degraded = self.degraded or any(
            f.split(":", 1)[0].strip() in self.DEGRADATION_FLAGS for f in self.flags)
        return self


_INTERNALS = re.compile(
    r"[a-z][a-z0-9+.-]*://[^\s'\"),;]*[^\s'\"),;:.]"  # URLs (vLLM, Neo4j)
    r"|(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?"  # IP addresses
    r"|(?<![\w.:/])/(?:[\w.+-]+/)+[\w.+-]*",      # absolute paths
    re.IGNORECASE)


def _redact(text: str) -> str:
    """`text` with URLs, IP addresses and absolute paths replaced by placeholders."""
    return _INTERNALS.sub(lambda m: "<path>" if m[0].startswith("/") else "<address>", text)


class HistoryEntry(BaseModel):
    item: Item
    rating: float
    timestamp: int


class ItemFact(BaseModel):
    relation: str
    entity_id: str
    entity_name: str
    entity_kind: str


class SimilarItem(BaseModel):
    item: Item
    similarity: float
    """Cosine similarity in the fused text + knowledge-graph space."""


class ItemDetail(BaseModel):
    item: Item
    popularity: int
    facts: list[ItemFact]


class Health(BaseModel):
    status: Literal["ok", "degraded", "down"]
    neo4j: str
    llm: str
    build: str
    writes_since_build: int | None = None
    """Live writes recorded since the served build (rag_rec/live/); None when unknown."""
    rebuild_due: bool | None = None
    """`writes_since_build` reached `writes.retrain_after`: time for `rag-rec build`."""
