"""Live writes: interactions, items and hidden items written through Python, HTTP and MCP
while serving, into the graph, a journal and the recommender's memory (writer.py), so
the user's next recommendation reflects them and a restart loses nothing (journal.py).
docs/live.md says what a write does and when to rebuild."""

from rag_rec.live.journal import Journal, journal_path
from rag_rec.live.models import (
    InteractionWrite,
    ItemBody,
    ItemWrite,
    WriteResult,
    WriteStatus,
)
from rag_rec.live.writer import LiveState, LiveWrites

__all__ = ["InteractionWrite", "ItemBody", "ItemWrite", "Journal", "LiveState", "LiveWrites",
           "WriteResult", "WriteStatus", "journal_path"]
