"""`rag-rec serve`, `mcp` and `eval`: the HTTP service, the MCP server and the evaluation
runner, each handing over to its own module."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from rag_rec.cli.app import app, handle_errors
from rag_rec.settings import get_settings


@app.command("serve")
@handle_errors
def serve(host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
          port: Annotated[int | None, typer.Option(help="Port.")] = None) -> None:
    """The HTTP service (FastAPI; OpenAPI docs at /docs)."""
    from rag_rec.api.http import serve as run

    s = get_settings()
    updates = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    run(s.model_copy(update={"api": s.api.model_copy(update=updates)}))


@app.command("eval", context_settings={"allow_extra_args": True,
                                        "ignore_unknown_options": True})
def evaluate(ctx: typer.Context,
             name: Annotated[str, typer.Argument(
                 help="offline (the evaluation against baselines), or a benchmark: graph, "
                      "kg, llm, explain, latency, load, like")]
             ) -> None:
    """Run the offline evaluation or a benchmark from eval/ (extra options pass through);
    each prints its figures and writes eval/results/NAME.json. The same as
    `python -m eval.offline` / `python -m eval.bench_NAME` from the repository root."""
    import subprocess

    from rag_rec.settings import PROJECT_ROOT

    folder = PROJECT_ROOT / "eval"
    module = "offline" if name == "offline" else f"bench_{name}"
    if not (folder / f"{module}.py").exists():
        valid = ["offline", *sorted(p.stem.removeprefix("bench_")
                                    for p in folder.glob("bench_*.py"))]
        raise typer.BadParameter(f"unknown benchmark {name!r}; valid: {', '.join(valid)}")
    # eval/ is a package beside rag_rec/, not installed with it: run it as a module from
    # the repository root, where `import eval` resolves.
    code = subprocess.call([sys.executable, "-m", f"eval.{module}", *ctx.args],
                           cwd=PROJECT_ROOT)
    raise typer.Exit(code)


@app.command("mcp")
@handle_errors
def mcp() -> None:
    """The MCP server on stdio (for desktop chat assistants)."""
    from rag_rec.api.mcp import main

    main()
