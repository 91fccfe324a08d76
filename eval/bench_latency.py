"""Serving latency: per-stage p50/p95 of `Recommender.recommend`, warm, and the CLI's wall
time from a cold process.

    uv run --extra cpu python -m eval.bench_latency [--users 200] [--explained 20]

Needs the full build (`rag-rec build`) and the graph holding it; the explained answers
need vLLM (`rag-rec llm serve`; skipped when it does not answer). Prints a table and
writes eval/results/latency.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

from eval.common import latency_summary, print_table, write_results
from rag_rec.recommender import Recommender
from rag_rec.settings import get_settings


def stages(results: list, wall: list[float]) -> dict[str, dict]:
    out = {"wall": latency_summary(wall)}
    for stage in sorted({s for r in results for s in r.timings_ms}):
        out[stage] = latency_summary([r.timings_ms[stage] / 1000 for r in results
                                      if stage in r.timings_ms])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=200, help="users answered without the LLM")
    ap.add_argument("--explained", type=int, default=20,
                    help="users answered with top-5 explanations (0: skip)")
    ap.add_argument("--cli-runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0,
                    help="which users; a new seed meets vLLM's prefix cache cold for them")
    args = ap.parse_args(argv)
    settings = get_settings()
    figures: dict = {"seed": args.seed}
    rng = np.random.default_rng(args.seed)
    with Recommender.from_settings(settings) as rec:
        users = [str(u) for u in rng.choice(rec.artifacts.ds.user_ids, args.users,
                                            replace=False)]
        rec.recommend(users[0], k=10, explain=False)  # warm: first query, caches
        results, wall = [], []
        for user in users:
            t0 = time.perf_counter()
            results.append(rec.recommend(user, k=10, explain=False))
            wall.append(time.perf_counter() - t0)
        figures["recommend_no_explain"] = stages(results, wall)
        llm_ok = rec.llm is not None and __import__("asyncio").run(rec.llm.health())
        if args.explained and llm_ok:
            results, wall = [], []
            for user in users[:args.explained]:
                t0 = time.perf_counter()
                results.append(rec.recommend(user, k=5, explain=True))
                wall.append(time.perf_counter() - t0)
            figures["recommend_top5_explained"] = stages(results, wall)
            figures["explained_degraded"] = sum(r.degraded for r in results)
            modes = [i.explanation.source for r in results for i in r.items if i.explanation]
            figures["explanation_modes"] = {m: modes.count(m) for m in sorted(set(modes))}
    cli = []
    for _ in range(args.cli_runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rag_rec.cli", "recommend", "--user", "42",
                        "--no-explain"], check=True, capture_output=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
        cli.append(time.perf_counter() - t0)
    figures["cli_recommend_no_explain_cold_process"] = latency_summary(cli)
    rows = [{"what": name, "stage": stage, **vals}
            for name, block in figures.items()
            if isinstance(block, dict) and ("wall" in block or "p50_ms" in block)
            for stage, vals in (block.items() if "wall" in block else [("wall", block)])]
    print_table("Serving latency (this machine)", rows)
    if "explanation_modes" in figures:
        print(f"explanations by source: {figures['explanation_modes']}")
    print(f"wrote {write_results('latency', figures)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
