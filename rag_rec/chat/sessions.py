"""Conversation memory: what a session has been shown and what the person said of it.

In: a session id and, after each answer, the items shown and the feedback given. Out:
the session as it stands (`Session`), read back by the next request. Sessions are JSON
files under `<home>/sessions/`, written atomically, so they survive a restart and two
service processes share them; each is bounded (`max_shown` items, newest kept) and
expires `ttl_s` after its last use; past `max_sessions`, the least recently used go.
A malformed file counts as an expired session, and the answer says so.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from dataclasses import asdict

from pydantic import BaseModel, Field, ValidationError

from rag_rec.chat.parse import Mention
from rag_rec.chat.request import SESSION_ID

STANDING_KINDS = ("genres", "people", "categories", "years", "tail")
"""What a person's words ask that holds for the rest of the session until they say
otherwise; titles and references ("not that one") belong to their turn."""


class Session(BaseModel):
    id: str
    created: float = Field(default_factory=time.time)
    used: float = Field(default_factory=time.time)
    turns: int = 0
    shown: list[str] = Field(default_factory=list)
    """Every item shown, oldest first."""
    last: list[str] = Field(default_factory=list)
    """The last answer, in its order: what "the second" or "that one" refers to."""
    feedback: dict[str, str] = Field(default_factory=dict)
    """Item id -> signal (liked, disliked, not_interested, more_like), latest wins."""
    standing: list[dict] = Field(default_factory=list)
    """What the person's words asked for that holds until they say otherwise (genres,
    people, categories, years, less-known items), as parser mentions: a later turn that
    names a kind replaces that kind, the others carry on ("a 90s comedy" ... "not that
    one" stays a 90s comedy)."""


class SessionStore:
    def __init__(self, folder: Path, *, ttl_s: float = 24 * 3600, max_shown: int = 500,
                 max_sessions: int = 10_000):
        self.folder = folder
        self.ttl_s, self.max_shown, self.max_sessions = ttl_s, max_shown, max_sessions
        self._lock = threading.Lock()

    def _path(self, session_id: str) -> Path:
        if not SESSION_ID.match(session_id):  # the id names a file: never a path
            raise ValueError(f"invalid session id {session_id!r}")
        return self.folder / f"{session_id}.json"

    def open(self, session_id: str) -> tuple[Session, str | None]:
        """(the session, a note when it was started afresh: new, expired or unreadable)."""
        path = self._path(session_id)
        try:
            session = Session.model_validate_json(path.read_text())
        except FileNotFoundError:
            return Session(id=session_id), "session_new"
        except (OSError, ValueError, ValidationError):
            return Session(id=session_id), "session_unreadable_started_afresh"
        if time.time() - session.used > self.ttl_s:
            return Session(id=session_id), "session_expired_started_afresh"
        return session, None

    def save(self, session: Session) -> None:
        session.used = time.time()
        session.shown = session.shown[-self.max_shown:]
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(session.id)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(session.model_dump_json())
        tmp.replace(path)
        self._evict()

    def _evict(self) -> None:
        with self._lock:
            files = list(self.folder.glob("*.json"))
            now = time.time()
            stale = [f for f in files if now - f.stat().st_mtime > self.ttl_s]
            live = sorted(set(files) - set(stale), key=lambda f: f.stat().st_mtime)
            for path in stale + live[:max(0, len(live) - self.max_sessions)]:
                path.unlink(missing_ok=True)

    def record(self, session: Session, shown: list[str], feedback: dict[str, str],
               standing: list[dict]) -> None:
        """One answered turn: what was shown and said."""
        session.turns += 1
        session.feedback.update(feedback)
        session.standing = standing
        if shown:
            session.last = list(shown)
            seen = set(session.shown)
            session.shown += [i for i in shown if i not in seen]
        self.save(session)

    def clear(self, session_id: str) -> None:
        self._path(session_id).unlink(missing_ok=True)


def carried(session: Session, mentions: list[Mention]) -> list[Mention]:
    """The session's standing wishes of the kinds this turn's `mentions` do not name, as
    mentions from the session, followed by this turn's."""
    said = {mention.kind for mention in mentions}
    kept = [Mention(**{**saved, "years": tuple(saved["years"]) if saved["years"] else None,
                       "origin": "session"})
            for saved in session.standing if saved["kind"] not in said]
    return kept + mentions


def standing(mentions: list[Mention]) -> list[dict]:
    """What of a turn's mentions the session keeps."""
    return [asdict(mention) for mention in mentions if mention.kind in STANDING_KINDS]
