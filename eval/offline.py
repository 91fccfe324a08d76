"""Offline evaluation: rag_rec beside tuned baselines and its own ablations, one protocol.

    uv run --extra cpu python -m eval.offline        # kfold0..4, loo (3 seeds), loo-cold
    uv run --extra cpu python -m eval.offline --splits kfold0 --seeds 42
    RAG_REC_DATA__SOURCE=data/goodbooks uv run --extra cpu python -m eval.offline --splits kfold0

In: the command line (splits, seeds, ablation splits, RecBole models), the settings and
the dataset. Out: finished (split, seed) parts in eval/results/parts/ (kept between runs;
`--fresh` redoes them), the figures in eval/results/offline_eval.json and the report in
eval/reports/offline_eval.md; for any dataset but MovieLens-100K, keyed by its name
(`results_for`: parts in eval/results/parts/NAME/, eval/results/offline_eval-NAME.json,
eval/reports/offline_eval-NAME.md), so one dataset's run never touches another's figures;
offline_eval.json's `other_datasets` indexes their headlines (`python -m eval.report`).
A split the dataset cannot support (leave-last-out without timestamps) is refused with
its reason, recorded under `refused` in the figures. This module is the runner; the
pieces live beside it:

- eval/protocol.py: the splits and the protocol every system is scored under (`Protocol`,
  `rank_rows`, `calibration`);
- eval/systems.py: the systems, rag_rec, its ablations and the baselines, built per split
  and seed (`split_settings`, `run_rag_rec`, `run_baselines`, `run_ablations`);
- eval/summary.py: the figures from the parts (`summarise`, `paired_bootstrap`,
  `keep_earlier`);
- eval/report.py: the markdown report and the README's table from the figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from eval.common import RESULTS, write_results
from eval.protocol import SPLITS, Protocol, rank_rows
from eval.report import main as refresh_index, write_report
from eval.summary import keep_earlier, paired_bootstrap, summarise
from eval.systems import run_ablations, run_baselines, run_rag_rec, split_settings
from rag_rec.data import SplitProtocol, load_dataset, make_split
from rag_rec.errors import RagRecError
from rag_rec.settings import get_settings

__all__ = ["PARTS", "Protocol", "_rank_rows", "keep_earlier", "main", "paired_bootstrap",
           "results_for", "split_settings"]

PARTS = RESULTS / "parts"
"""Finished (split, seed) parts: each system's metrics and per-user NDCG@10, committed
with the report, so a fresh clone can rebuild the report or rerun one system."""

_rank_rows = rank_rows
"""The name tests/test_recommender.py (and any caller from before the split into
protocol/systems/summary modules) imports the ranking under."""


def results_for(dataset_name: str) -> tuple[Path, str]:
    """(parts folder, results name) of a dataset's evaluation: MovieLens-100K's are
    `parts/` and `offline_eval` (the README's figures); any other dataset's sit beside
    them under its name (`parts/<name>/`, `offline_eval-<name>.json` and `.md`), since a
    part is keyed by split and seed only: without this, a run on another dataset would
    report MovieLens-100K's cached parts as its own and overwrite its figures."""
    if dataset_name == "ml-100k":
        return PARTS, "offline_eval"
    return PARTS / dataset_name, f"offline_eval-{dataset_name}"


def _cached(path: Path, fresh: bool, compute) -> dict:
    """A finished part from `path`, or computed and kept there."""
    if path.exists() and not fresh:
        return json.loads(path.read_text())
    value = compute()
    path.write_text(json.dumps(value))
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--splits", default=",".join(SPLITS),
                    help="comma-separated: loo, loo-cold, kfold0..kfold4")
    ap.add_argument("--seeds", default="42,43,44",
                    help="seeds for the leave-last-out splits (k-fold runs the first only)")
    ap.add_argument("--ablations", default="loo",
                    help="splits on which the scorer ablations run (first seed; each is "
                         "another scorer training)")
    ap.add_argument("--recbole", default="",
                    help="RecBole 1.2.0 models to add, e.g. BPR,LightGCN,CKE,KGIN")
    ap.add_argument("--fresh", action="store_true", help="recompute cached parts")
    ap.add_argument("--cached-only", action="store_true",
                    help="report the (split, seed) parts already computed, fit nothing new")
    ap.add_argument("--only-baselines", default="",
                    help="fit just these baselines into the parts (e.g. SASRec-CE,"
                         "SASRec-CE+crops on a GPU machine that lacks the rest of the "
                         "stack), no rag_rec, no report")
    args = ap.parse_args(argv)
    only = {m for m in args.only_baselines.split(",") if m} or None
    settings = get_settings()
    ds = load_dataset(settings.data, settings.home)
    parts, results_name = results_for(ds.name)
    seeds = [int(s) for s in args.seeds.split(",")]
    recbole = [m for m in args.recbole.split(",") if m]
    runs: dict[str, dict[int, dict]] = {}
    refused: dict[str, str] = {}
    for name in args.splits.split(","):
        try:
            split = make_split(ds, name, seed=settings.data.seed)
        except RagRecError as e:
            # e.g. leave-last-out on a dataset without timestamps: said, not faked.
            refused[name] = str(e)
            print(f"{name}: refused: {e}", flush=True)
            continue
        proto = Protocol.of(ds, split, settings.retrieval.head_mass)
        runs[name] = {}
        for seed in seeds[:1] if split.protocol is SplitProtocol.KFOLD else seeds:
            folder = parts / name
            path = folder / f"baselines-seed{seed}.json"
            if args.cached_only and not (path.exists()
                                         and (folder / f"rag_rec-seed{seed}.json").exists()):
                continue
            folder.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            if args.fresh:
                path.unlink(missing_ok=True)
            # One RecBole folder per seed: parallel runs never share files or checkpoints.
            # --cached-only fits nothing: a baseline added since a part was made (one not
            # run on every split, say) is left out of that part's report, not fit here.
            baselines = json.loads(path.read_text()) if args.cached_only else run_baselines(
                settings, ds, proto, seed, recbole,
                settings.home / "eval" / "recbole" / f"seed{seed}", path, only)
            if only:
                continue
            run = {"baselines": baselines,
                   "rag_rec": _cached(folder / f"rag_rec-seed{seed}.json", args.fresh,
                                      lambda: run_rag_rec(settings, proto, seed)),
                   "protocol": split.info | {"cold_users": len(proto.cold_rows)},
                   "users": len(proto.users),
                   "cold_index": np.flatnonzero(np.isin(np.flatnonzero(proto.test.any(1)),
                                                        proto.cold_rows)).tolist(),
                   "wall_s": round(time.perf_counter() - start, 1)}
            runs[name][seed] = run
            print(f"{name} seed {seed}: rag_rec ndcg@10 "
                  f"{run['rag_rec']['systems']['rag_rec']['all']['ndcg@10']:.4f}", flush=True)
        if not runs[name]:
            del runs[name]
            continue
        first = seeds[0]
        if name in args.ablations.split(",") and not (
                args.cached_only and not (parts / name /
                                          f"ablations-seed{first}.json").exists()):
            runs[name][first]["rag_rec"]["systems"].update(_cached(
                parts / name / f"ablations-seed{first}.json", args.fresh,
                lambda: run_ablations(settings, proto, first)))
    if only:
        return 0
    figures = summarise(runs) | {"dataset": ds.name}
    if refused:
        figures["refused"] = refused
    figures = keep_earlier(figures, RESULTS / f"{results_name}.json")
    earlier = RESULTS / f"{results_name}.json"
    if earlier.exists():  # a refusal stands until that split runs
        for split, why in json.loads(earlier.read_text()).get("refused", {}).items():
            if split not in figures["splits"]:
                figures.setdefault("refused", {}).setdefault(split, why)
    path = write_results(results_name, figures)
    report = write_report(figures, results_name)
    print(f"wrote {path} and {report}")
    # offline_eval.json indexes every dataset's headline, and the README's table shows it.
    return refresh_index([])


if __name__ == "__main__":
    raise SystemExit(main())
