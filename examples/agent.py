"""A minimal tool-using agent: the local LLM (served by vLLM) turns a chat request into a
call of the rag_rec LlamaIndex tool, and the tool's answer is shown.

    uv run --extra cpu python examples/agent.py "I loved Blade Runner and Alien, what next?"

The model fills the tool's arguments as JSON constrained by the tool's own schema (vLLM
structured outputs), so even a 135M model produces a valid call; a larger model
(`RAG_REC_LLM__MODEL`) picks better arguments.
"""

from __future__ import annotations

import asyncio
import json
import sys

from rag_rec.api.llamaindex import recommend_tool
from rag_rec.llm import make_backend
from rag_rec.recommender import Recommender
from rag_rec.settings import get_settings

SYSTEM = ("You call a movie recommendation tool. Fill its arguments from the user's message: "
          "`text` describes their taste in their own words; `k` is how many movies they want.")


async def main(message: str) -> None:
    settings = get_settings()
    recommender = Recommender.from_settings(settings)
    tool = recommend_tool(recommender)
    llm = make_backend(settings.llm, settings.home)
    schema = tool.metadata.get_parameters_dict()
    reply = await llm.generate_json(
        [{"role": "system", "content": SYSTEM},
         {"role": "user", "content": f"Tool: {tool.metadata.description}\n"
                                     f"User message: {json.dumps(message)}"}],
        schema, max_tokens=128)
    arguments = {k: v for k, v in json.loads(reply.text).items() if v not in (None, [], "")}
    # A small model invents ids: keep only those the message really contains.
    if str(arguments.get("user_id")) not in message:
        arguments.pop("user_id", None)
    arguments["liked_item_ids"] = [i for i in arguments.get("liked_item_ids", [])
                                   if str(i) in message]
    arguments.setdefault("text", message)
    print(f"tool call: {tool.metadata.name}({json.dumps(arguments)})\n")
    output = await tool.acall(**arguments)
    print(output.content)
    recommender.close()


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or "Something like Blade Runner, please."))
