"""The write journal: every accepted live write, one JSON line each, fsync'd before the
write is acknowledged, replayed when a recommender starts (so a restart loses nothing).

It lives beside the build it extends, `<home>/builds/<split>/writes-<fingerprint>.jsonl`
(the data's fingerprint: a journal follows the data it was written against, across
rebuilds with other settings; new data starts a new one). A line cut short by a crash
was never acknowledged: it is skipped with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def journal_path(home: Path, split_name: str, fingerprint: str) -> Path:
    return home / "builds" / split_name / f"writes-{fingerprint}.jsonl"


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self._file = None

    def entries(self) -> Iterator[dict[str, Any]]:
        """The recorded writes, oldest first."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                try:
                    if not line.endswith("\n"):
                        raise ValueError("no newline")
                    yield json.loads(line)
                except ValueError:
                    log.warning("%s:%d: incomplete line skipped (a write cut short "
                                "before it was acknowledged)", self.path, lineno)

    def count(self) -> int:
        return sum(1 for _ in self.entries())

    def append(self, kind: str, data: dict[str, Any]) -> None:
        """Write one entry and fsync it: when this returns, the write survives a crash.
        An OSError (disk full, read-only) propagates: the write is then not acknowledged."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
            self._trim_partial_line()
        line = json.dumps({"ts": round(time.time(), 3), "kind": kind, "data": data},
                          ensure_ascii=False, separators=(",", ":")) + "\n"
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())

    def _trim_partial_line(self) -> None:
        # A crash can leave a last line without its newline: end it, so the next entry
        # starts on a line of its own (the cut line stays and is skipped on reading).
        size = self.path.stat().st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    self._file.write("\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
