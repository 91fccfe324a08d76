"""The LLM's part in reading free text: names the rules left, proposed and then checked.

In: the words `chat.parse` did not understand, an LLM backend (None: skipped) and the
catalogue's `NameIndex`. Out: mentions the graph *and* the text support, and what was
ignored (said back in `Understood.ignored`). The LLM answers under a JSON schema (vLLM's
structured outputs); a proposed name is applied only when it resolves to a graph entity
and occurs in the words themselves (rapidfuzz; the name or its last word), so a small model that invents a name
("Johnny Depp" for "a 1990s comedy") changes nothing: the LLM proposes, code checks.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field, ValidationError
from rapidfuzz import fuzz

from rag_rec.chat.names import KINDS, NameIndex, normalise
from rag_rec.chat.parse import Mention
from rag_rec.errors import LLMUnavailable
from rag_rec.llm import LLMBackend, render
from rag_rec.settings import LLMSettings

IN_TEXT = 90.0
"""rapidfuzz partial ratio a proposed name needs against the words it came from."""
KIND_OF = {"genre": "genres", "dbpedia": "people", "category": "categories"}


def _in_text(name: str, text: str) -> bool:
    """The name, or its last word (a surname: "tarantino" for Quentin Tarantino), is in
    the words, give or take a typo."""
    surname = name.rsplit(" ", 1)[-1]
    return fuzz.partial_ratio(name, text) >= IN_TEXT or (
        len(surname) >= 4 and fuzz.partial_ratio(surname, text) >= IN_TEXT)


class Proposal(BaseModel):
    want: list[str] = Field(default_factory=list, max_length=5)
    exclude: list[str] = Field(default_factory=list, max_length=5)


async def propose(backend: LLMBackend | None, settings: LLMSettings, words: str,
                  names: NameIndex) -> tuple[list[Mention], list[str], str | None]:
    """(checked mentions, ignored proposals in words, why the LLM was not asked or
    failed; None when it answered)."""
    if backend is None:
        return [], [], "no LLM"
    try:
        reply = await asyncio.wait_for(backend.generate_json(
            render("constraints", text=words), Proposal.model_json_schema(),
            settings.explain_max_tokens), timeout=settings.request_timeout_s)
        proposal = Proposal.model_validate_json(reply.text)
    except (LLMUnavailable, TimeoutError) as exc:
        return [], [], f"LLM unavailable: {exc}"
    except ValidationError:
        return [], [], "the LLM's reply was not valid JSON for the schema"
    mentions, ignored = [], []
    text = normalise(words)
    for mode, proposed in (("any", proposal.want), ("none", proposal.exclude)):
        for name in dict.fromkeys(proposal_name.strip() for proposal_name in proposed):
            if not name:
                continue
            ids = names.exact(name, KINDS["entities"])
            if not ids:
                ignored.append(f"{name} (not in the knowledge graph)")
            elif not _in_text(normalise(name), text):
                ignored.append(f"{name} (not in the request)")
            else:
                kind = KIND_OF.get(names.kinds[ids[0]], "categories")
                mentions.append(Mention(kind, mode, name, ids, origin="text_llm"))
    return mentions, ignored, None
