"""Retrieval benchmark: candidate recall on the leave-last-out validation items, per
source and for the union, overall and on cold and long-tail slices; build times; latency.

    uv run --extra cpu python eval/bench_retrieval.py [--users 943] [--cold-users 200]
    RAG_REC_EMBED__TEXT_ENCODER=smollm2 uv run --extra cpu python eval/bench_retrieval.py \
        --name retrieval_smollm2      # the LLM's hidden states as the text encoder

Builds the `loo` split (the graph then holds only train ratings, and PyKEEN sees only
train interactions, so validation items cannot leak), then for each user asks: is the
held-out validation item among the candidates? Cold slice: users cut down to their first
5 train ratings and served by the cold-start path. Long-tail slice: users whose held-out
item is outside the head (the most popular items that make up half the train ratings).
Prints tables and writes eval/results/retrieval.json. The graph is left on the `loo`
split; `rag-rec build` switches it back.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eval.common import latency_summary, print_table, write_results  # noqa: E402
from rag_rec.build import build  # noqa: E402
from rag_rec.graph import GraphClient  # noqa: E402
from rag_rec.retrieve import CandidateGenerator  # noqa: E402
from rag_rec.settings import get_settings  # noqa: E402

KS = (50, 100, 200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=943)
    parser.add_argument("--cold-users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="retrieval",
                        help="results file name (e.g. retrieval_smollm2 with "
                             "RAG_REC_EMBED__TEXT_ENCODER=smollm2)")
    args = parser.parse_args()
    s = get_settings()

    start = time.perf_counter()
    artifacts = build(s, "loo")
    build_s = time.perf_counter() - start
    split = artifacts.split
    target = dict(zip(split.valid.user_id, split.valid.item_id))
    rng = random.Random(args.seed)
    users = sorted(target)
    users = rng.sample(users, min(args.users, len(users)))

    hits = {name: {k: [] for k in KS} for name in ("faiss", "kg_path", "collaborative", "union")}
    tail_hits = {k: [] for k in KS}
    latencies = []
    with GraphClient(s.graph, s.home) as graph:
        gen = CandidateGenerator(artifacts, graph, s)
        for user in users:
            goal = target[user]
            history, lists = gen.user_sources(user, max(KS))
            seen = {i for i, _ in history}
            for k in KS:
                for name, ranked in lists.items():
                    hits[name][k].append(goal in {i for i, _ in ranked[:k]})
                union = gen.merge({n: r[:k] for n, r in lists.items()}, seen, k)
                found = goal in {c.item.id for c in union}
                hits["union"][k].append(found)
                if gen.is_tail(goal):
                    tail_hits[k].append(found)
        for user in users[:200]:
            t0 = time.perf_counter()
            gen.for_user(user)
            latencies.append(time.perf_counter() - t0)
        cold_hits = {k: [] for k in KS}
        train = split.train.sort_values(["timestamp", "item_id"])
        first5 = train.groupby("user_id").head(5).groupby("user_id").item_id.apply(list)
        cold_latencies = []
        for user in users[:args.cold_users]:
            for k in KS:
                t0 = time.perf_counter()
                res = gen.for_new_user(first5[user], budget=k)
                if k == 100:
                    cold_latencies.append(time.perf_counter() - t0)
                cold_hits[k].append(target[user] in {c.item.id for c in res.candidates})

    def rate(values: list[bool]) -> float:
        return round(sum(values) / len(values), 4) if values else float("nan")

    recall = {name: {f"recall@{k}": rate(v[k]) for k in KS} for name, v in hits.items()}
    figures = {
        "split": "loo (validation item per user)", "users": len(users),
        "budget_default": s.retrieval.budget, "text_encoder": s.embed.text_encoder,
        "kg": artifacts.kg.report,
        "recall": recall,
        "slices": {
            "long_tail": {"users": len(tail_hits[100]),
                          **{f"recall@{k}": rate(tail_hits[k]) for k in KS}},
            "cold_first5": {"users": len(cold_hits[100]),
                            **{f"recall@{k}": rate(cold_hits[k]) for k in KS}},
        },
        "build_seconds": round(build_s, 1),
        "latency": {"for_user_budget100": latency_summary(latencies),
                    "cold_user_budget100": latency_summary(cold_latencies)},
    }
    print_table("candidate recall (validation item among candidates)",
                [{"source": n, **v} for n, v in recall.items()]
                + [{"source": f"union, {n} slice", **{k: v[k] for k in v if k != 'users'}}
                   for n, v in figures["slices"].items()])
    print_table("latency", [{"what": k, **v} for k, v in figures["latency"].items()])
    print(f"build {build_s:.1f}s; KG {artifacts.kg.report['model']} MRR "
          f"{artifacts.kg.report['mrr']} Hits@10 {artifacts.kg.report['hits_at_10']} "
          f"({artifacts.kg.report['train_seconds']}s)")
    print(f"wrote {write_results(args.name, figures)}")


if __name__ == "__main__":
    main()
