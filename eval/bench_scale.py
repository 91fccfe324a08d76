"""How the build and serving scale: per-step build time and memory, artifact size and
recommend latency against interactions and items; EASE against its neighbours fallback.

    python -m eval.bench_scale --dataset tests/data/tiny --dataset ~/ml-1m
    python -m eval.bench_scale --dataset ~/ml-1m --sample-users 600 --quick
    python -m eval.bench_scale --synthetic-users 6040 --synthetic-items 3706 \\
        --synthetic-interactions 1000000 --steps sources

`--reuse-home DIR` builds in DIR instead and keeps it (a finished build is only timed
again: recommend latency after a serving change). `--steps all` (default) builds each dataset (a MovieLens folder or any format
`rag_rec.data` reads) from scratch in a fresh home, in its own process so its peak
memory is its own, without the graph (no Neo4j), then serves it with the in-memory graph
and no LLM and times `recommend(explain=False)`. `--quick` cuts every training short
(the tiny test build's settings): the times are then of the data path, not of full
training. `--sample-users N` also runs each dataset on N of its users (seeded), items
cut to those they rated. `--steps sources` fits only the item-item source on the
interactions: EASE's dense solve and the BM25 neighbours that replace it past
`sources.ease.max_items`, each in its own process. `--synthetic-*` makes a seeded,
popularity-skewed interaction set of that shape (ML-1M: 6,040 x 3,706 x 1,000,209).

Writes eval/results/scale.json (or `--name`), eval/reports/scale.png when matplotlib is
installed, and prints a table. docs/scale.md reads them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from eval.common import (RESULTS, latency_summary, print_table, settings_from_env,
                         write_results)
from eval.scale_data import sample_users, synthetic
from rag_rec.steps import TIMINGS, peak_rss_mb

REPORTS = Path(__file__).resolve().parent / "reports"
QUICK = {"embed": {"kg_epochs": 3, "kg_eval_triples": 50},
         "sources": {"sasrec": {"epochs": 2, "members": 1}},
         "scorer": {"epochs": 2}, "like": {"epochs": 2}}
"""`--quick`: the tiny test build's cut-short training (tests/conftest.py)."""


# --------------------------------------------------------------------------- children


def child_build(source: str, quick: bool, n_queries: int, seed: int,
                reuse: str | None = None) -> dict:
    """Build `source` from scratch in a fresh home (or finish the build in `reuse`, kept
    after: its steps' times are those it recorded), then time recommend without
    explanations (in-memory graph, no LLM)."""
    from rag_rec import like
    from rag_rec.build import build, load_ranker
    from rag_rec.memory_graph import InMemoryGraph
    from rag_rec.recommender import Recommender
    from rag_rec.settings import Settings

    home = Path(reuse) if reuse else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        settings = Settings(home=home, data={"source": source}, **(QUICK if quick else {}))
        builds = home / "builds" / "full"
        # A reused build's steps as it recorded them: a cached step re-times its loading.
        before = (json.loads((builds / TIMINGS).read_text())
                  if (builds / TIMINGS).exists() else {})
        start = time.perf_counter()
        artifacts = build(settings, None, progress=False, ingest=False)
        total = time.perf_counter() - start
        steps = json.loads((builds / TIMINGS).read_text()) | before
        size = sum(f.stat().st_size for f in builds.rglob("*") if f.is_file())
        ds = artifacts.ds
        graph = InMemoryGraph(ds)
        rng = np.random.default_rng(seed)
        users = [str(u) for u in rng.choice(ds.user_ids, min(n_queries, len(ds.user_ids)),
                                            replace=False)]
        with Recommender(settings, artifacts, load_ranker(settings, artifacts),
                         like.load_built(artifacts), connect_graph=lambda: graph, llm=None,
                         llm_error="no LLM in the scale benchmark") as rec:
            rec.recommend(users[0], k=10, explain=False)  # warm caches
            wall = []
            for user in users:
                t0 = time.perf_counter()
                rec.recommend(user, k=10, explain=False)
                wall.append(time.perf_counter() - t0)
        stats = ds.stats()
        peak = peak_rss_mb()
        if before:  # the build ran before: its total and peak are what its steps recorded
            total = sum(step["seconds"] for step in steps.values())
            peak = max(step["peak_rss_mb"] for step in steps.values())
        return {"users": stats["users"], "items": stats["items"],
                "interactions": stats["interactions"], "build_seconds": round(total, 1),
                "steps": {k: {"seconds": round(v["seconds"], 2), "peak_rss_mb": v["peak_rss_mb"],
                              "peak_rss_rise_mb": v["peak_rss_rise_mb"]}
                          for k, v in steps.items()},
                "peak_rss_mb": peak, "artifact_mb": round(size / 2**20, 1),
                "recommend_no_explain": latency_summary(wall)}
    finally:
        if not reuse:
            shutil.rmtree(home, ignore_errors=True)


def child_sources(source: str | None, shape: list[int] | None, model: str, seed: int,
                  n_queries: int) -> dict:
    """Fit the item-item source alone (`ease`: dense; `fallback`: BM25 neighbours) on
    all but each user's latest interaction, score `n_queries` users' histories in
    batches of 100, and rank each user's latest item among all they have not seen
    (NDCG@10; on synthetic data only a sanity check: its order is random)."""
    from rag_rec.settings import EaseSettings
    from rag_rec.sources import EASE, Catalogue, Query, histories_of, tuning_ndcg

    if shape:
        inter = synthetic(*shape, seed=seed)
    else:
        from rag_rec.data import load_dataset
        from rag_rec.settings import DataSettings

        inter = load_dataset(DataSettings(source=source), Path(tempfile.gettempdir())
                             ).interactions
    items = sorted(set(inter.item_id))
    # One L2 (the grid's middle): the benchmark times one solve, not the grid search.
    settings = EaseSettings(l2=(500.0,), max_items=len(items) if model == "ease" else 1)
    source_ = EASE(Catalogue(item_ids=items), settings)
    latest = inter.sort_values(["user_id", "timestamp"]).groupby("user_id").tail(1)
    train = inter.drop(latest.index)
    before = reset_peak_mb()
    t0 = time.perf_counter()
    report = source_.fit(train, None)
    fit_s = time.perf_counter() - t0
    fit_peak = high_water_mb() or peak_rss_mb()
    by_user = histories_of(train)
    histories = list(by_user.values())
    rng = np.random.default_rng(seed)
    chosen = [histories[i] for i in rng.choice(len(histories), min(n_queries, len(histories)),
                                                replace=False)]
    per_query = []
    for start in range(0, len(chosen), 100):
        t1, batch = time.perf_counter(), [Query(h) for h in chosen[start:start + 100]]
        source_.scores(batch)
        per_query.append((time.perf_counter() - t1) / len(batch))
    w = source_.item_weights
    nbytes = w.data.nbytes + w.indices.nbytes + w.indptr.nbytes if hasattr(w, "indptr") \
        else w.nbytes
    return {"users": int(inter.user_id.nunique()), "items": len(items),
            "interactions": len(inter), "model": model,
            "fallback": report.get("fallback"), "fit_seconds": round(fit_s, 2),
            "peak_rss_mb": fit_peak, "fit_peak_rise_mb": round(fit_peak - before, 1),
            "weights_mb": round(nbytes / 2**20, 1),
            "score_ms_per_query": round(1000 * float(np.mean(per_query)), 3),
            "latest_item_ndcg@10": round(tuning_ndcg(source_, by_user, latest,
                                                     source_.column), 4)}


def high_water_mb() -> float | None:
    """Peak RSS since the last `reset_peak_mb` (Linux's VmHWM), None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def reset_peak_mb() -> float:
    """Reset Linux's peak-RSS mark to the current RSS (so a fit's peak is its own, not the
    data generation's before it) and return it; elsewhere the process peak so far."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return peak_rss_mb()
    return high_water_mb() or peak_rss_mb()


def run_child(job: dict) -> dict:
    """`job` in a fresh process (its peak memory its own); its result, or its error."""
    proc = subprocess.run([sys.executable, "-m", "eval.bench_scale", "--child", json.dumps(job)],
                          capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        return {**job, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return {**job, **json.loads(lines[-1])}


# --------------------------------------------------------------------------- report


def plot(results: list[dict], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no plot"
    builds = sorted((r for r in results if r["job"] == "build" and "error" not in r),
                    key=lambda r: r["interactions"])
    fits = [r for r in results if r["job"] == "sources" and "error" not in r]
    if not builds and not fits:
        return "nothing to plot"
    fig, panels = plt.subplots(1, bool(builds) + bool(fits), figsize=(
        6 * (bool(builds) + bool(fits)), 4.5), squeeze=False)
    axes = {0: panels[0][0], 1: panels[0][-1]}
    if builds:
        steps = sorted({s for r in builds for s in r["steps"]})
        bottom = np.zeros(len(builds))
        x = np.arange(len(builds))
        for step in steps:
            secs = np.array([r["steps"].get(step, {}).get("seconds", 0.0) for r in builds])
            axes[0].bar(x, secs, bottom=bottom, label=step)
            bottom += secs
        # Builds timed before the blend step was: its time is outside every step.
        rest = np.array([r["build_seconds"] for r in builds]) - bottom
        axes[0].bar(x, np.clip(rest, 0, None), bottom=bottom, label="outside the steps",
                    color="lightgrey", hatch="//")
        axes[0].set_xticks(x, [f"{r['interactions']:,} int.\n{r['items']:,} items\n"
                               + ("--quick" if r.get("quick") else "full training")
                               for r in builds], fontsize=8)
        axes[0].set_ylabel("build seconds")
        axes[0].set_title("Build time per step")
        axes[0].legend(fontsize=7)
    for model, marker in (("ease", "o"), ("fallback", "s")) if fits else ():
        rows = sorted((r for r in fits if r["model"] == model), key=lambda r: r["items"])
        if rows:
            axes[1].plot([r["items"] for r in rows], [r["fit_seconds"] for r in rows],
                         marker=marker, label=f"{model} fit s")
            axes[1].plot([r["items"] for r in rows], [r["peak_rss_mb"] / 1000 for r in rows],
                         marker=marker, linestyle="--", label=f"{model} process peak GB")
    if fits:
        axes[1].set_xlabel("items")
        axes[1].set_title("Item-item source: EASE vs BM25 neighbours")
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", action="append", default=[], type=Path,
                    help="a dataset folder (repeatable)")
    ap.add_argument("--sample-users", action="append", default=[], type=int,
                    help="also run each dataset on this many of its users (repeatable)")
    ap.add_argument("--samples-only", action="store_true",
                    help="run only the --sample-users cuts, not the whole datasets")
    for what in ("users", "items", "interactions"):
        ap.add_argument(f"--synthetic-{what}", type=int, action="append", default=[],
                        help="a synthetic shape (repeatable: the n-th of each go together)")
    ap.add_argument("--steps", choices=["all", "sources"], default="all")
    ap.add_argument("--models", default="ease,fallback",
                    help="--steps sources: which item-item models to fit")
    ap.add_argument("--quick", action="store_true", help="cut every training short")
    ap.add_argument("--reuse-home", type=Path,
                    help="build in this home (finished steps are kept and skipped) instead "
                         "of a fresh one; its timings.json gives the steps' times")
    ap.add_argument("--queries", type=int, default=100, help="recommend calls timed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="scale", help="results file eval/results/NAME.json")
    ap.add_argument("--combine", nargs="+", metavar="NAME",
                    help="no runs: merge eval/results/NAME.json files into --name and plot")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.combine:
        parts = [json.loads((RESULTS / f"{n}.json").read_text()) for n in args.combine]
        runs = [run for part in parts for run in part["runs"]]
        note = plot(runs, REPORTS / f"{args.name}.png")
        path = write_results(args.name, {"commands": [p["command"] for p in parts],
                                         "combined": args.combine, "plot": note,
                                         "runs": runs})
        print(f"wrote {path}; plot: {note}")
        return 0
    if args.child:
        job = json.loads(args.child)
        if job["job"] == "build":
            out = child_build(job["source"], job["quick"], job["queries"], job["seed"],
                              job.get("reuse_home"))
        else:
            out = child_sources(job.get("source"), job.get("shape"), job["model"],
                                job["seed"], job["queries"])
        print(json.dumps(out))
        return 0

    sizes = (args.synthetic_users, args.synthetic_items, args.synthetic_interactions)
    if len({len(s) for s in sizes}) > 1:
        ap.error("--synthetic-users, --synthetic-items and --synthetic-interactions go together")
    shapes = [list(shape) for shape in zip(*sizes)]
    if not args.dataset and not shapes:
        ap.error("give --dataset PATH or the three --synthetic-* sizes")
    if shapes and args.steps != "sources":
        ap.error("synthetic data has no titles or KG: measure it with --steps sources")
    overrides = settings_from_env()
    scratch = Path(tempfile.mkdtemp(prefix="bench-scale-data-"))
    try:
        sources: list[dict] = [] if args.samples_only else [
            {"source": str(d.resolve()), "label": str(d)} for d in args.dataset]
        for d in args.dataset:
            for n in args.sample_users:
                sample = sample_users(d, n, args.seed, scratch)
                if sample is not None:
                    sources.append({"source": str(sample), "label": f"{d} ({n} users)"})
        jobs = []
        for s in sources:
            if args.steps == "all":
                jobs.append({"job": "build", **s, "quick": args.quick,
                             "queries": args.queries, "seed": args.seed,
                             "settings_from_env": overrides,
                             "reuse_home": str(args.reuse_home) if args.reuse_home else None})
            else:
                jobs += [{"job": "sources", **s, "model": m, "seed": args.seed,
                          "queries": args.queries} for m in args.models.split(",")]
        for shape in shapes:
            label = "synthetic {:,} x {:,} x {:,}".format(*shape)
            jobs += [{"job": "sources", "label": label, "shape": shape, "model": m,
                      "seed": args.seed, "queries": args.queries}
                     for m in args.models.split(",")]
        results = []
        for job in jobs:
            print(f"running {job['job']} on {job['label']}"
                  + (f" ({job['model']})" if "model" in job else ""), flush=True)
            results.append(run_child(job))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for r in results:
        r.pop("source", None)  # a temporary path
    print_summary(results)
    note = plot(results, REPORTS / f"{args.name}.png")
    path = write_results(args.name, {"command": " ".join(sys.argv[1:] if argv is None
                                                           else argv),
                                     "plot": note, "runs": results})
    print(f"wrote {path}; plot: {note}")
    return 0


def print_summary(results: list[dict]) -> None:
    rows = []
    for r in results:
        row = {"run": r["label"], "job": r["job"] + (f"/{r['model']}" if "model" in r else ""),
               "users x items x interactions": "{} x {} x {}".format(
                   *(r.get(k, "-") for k in ("users", "items", "interactions")))}
        if "error" in r:
            row.update({"seconds": "error", "peak MB": "", "MB": "", "latency": r["error"]})
        elif r["job"] == "build":
            lat = r["recommend_no_explain"]
            row.update({"seconds": r["build_seconds"], "peak MB": round(r["peak_rss_mb"]),
                        "MB": f"{r['artifact_mb']} on disk",
                        "latency": f"p50 {lat['p50_ms']} / p95 {lat['p95_ms']} ms"})
        else:
            row.update({"seconds": r["fit_seconds"],
                        "peak MB": f"{r['peak_rss_mb']:.0f} (+{r['fit_peak_rise_mb']:.0f})",
                        "MB": f"{r['weights_mb']} weights",
                        "latency": f"{r['score_ms_per_query']} ms/query, NDCG@10 "
                                   f"{r['latest_item_ndcg@10']}"})
        rows.append(row)
    print_table("Scale", rows)
    for r in results:
        if r["job"] == "build" and "error" not in r:
            print_table(f"Build steps: {r['label']}", [
                {"step": k, "seconds": v["seconds"], "peak RSS MB": v["peak_rss_mb"],
                 "raised the peak by MB": v["peak_rss_rise_mb"]}
                for k, v in sorted(r["steps"].items(), key=lambda kv: -kv[1]["seconds"])])


if __name__ == "__main__":
    raise SystemExit(main())
