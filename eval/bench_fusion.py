"""The LLM rerank score fused into rag_rec's ranking: does it help? (the ranking ablation
"with the LLM rerank fused when vLLM runs").

    uv run --extra cpu rag-rec llm serve      # in another shell (or RAG_REC_LLM_URL)
    uv run --extra cpu python -m eval.bench_fusion [--split loo] [--seed 42] [--users 150]

A seeded sample of the split's test users is ranked by `Recommender.rank` on the split's
build (as eval/offline.py does: history = train + validation); the LLM scores each
user's top `llm.rerank_top` candidates (`rerank.score_candidates`, the serving code) and
the order of that top becomes scorer log-odds + w · LLM score, as `recommend` does with
`llm.fusion_weight` = w. NDCG@10 of the test items (rag_rec/metrics.py) for every w of a
grid; w is also chosen on one half of the users and measured on the other against w = 0
(paired bootstrap over users). An LLM call costs seconds per user on a CPU, hence the
sample. Writes eval/results/llm_fusion.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import numpy as np
from tqdm import tqdm

from eval.common import print_table, write_results
from eval.offline import Protocol, paired_bootstrap, split_settings
from rag_rec.build import build
from rag_rec.data import load_dataset, make_split
from rag_rec.metrics import ndcg_per_user
from rag_rec.models import User
from rag_rec.recommender import Recommender
from rag_rec.rerank import score_candidates
from rag_rec.settings import get_settings

WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)


async def llm_scores(rec: Recommender, proto: Protocol, rows: np.ndarray, ranked: list,
                     top: int) -> tuple[list[dict[str, float]], list[float], int]:
    """(per user: item -> LLM score, seconds per user, degraded calls)."""
    items = rec.artifacts.items
    out, seconds, degraded = [], [], 0
    for r, result in tqdm(list(zip(rows, ranked)), desc="LLM scores", unit="user"):
        history = [(items[i], rating) for i, rating in proto.queries[r].history if i in items]
        start = time.perf_counter()
        scored = await score_candidates(rec.llm, rec.settings.llm, User(id=proto.users[r]),
                                        history, [items[i] for i in result.items[:top]])
        seconds.append(time.perf_counter() - start)
        degraded += scored.degraded
        out.append(scored.scores)
    return out, seconds, degraded


def fused_rows(proto: Protocol, ranked: list, scores: list[dict[str, float]], top: int,
               weight: float) -> np.ndarray:
    """Full score rows: the LLM-scored top reordered by log-odds + weight · LLM score and
    kept above the rest of rag_rec's candidates, which keep their order."""
    fused = []
    for result, llm in zip(ranked, scores):
        score = result.scores.copy()
        head = result.items[:top]
        score[:len(head)] += 1e3 + weight * np.array([llm.get(i, 0.0) for i in head])
        fused.append(score)
    return proto.ranked_rows(ranked, fused)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default="loo")
    ap.add_argument("--seed", type=int, default=42, help="the split build's seed")
    ap.add_argument("--users", type=int, default=150, help="test users sampled")
    args = ap.parse_args(argv)
    settings = get_settings()
    ds = load_dataset(settings.data, settings.home)
    split = make_split(ds, args.split, seed=settings.data.seed)
    proto = Protocol.of(ds, split, settings.retrieval.head_mass)
    s = split_settings(settings, args.split, args.seed)
    # Offline, an answer may wait for the CPU model: no stage falls back on time.
    s = s.model_copy(update={"llm": s.llm.model_copy(update={"stage_budget_s": 600.0})})
    build(s, args.split, progress=False)
    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.choice(np.flatnonzero(proto.test.any(1)),
                              min(args.users, len(proto.users)), replace=False))
    top = s.llm.rerank_top
    start = time.perf_counter()
    with Recommender.from_settings(s, split=args.split) as rec:
        if rec.llm is None:
            raise SystemExit(f"no LLM: {rec.llm_error}; start it with `rag-rec llm serve`")
        ranked = rec.rank([proto.queries[r] for r in rows], [proto.users[r] for r in rows])
        scores, seconds, degraded = asyncio.run(llm_scores(rec, proto, rows, ranked, top))
        model = f"{rec.llm.name}: {s.llm.model or 'SmolLM2-135M-Instruct (default)'}"
    seen, test = proto.seen[rows], proto.test[rows]
    per_user = {w: ndcg_per_user(fused_rows(proto, ranked, scores, top, w), seen, test)
                for w in WEIGHTS}
    half = np.arange(len(rows)) % 2 == 0
    chosen = max(WEIGHTS, key=lambda w: per_user[w][half].mean())
    table = [{"w": w, "ndcg@10": round(float(v.mean()), 4),
              "vs w=0": paired_bootstrap(v, per_user[0.0])} for w, v in per_user.items()]
    figures = {
        "split": args.split, "seed": args.seed, "users": len(rows), "model": model,
        "rerank_top": top, "permutations": s.llm.rerank_permutations,
        "degraded_calls": int(degraded),
        "llm_seconds_per_user": {"p50": round(float(np.median(seconds)), 2),
                                 "mean": round(float(np.mean(seconds)), 2)},
        "grid": table,
        "tuned": {"w": chosen, "chosen_on": "even-numbered sampled users",
                  "measured_on": "odd-numbered sampled users",
                  "vs w=0": paired_bootstrap(per_user[chosen][~half], per_user[0.0][~half])},
        "wall_s": round(time.perf_counter() - start, 1),
        "command": "uv run --extra cpu python -m eval.bench_fusion " + " ".join(
            sys.argv[1:] if argv is None else argv),
    }
    print_table(f"LLM score fused into rag_rec ({args.split}, {len(rows)} users, {model})",
                [{"w": r["w"], "ndcg@10": r["ndcg@10"], "diff vs w=0": r["vs w=0"]["diff"],
                  "95% CI": r["vs w=0"]["ci95"]} for r in table])
    print(f"w chosen on half the users: {chosen}; on the other half vs w=0: "
          f"{figures['tuned']['vs w=0']}")
    print(f"wrote {write_results('llm_fusion', figures)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
