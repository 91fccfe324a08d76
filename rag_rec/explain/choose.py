"""The LLM on top of the templates: it chooses (or, in `free` mode, writes) the sentence.

In: the LLM backend (None: down), `LLMSettings`, the user, their rated history, the
recommended items, each item's KG paths (`GraphClient.candidate_facts`) and the scorer's
attention. Out: one `Explanation` per item (`explain_many`).

In `choose` mode (the default, for the small model) the LLM picks one of a few checked
sentences (`template_options`) through a one-token `choice` (structured output): it
cannot add a word. In `free` mode (a larger model) it writes JSON text citing evidence
labels; the text must pass the claim checker, else one sampled retry, else the template.
LLM down, slow or junk: the template, flagged in `note`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import Field, ValidationError, create_model

from rag_rec.explain.claims import check_claims
from rag_rec.explain.evidence import select_evidence
from rag_rec.explain.phrasing import display_title
from rag_rec.explain.templates import Option, template_options
from rag_rec.llm import LLMBackend, render
from rag_rec.models import Evidence, Explanation, Fact, Item, User
from rag_rec.rerank import LABELS, TITLE_CHARS
from rag_rec.settings import LLMSettings

Mode = Literal["choose", "free"]
FREE_EVIDENCE = 5
"""Evidence paths offered to the LLM in `free` mode."""
RETRY_TEMPERATURE = 0.7


def _template(options: list[Option], *, note: str | None, mode: Mode | None = None,
              rejected: tuple[str, ...] = ()) -> Explanation:
    return _shipped(options[0], "template", note=note, mode=mode, rejected=rejected)


def _shipped(option: Option, source: Literal["llm", "llm_retry", "template"], **kw) -> Explanation:
    return Explanation(text=option.text, fact_ids=tuple(path.fact.id for path in option.evidence),
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
                      options=[{"label": label, "text": option.text}
                               for label, option in zip(labels, options)],
                      labels=labels)
    try:
        logprobs = await asyncio.wait_for(backend.choice_logprobs(messages, labels),
                                          timeout=settings.request_timeout_s)
        pick = max(labels, key=lambda label: logprobs[label])
        if not all(math.isfinite(logprobs[label]) for label in labels):
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
                      evidence=[{"label": label, "fact": path.plain}
                                for label, path in zip(labels, offered)])
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
        used = tuple(dict.fromkeys(offered[labels.index(label)] for label in parsed.evidence))
        text = " ".join(parsed.text.split())
        problems = check_claims(text, item, [path.fact for path in used], history)
        if problems:
            rejected.append("; ".join(problems))
            continue
        return _shipped(Option(text, used), "llm" if attempt == 0 else "llm_retry",
                        mode="free", rejected=tuple(rejected),
                        note=rejected[0] if rejected else None)
    return _template(options, note="the claim checker rejected the LLM's text twice",
                     mode="free", rejected=tuple(rejected))


def explain_mode(settings: LLMSettings) -> Mode:
    """How the LLM is asked by default (`llm.explain_mode`)."""
    return settings.explain_mode


async def explain_many(backend: LLMBackend | None, settings: LLMSettings, user: User,
                       history: Sequence[tuple[Item, float | None]], items: Sequence[Item],
                       facts: Mapping[str, Sequence[Fact]],
                       attention: Mapping[str, Mapping[str, float]] | None = None, *,
                       mode: Mode | None = None,
                       descriptions: Mapping[str, str] | None = None) -> list[Explanation]:
    """One explanation per item in `items`, in order. `history`: the user's rated films
    (rating 1-5, None when unknown); `facts`: each item's KG paths to the history
    (`GraphClient.candidate_facts`); `attention`: item id -> {history item id: the
    scorer's attention weight for that item} (None: uniform); `descriptions`: item id ->
    what the graph says of the item itself, for the sentence of an item no path explains.
    All LLM requests go out at once (vLLM batches them). Never raises for LLM trouble:
    the template, flagged."""
    mode = mode or explain_mode(settings)
    ratings = {past.id: rating for past, rating in history}
    gate = asyncio.Semaphore(settings.concurrency)
    evidences = [select_evidence(facts.get(item.id, ()), ratings,
                                 (attention or {}).get(item.id)) for item in items]
    choices = vary([template_options(item, evidence, history,
                                     (descriptions or {}).get(item.id))
                    for item, evidence in zip(items, evidences)])

    async def one(item: Item, evidence: list[Evidence], options: list[Option]) -> Explanation:
        if not evidence:
            return _template(options, note="no KG path links this item to a film you liked")
        if backend is None:
            return _template(options, note="LLM unavailable")
        async with gate:
            if mode == "free":
                return await _free(backend, settings, user, item, evidence, options, history)
            if len(options) == 1:
                return _template(options, note="only one checked sentence to choose from")
            return await _choose(backend, settings, user, item, options)

    return list(await asyncio.gather(*(one(item, evidence, options) for item, evidence, options
                                       in zip(items, evidences, choices))))


def vary(lists: Sequence[list[Option]]) -> list[list[Option]]:
    """Each item's options with the one to default to first, down the list: a sentence
    already used higher up is never repeated, and a history film that already anchored
    an explanation is used again only when the item has no other."""
    used_texts: set[str] = set()
    used_anchors: set[str] = set()
    out = []
    for options in lists:
        fresh = [o for o in options if o.text not in used_texts] or options
        anchors = [{path.fact.history_item_id for path in o.evidence} for o in fresh]
        pick = next((n for n, a in enumerate(anchors) if a and not a & used_anchors), 0)
        first = fresh[pick]
        out.append([first] + [o for o in options if o is not first])
        used_texts.add(first.text)
        used_anchors |= anchors[pick]
    return out
