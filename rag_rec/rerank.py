"""LLM rerank by label scoring.

Rerank reads probabilities instead of parsing text: candidates get single-letter labels,
the model's next token is restricted to those labels (structured output `choice`,
max_tokens=1) and the log-probability of every label is read from that one forward pass.
Orders are shuffled `rerank_permutations` times and the scores averaged to cancel position
bias; large candidate sets are cut into windows of at most `rerank_window`. A label can
only name a candidate, so no text in a title can put a non-candidate in the output.

Explanations live in `rag_rec.explain`; free text is read by `rag_rec.chat`.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rag_rec.errors import LLMUnavailable
from rag_rec.llm import LLMBackend, render
from rag_rec.models import Item, User
from rag_rec.settings import LLMSettings

LABELS = [chr(ord("A") + i) for i in range(26)]
HISTORY_IN_PROMPT = 20
"""Most recent history items shown to the LLM (SmolLM2's context is small)."""
TITLE_CHARS = 120


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
