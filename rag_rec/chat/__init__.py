"""A chat turn: what a person asks now, on top of who they are.

    request (user_id and/or likes, text, filters, prefer/avoid, goal, session_id)
      -> parse the text (parse.py: graph names, decades, negations; vocabulary.toml)
      -> resolve names against the graph (names.py: case, accents, typos)
      -> one plan in graph ids (constraints.py): hard filters, soft preferences, liked
         and excluded items, the session's shown items and feedback (sessions.py)
      -> `Recommender` ranks under it and says what it understood (`Understood`)

| module | owns |
|---|---|
| `request.py` | `RecommendRequest` and `Understood`: the request every entry point sends, and what comes back of it |
| `names.py` | `NameIndex`: names and titles to graph ids, and lookups |
| `parse.py` | `Parser`: free text to mentions (rules; `vocabulary.toml` holds the words) |
| `constraints.py` | `Catalogue`, `Plan`, `plan_request`: the request in graph ids, checked against the catalogue |
| `sessions.py` | `SessionStore`: what a conversation has shown and heard, on disk |
"""

from rag_rec.chat.constraints import Catalogue, Plan, plan_request
from rag_rec.chat.names import Match, NameIndex, normalise
from rag_rec.chat.parse import Parser, ParsedText
from rag_rec.chat.request import (
    MAX_K,
    Constraint,
    Feedback,
    Filters,
    NameFilter,
    RecommendRequest,
    Understood,
    Years,
)
from rag_rec.chat.sessions import Session, SessionStore

__all__ = ["MAX_K", "Catalogue", "Constraint", "Feedback", "Filters", "Match", "NameFilter",
           "NameIndex", "Parser", "ParsedText", "Plan", "RecommendRequest", "Session",
           "SessionStore", "Understood", "Years", "normalise", "plan_request"]
