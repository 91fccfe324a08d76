"""The `rag-rec` command. Adapters only: each command calls the library and prints.

Typed errors become one readable line on stderr and a non-zero exit code. Library logs
and warnings go to `<home>/logs/rag-rec.log` (rag_rec/logs.py); `-v` shows them too.

Imports are lazy: this package loads typer, rich and the settings only, and each command
imports what it needs, so `rag-rec --help` and the light commands never pay for torch,
vLLM or PyKEEN.

`app.py` holds the Typer `app`, the shared options and helpers; the commands live in
`prepare.py` (data, graph, llm, build, train-scorer), `recommend.py` (recommend, search,
similar) and `services.py` (serve, eval, mcp). Importing them registers their commands,
in the order `rag-rec --help` lists them.
"""

from rag_rec.cli import prepare, recommend, services
from rag_rec.cli.app import app

__all__ = ["app", "prepare", "recommend", "services"]
