"""Graph benchmark: ingest throughput and named-query latency over Bolt.

    uv run python -m eval.bench_graph [--users 200] [--port 7701]

Starts a throwaway bundled Neo4j (fresh store in a temporary folder, its own port) so the
cold ingest is measured on an empty database and the user's graph is left alone; then
re-ingests (the idempotent path), times every named read query for random users, prints a
table and writes eval/results/graph.json. With NEO4J_URI set, that server is used instead
(its graph is re-ingested with the full dataset).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from eval.common import latency_summary, print_table, write_results
from rag_rec.data import load_dataset
from rag_rec.graph import BundledNeo4j, GraphClient
from rag_rec.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--port", type=int, default=7701)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    settings = get_settings()
    ds = load_dataset(settings.data, settings.home)
    with tempfile.TemporaryDirectory(prefix="rag_rec_bench_") as tmp:
        graph_settings = settings.graph.model_copy(update={"bolt_port": args.port})
        server = None if settings.graph.uri else BundledNeo4j(graph_settings, Path(tmp))
        try:
            if server is not None:
                t0 = time.perf_counter()
                server.start()
                startup_s = time.perf_counter() - t0
            with GraphClient(graph_settings, Path(tmp)) as graph:
                cold = graph.ingest(ds)
                warm = graph.ingest(ds, progress=False)
                latencies = time_queries(graph, ds, args.users, args.seed)
        finally:
            if server is not None:
                server.stop()

    def throughput(report) -> dict[str, float]:
        return {"interactions_per_s": round(report.interactions / report.seconds["interactions"]),
                "triples_per_s": round(report.triples / report.seconds["triples"]),
                "total_s": round(sum(report.seconds.values()), 2)}

    figures = {
        "dataset": ds.stats(),
        "server": "bundled" if server is not None else settings.graph.uri,
        "startup_s": round(startup_s, 2) if server is not None else None,
        "batch_size": settings.graph.batch_size,
        "ingest": {"cold": throughput(cold), "rerun": throughput(warm)},
        "queries": latencies,
        "users_sampled": args.users,
    }
    print_table("ingest", [{"run": k, **v} for k, v in figures["ingest"].items()])
    print_table(f"named queries over Bolt, {args.users} random users",
                [{"query": k, **v} for k, v in latencies.items()])
    print(f"wrote {write_results('graph', figures)}")


def time_queries(graph: GraphClient, ds, n_users: int, seed: int) -> dict[str, dict]:
    rng = random.Random(seed)
    users = rng.sample(ds.user_ids, min(n_users, len(ds.user_ids)))
    timings: dict[str, list[float]] = {}

    def timed(name: str, fn):
        start = time.perf_counter()
        result = fn()
        timings.setdefault(name, []).append(time.perf_counter() - start)
        return result

    for user in users:
        history = timed("user_history", lambda: graph.user_history(user))
        kg = timed("kg_path_candidates", lambda: graph.query(
            "kg_path_candidates", user_id=user, max_entity_degree=200, limit=100))
        ratings = {h["item_id"]: h["rating"] for h in history}
        timed("candidate_facts", lambda: graph.candidate_facts(
            [row["item_id"] for row in kg[:20]], ratings))
    return {name: latency_summary(values) for name, values in timings.items()}


if __name__ == "__main__":
    main()
