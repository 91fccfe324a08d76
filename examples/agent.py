"""A three-turn conversation through the rag_rec LlamaIndex tool, as a chat assistant holds
it: each turn sends the person's words as they are, with the same user and session; the
tool reads them (filters, negations, "not that one") and says what it understood.

    uv run --extra cpu python examples/agent.py --user 42
    uv run --extra cpu python examples/agent.py "a 1990s comedy" "no Jim Carrey" "not that one"

The words go to the tool unchanged: its own parser turns them into constraints checked
against the knowledge graph, so a small model in the loop cannot misstate them.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

from rag_rec.api.llamaindex import recommend_tool
from rag_rec.recommender import Recommender
from rag_rec.settings import get_settings

TURNS = ("A 1990s comedy, nothing with Jim Carrey.", "More like the second one.",
         "Not that one.")


async def converse(user: str | None, turns: list[str], k: int) -> None:
    session = f"agent-{uuid.uuid4().hex[:8]}"
    with Recommender.from_settings(get_settings()) as recommender:
        tool = recommend_tool(recommender)
        for number, words in enumerate(turns, start=1):
            print(f"--- turn {number}: {words!r}")
            output = await tool.acall(text=words, user_id=user, session_id=session, k=k)
            print(output.content, end="\n\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("turns", nargs="*", help=f"what the person says (default: {TURNS})")
    parser.add_argument("--user", default=None, help="a known user id (default: a new user)")
    parser.add_argument("-k", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(converse(args.user, args.turns or list(TURNS), args.k))


if __name__ == "__main__":
    main()
