"""LLM benchmark: rerank (label scoring) latency and throughput under concurrency.
Explanations have their own benchmark: eval/bench_explain.py.

    uv run --extra cpu python -m eval.bench_llm [--users 10] [--requests 16]

Uses the configured LLM (RAG_REC_LLM_URL, else the local vLLM server, started if needed)
and real users' KG-path candidates and facts from the graph. Prints a table and writes
eval/results/llm.json.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from eval.common import latency_summary, print_table, write_results
from rag_rec.data import load_dataset
from rag_rec.graph import GraphClient
from rag_rec.llm import make_backend, model_path, render
from rag_rec.rerank import LABELS, score_candidates
from rag_rec.settings import get_settings


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--requests", type=int, default=16,
                        help="requests per concurrency level in the throughput runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    s = get_settings()
    ds = load_dataset(s.data, s.home)
    backend = make_backend(s.llm, s.home)
    rng = random.Random(args.seed)
    users = rng.sample(ds.user_ids, args.users)
    with GraphClient(s.graph, s.home) as graph:
        cases = []
        for uid in users:
            rows = graph.query("kg_path_candidates", user_id=uid, max_entity_degree=200,
                               limit=50)
            history = [(ds.item(i.item_id), i.rating) for i in ds.history(uid)]
            cases.append((ds.user(uid), history, [ds.item(r["item_id"]) for r in rows]))

    rerank_lat: dict[int, list[float]] = {20: [], 50: []}
    for user, history, candidates in cases:
        for n in rerank_lat:
            start = time.perf_counter()
            result = await score_candidates(backend, s.llm, user, history, candidates[:n])
            rerank_lat[n].append(time.perf_counter() - start)
            if result.degraded:
                raise SystemExit(f"LLM unavailable: {result.error}")

    throughput = await measure_throughput(backend, s, cases, args.requests)
    figures = {
        "model": model_path(s.llm, s.home), "backend": backend.name,
        "rerank_permutations": s.llm.rerank_permutations, "rerank_window": s.llm.rerank_window,
        "latency": {f"rerank_{n}": latency_summary(v) for n, v in rerank_lat.items()},
        "throughput": throughput,
        "users": args.users,
    }
    print_table("latency (one user request)",
                [{"what": k, **v} for k, v in figures["latency"].items()])
    print_table("throughput", [{"request": k, **v} for k, v in throughput.items()])
    print(f"wrote {write_results('llm', figures)}")


async def measure_throughput(backend, s, cases, n_requests: int) -> dict[str, dict]:
    """Requests/s of single label-scoring calls (20 candidates, one forward pass) at
    concurrency 1/4/16 (vLLM batches concurrent requests)."""
    out: dict[str, dict] = {}
    for concurrency in (1, 4, 16):
        gate = asyncio.Semaphore(concurrency)

        async def label_call(k: int) -> None:
            user, history, candidates = cases[k % len(cases)]
            labels = LABELS[:20]
            messages = render("rerank", user=user, history=[], labels=labels, candidates=[
                {"label": lb, "title": c.title} for lb, c in zip(labels, candidates)])
            async with gate:
                await backend.choice_logprobs(messages, labels)

        start = time.perf_counter()
        await asyncio.gather(*(label_call(k) for k in range(n_requests)))
        elapsed = time.perf_counter() - start
        out.setdefault("label_scoring", {})[f"c{concurrency}_req_per_s"] = round(
            n_requests / elapsed, 2)
    return out


if __name__ == "__main__":
    asyncio.run(main())
