"""Load test of the HTTP service on loopback: p50/p95/p99 latency and requests/s at
concurrency 1/8/32, with the LLM, without it, and with vLLM stopped (degraded mode).

    uv run --extra cpu python -m eval.bench_load [--requests 32]

Starts the service three times (127.0.0.1 only, a random port each): as configured (LLM
rerank + explanations), with `RAG_REC_API__USE_LLM=false`, and with `RAG_REC_LLM_URL`
pointing at a port where nothing listens (what the service sees when vLLM is stopped).
Each level sends a bounded number of requests for random real users. Prints a table and
writes eval/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from eval.common import print_table, write_results
from rag_rec.settings import PROJECT_ROOT

TOKEN = "bench-token"
MODES = {
    "llm": {},
    "no_llm": {"RAG_REC_API__USE_LLM": "false"},
    "vllm_stopped": {"RAG_REC_LLM_URL": "http://127.0.0.1:9/v1"},
}


def start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "rag_rec.cli", "serve", "--port", str(port)],
                            env={**os.environ, "RAG_REC_API__TOKEN": TOKEN, **env},
                            cwd=PROJECT_ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if httpx.get(f"{url}/healthz", timeout=60).status_code in (200, 503):
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"service did not start: {log.read_text()[-2000:]}")


async def level(url: str, users: list[str], concurrency: int, n: int, k: int) -> dict:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(timeout=600, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        async def one(i: int) -> None:
            nonlocal errors
            async with gate:
                t0 = time.perf_counter()
                r = await c.post(f"{url}/v1/recommendations",
                                 json={"user_id": users[i % len(users)], "k": k})
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200
        start_t = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - start_t
    ms = sorted(x * 1000 for x in latencies)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(p * len(ms)))], 1)

    return {"requests": n, "errors": errors, "p50_ms": pct(0.5), "p95_ms": pct(0.95),
            "p99_ms": pct(0.99), "req_per_s": round(n / wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32,
                        help="requests per level without the LLM")
    parser.add_argument("--llm-requests", type=int, default=8,
                        help="requests per level with the LLM (at least the concurrency): "
                             "each costs seconds of CPU inference")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    users = [str(u) for u in random.Random(args.seed).sample(range(1, 944), 64)]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, env in MODES.items():
            proc, url = start(env, Path(tmp) / f"{mode}.log")
            try:
                asyncio.run(level(url, users, 1, 2, args.k))  # warm-up, not counted
                for c in (1, 8, 32):
                    n = max(c, args.llm_requests) if mode == "llm" else args.requests
                    results.setdefault(mode, {})[f"c{c}"] = asyncio.run(
                        level(url, users, c, n, args.k))
            finally:
                proc.terminate()
                proc.wait(timeout=60)
    rows = [{"mode": m, "concurrency": c, **v} for m, lv in results.items() for c, v in lv.items()]
    print_table(f"HTTP load, POST /v1/recommendations (k={args.k})", rows)
    print(f"wrote {write_results('load', {'k': args.k, 'results': results})}")


if __name__ == "__main__":
    main()
