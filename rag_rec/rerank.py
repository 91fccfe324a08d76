"""LLM rerank by label scoring, KG-grounded explanations, and cold-start profiles.

Rerank reads probabilities instead of parsing text: candidates get single-letter labels,
the model's next token is restricted to those labels (structured output `choice`,
max_tokens=1) and the log-probability of every label is read from that one forward pass.
Orders are shuffled `rerank_permutations` times and the scores averaged to cancel position
bias; large candidate sets are cut into windows of at most `rerank_window`. A label can
only name a candidate, so no text in a title can put a non-candidate in the output.

Explanations are JSON constrained by a schema generated from a pydantic model whose
`fact_ids` may only be the ids of the facts retrieved for that item; the reply is validated
again (schema, fact ids, length), retried once, and otherwise replaced by a deterministic
template built from the strongest KG path. Every result says which of these happened.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model

from rag_rec.errors import LLMUnavailable
from rag_rec.llm import LLMBackend, render
from rag_rec.models import ColdStartProfile, Explanation, Fact, Item, User
from rag_rec.settings import LLMSettings

LABELS = [chr(ord("A") + i) for i in range(26)]
HISTORY_IN_PROMPT = 20
"""Most recent history items shown to the LLM (SmolLM2's context is small)."""
TITLE_CHARS = 120
RETRY_TEMPERATURE = 0.7


def _item_json(item: Item, **extra: Any) -> dict[str, Any]:
    return {**extra, "title": item.title[:TITLE_CHARS], "year": item.year,
            "genres": list(item.genres)}


def history_json(history: Sequence[tuple[Item, float | None]]) -> list[dict[str, Any]]:
    """Newest-first history for prompts: item text plus the user's rating, if known."""
    recent = list(history)[-HISTORY_IN_PROMPT:][::-1]
    return [_item_json(item, rating=rating) for item, rating in recent]


# --------------------------------------------------------------------------- rerank


@dataclass
class RerankResult:
    scores: dict[str, float] = field(default_factory=dict)
    """Item id -> mean over permutations of log(p(label) * window size): 0 means "as
    likely as a uniform pick", positive means preferred. Empty when degraded."""
    degraded: bool = False
    error: str | None = None
    requests: int = 0


def _windows(items: list[Item], size: int) -> list[list[Item]]:
    """Near-equal windows of at most `size` (no window of one, which says nothing)."""
    n = math.ceil(len(items) / size)
    base, extra = divmod(len(items), n)
    out, start = [], 0
    for w in range(n):
        end = start + base + (1 if w < extra else 0)
        out.append(items[start:end])
        start = end
    return out


async def score_candidates(backend: LLMBackend, settings: LLMSettings, user: User,
                           history: Sequence[tuple[Item, float | None]],
                           candidates: Sequence[Item]) -> RerankResult:
    """An LLM score for every candidate (and nothing else), or a degraded empty result."""
    if len(candidates) < 2:
        return RerankResult(scores={c.id: 0.0 for c in candidates})
    rng = random.Random(settings.seed)
    hist = history_json(history)
    jobs: list[list[Item]] = []
    for _ in range(settings.rerank_permutations):
        order = list(candidates)
        rng.shuffle(order)
        jobs.extend(_windows(order, settings.rerank_window))
    gate = asyncio.Semaphore(settings.concurrency)

    async def one(window: list[Item]) -> dict[str, float]:
        labels = LABELS[:len(window)]
        messages = render("rerank", user=user, history=hist, labels=labels,
                          candidates=[_item_json(it, label=lb) for lb, it in zip(labels, window)])
        async with gate:
            logprobs = await backend.choice_logprobs(messages, labels)
        return {it.id: logprobs[lb] + math.log(len(window)) for lb, it in zip(labels, window)}

    try:
        parts = await asyncio.wait_for(asyncio.gather(*(one(w) for w in jobs)),
                                       timeout=settings.stage_budget_s)
    except (LLMUnavailable, TimeoutError) as exc:
        return RerankResult(degraded=True, error=str(exc) or "rerank timed out",
                            requests=len(jobs))
    totals: dict[str, list[float]] = {}
    for part in parts:
        for item_id, score in part.items():
            totals.setdefault(item_id, []).append(score)
    return RerankResult(scores={i: sum(v) / len(v) for i, v in totals.items()},
                        requests=len(jobs))


# --------------------------------------------------------------------------- explain


def _explanation_model(facts: Sequence[Fact], settings: LLMSettings) -> type[BaseModel]:
    """The reply schema for one item: only its own fact ids may be cited."""
    fact_id = Literal[tuple(f.id for f in facts)]  # type: ignore[valid-type]
    lo, hi = settings.explanation_chars
    return create_model(
        "ExplanationReply",
        fact_ids=(list[fact_id], Field(min_length=1, max_length=min(3, len(facts)))),
        text=(str, Field(min_length=lo, max_length=hi)),
    )


def template_explanation(item: Item, facts: Sequence[Fact], note: str) -> Explanation:
    """Deterministic explanation from the strongest KG path (facts come rarest-entity
    first), or a plain statement when the item has no path to the history."""
    if not facts:
        return Explanation(text=f"{item.title} was found by similarity and popularity; the "
                                "knowledge graph has no path from it to your history.",
                           source="template", note=note)
    f = facts[0]
    relation = f.relation.replace("_", " ")
    return Explanation(
        text=f"Recommended because you watched {f.history_title}: {item.title} shares "
             f"{f.entity_name} ({relation}) with it.",
        fact_ids=(f.id,), source="template", note=note)


async def explain(backend: LLMBackend | None, settings: LLMSettings, user: User, item: Item,
                  facts: Sequence[Fact]) -> Explanation:
    """Explain one recommendation, citing only `facts` (see the module docstring)."""
    if backend is None:
        return template_explanation(item, facts, "LLM unavailable")
    if not facts:
        return template_explanation(item, facts, "no KG path links this item to the history")
    reply_model = _explanation_model(facts, settings)
    messages = render("explain", user=user, item=_item_json(item),
                      facts=[{"id": f.id, "text": f.text} for f in facts])
    by_id = {f.id: f for f in facts}
    note = None
    for attempt in range(2):
        try:
            # Greedy first; the retry samples, since greedy would repeat the same reply.
            reply = await asyncio.wait_for(
                backend.generate_json(messages, reply_model.model_json_schema(),
                                      settings.explain_max_tokens,
                                      temperature=RETRY_TEMPERATURE if attempt else 0.0),
                timeout=settings.request_timeout_s)
        except (LLMUnavailable, TimeoutError) as exc:
            return template_explanation(item, facts, f"LLM unavailable: {exc or 'timeout'}")
        if reply.finish_reason == "length":
            note = "reply truncated at max_tokens"
            continue
        try:
            parsed = reply_model.model_validate_json(reply.text)
        except ValidationError as exc:
            note = f"invalid reply: {exc.errors()[0]['msg']}"
            continue
        cited = tuple(dict.fromkeys(parsed.fact_ids))
        problem = _text_problem(parsed.text, [by_id[i] for i in cited if i in by_id])
        if not set(cited) <= by_id.keys():  # the schema should make this impossible
            problem = "reply cited facts that were not retrieved"
        if problem:
            note = problem
            continue
        return Explanation(text=parsed.text.strip(), fact_ids=cited,
                           source="llm" if attempt == 0 else "llm_retry", note=note)
    return template_explanation(item, facts, f"{note}; after one retry")


def _text_problem(text: str, cited: Sequence[Fact]) -> str | None:
    """Checks a schema cannot express: the text names what it cites, and does not loop
    (small models repeat a phrase until max_tokens)."""
    words = text.lower().split()
    if len(words) >= 12 and len(set(words)) < 0.5 * len(words):
        return "repetitive text"
    lowered = text.lower()
    if not any(f.entity_name.lower() in lowered or f.history_title.lower() in lowered
               for f in cited):
        return "text names none of the cited facts' entities or movies"
    return None


async def explain_many(backend: LLMBackend | None, settings: LLMSettings, user: User,
                       candidates: Sequence[Item], chosen: Sequence[str],
                       facts: dict[str, list[Fact]]) -> list[Explanation]:
    """Explanations for the `chosen` item ids, which must all be candidates."""
    by_id = {c.id: c for c in candidates}
    strangers = [i for i in chosen if i not in by_id]
    if strangers:
        raise ValueError(f"items {strangers} are not among the candidates")
    gate = asyncio.Semaphore(settings.concurrency)

    async def one(item_id: str) -> Explanation:
        async with gate:
            return await explain(backend, settings, user, by_id[item_id], facts.get(item_id, []))

    return list(await asyncio.gather(*(one(i) for i in chosen)))


# --------------------------------------------------------------------------- cold start


async def cold_start_profile(backend: LLMBackend | None, settings: LLMSettings, text: str,
                             genres: Sequence[str]) -> ColdStartProfile:
    """Genres, people and keywords from a new user's free text. Without an LLM (or on
    an invalid reply) genres are matched by name and the profile is marked degraded."""
    genre = Literal[tuple(genres)]  # type: ignore[valid-type]
    reply_model = create_model(
        "ProfileReply", genres=(list[genre], Field(max_length=5)),
        people=(list[str], Field(max_length=5)), keywords=(list[str], Field(max_length=5)))
    if backend is not None:
        try:
            reply = await asyncio.wait_for(backend.generate_json(
                render("profile", text=text, genres=list(genres)),
                reply_model.model_json_schema(), settings.explain_max_tokens),
                timeout=settings.request_timeout_s)
            parsed = reply_model.model_validate_json(reply.text)
            return ColdStartProfile(genres=_unique(parsed.genres), people=_unique(parsed.people),
                                    keywords=_unique(parsed.keywords))
        except (LLMUnavailable, TimeoutError, ValidationError):
            pass
    lowered = text.lower()
    return ColdStartProfile(genres=tuple(g for g in genres if g.lower() in lowered),
                            degraded=True)


def _unique(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
