"""The offline evaluation's figures from its finished parts.

In: the parts, per split and seed (`{"baselines": ..., "rag_rec": ...}`, as eval/offline.py
runs or reads them). Out: the figures written to eval/results/offline_eval.json: every
metric's mean (and std over seeds / folds), paired bootstrap 95% intervals of rag_rec
minus the best baseline and minus its best source alone (NDCG@10, users resampled), each
source's and the union's recall of the test items at the candidate budget (the ceiling the
scorer works under), calibration of `p_next` on the test candidate lists (ECE, Brier
skill, log-loss against the base rate), wall times; `keep_earlier` carries over the
splits a run did not measure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from eval.protocol import SPLITS
from rag_rec.data import SplitProtocol, split_protocol

BOOTSTRAP = 2000
"""Resamples of the users behind each paired interval."""


def paired_bootstrap(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict:
    """Mean of a - b over users with a 95% interval (users resampled with replacement)."""
    rng = np.random.default_rng(seed)
    diff = a - b
    means = np.array([diff[rng.integers(0, len(diff), len(diff))].mean()
                      for _ in range(BOOTSTRAP)])
    return {"diff": round(float(diff.mean()), 5),
            "ci95": [round(float(v), 5) for v in np.percentile(means, [2.5, 97.5])],
            "ratio": round(float(a.mean() / b.mean()), 4) if b.mean() else None}


def summarise(runs: dict[str, dict[int, dict]]) -> dict:
    """Per split: each system's metrics averaged over seeds (with std), rag_rec against the
    best baseline with a paired interval; across the k-fold splits: mean ± std over
    folds and a pooled interval."""
    out: dict = {"splits": {}}
    pooled: dict[str, list[np.ndarray]] = {}
    for split, seeds in runs.items():
        systems: dict[str, dict] = {}
        per_user: dict[str, list[np.ndarray]] = {}
        baselines = set()
        for run in seeds.values():
            baselines |= set(run["baselines"])
            for name, r in {**run["baselines"], **run["rag_rec"]["systems"]}.items():
                systems.setdefault(name, {"runs": []})["runs"].append(r["all"])
                per_user.setdefault(name, []).append(np.array(r["ndcg_per_user"]))
                if "cold_users" in r:
                    systems[name].setdefault("cold_runs", []).append(r["cold_users"])
        table = {}
        for name, r in systems.items():
            keys = r["runs"][0]
            table[name] = {k: round(float(np.mean([x[k] for x in r["runs"]])), 4) for k in keys}
            table[name]["ndcg@10_std"] = round(float(np.std([x["ndcg@10"] for x in r["runs"]])), 4)
            table[name]["seeds"] = len(r["runs"])
            if "cold_runs" in r:
                table[name]["cold_ndcg@10"] = round(float(np.mean(
                    [x["ndcg@10"] for x in r["cold_runs"]])), 4)
        mean_user = {n: np.mean(v, axis=0) for n, v in per_user.items()}
        best = max(baselines, key=lambda n: table[n]["ndcg@10"])
        first = next(iter(seeds.values()))
        entry = {"systems": table, "best_baseline": best,
                 "rag_rec_vs_best": paired_bootstrap(mean_user["rag_rec"], mean_user[best]),
                 "recall_ceiling": first["rag_rec"]["recall_ceiling"],
                 "calibration": first["rag_rec"]["calibration"],
                 "scorer_report": first["rag_rec"]["scorer_report"],
                 "blend": {str(seed): {k: run["rag_rec"]["blend"].get(k)
                                       for k in ("source", "weight", "short_weights",
                                                 "short_rule")}
                           for seed, run in seeds.items()},
                 "timings": {str(seed): run["rag_rec"]["timings"] for seed, run in seeds.items()},
                 "measured_at": max(run["rag_rec"].get("measured_at", time.strftime("%Y-%m-%d"))
                                    for run in seeds.values()),
                 "baseline_train": {n: first["baselines"][n].get("train")
                                    for n in sorted(baselines)}}
        sources = [n for n in table if n.startswith("only_")]
        if sources:  # without the scorer: does the stacker beat what it stacks?
            best_source = max(sources, key=lambda n: table[n]["ndcg@10"])
            entry["best_source"] = best_source
            entry["rag_rec_vs_best_source"] = paired_bootstrap(mean_user["rag_rec"],
                                                               mean_user[best_source])
        cold_idx = np.array(first.get("cold_index", []), dtype=int)
        if len(cold_idx):
            best_cold = max(baselines, key=lambda n: table[n].get("cold_ndcg@10", 0))
            entry["cold_users"] = {
                "users": int(len(cold_idx)), "best_baseline": best_cold,
                "rag_rec_vs_best": paired_bootstrap(mean_user["rag_rec"][cold_idx],
                                                    mean_user[best_cold][cold_idx])}
            if sources:  # a source alone may beat every baseline on them (markov does)
                cold_source = max(sources, key=lambda n: table[n].get("cold_ndcg@10", 0))
                entry["cold_users"] |= {
                    "best_source": cold_source,
                    "rag_rec_vs_best_source": paired_bootstrap(
                        mean_user["rag_rec"][cold_idx], mean_user[cold_source][cold_idx])}
        out["splits"][split] = entry
        if split_protocol(split) is SplitProtocol.KFOLD:
            for name in mean_user:
                pooled.setdefault(name, []).append(mean_user[name])
    folds = [s for s in runs if split_protocol(s) is SplitProtocol.KFOLD]
    if len(folds) > 1:
        common = [n for n in pooled if len(pooled[n]) == len(folds)]
        kf = {n: {"ndcg@10_mean": round(float(np.mean([out["splits"][f]["systems"][n]["ndcg@10"]
                                                      for f in folds])), 4),
                  "ndcg@10_std": round(float(np.std([out["splits"][f]["systems"][n]["ndcg@10"]
                                                    for f in folds])), 4)}
              for n in common}
        baselines = {n for f in folds for n in runs[f][next(iter(runs[f]))]["baselines"]}
        best = max((n for n in common if n in baselines), key=lambda n: kf[n]["ndcg@10_mean"])
        out["kfold"] = {"folds": folds, "systems": kf, "best_baseline": best,
                        "rag_rec_vs_best_pooled": paired_bootstrap(
                            np.concatenate(pooled["rag_rec"]), np.concatenate(pooled[best]))}
        sources = [n for n in common if n.startswith("only_")]
        if sources:
            source = max(sources, key=lambda n: kf[n]["ndcg@10_mean"])
            out["kfold"] |= {"best_source": source, "rag_rec_vs_best_source_pooled":
                             paired_bootstrap(np.concatenate(pooled["rag_rec"]),
                                              np.concatenate(pooled[source]))}
    return out


def keep_earlier(figures: dict, path: Path) -> dict:
    """`figures` with the splits (and the k-fold summary) this run did not measure taken
    from the results file at `path`: a run of some splits updates those and keeps the
    rest, each split dated by its `measured_at` (the day its rag_rec parts were run)."""
    if not path.exists():
        return figures
    earlier = json.loads(path.read_text())
    for split, entry in earlier.get("splits", {}).items():
        if split not in figures["splits"]:
            entry.setdefault("measured_at", earlier["measured_at"][:10])
            figures["splits"][split] = entry
    if "kfold" not in figures and "kfold" in earlier:
        figures["kfold"] = earlier["kfold"]
    order = [*SPLITS, *figures["splits"]]
    figures["splits"] = {s: figures["splits"][s] for s in dict.fromkeys(order)
                         if s in figures["splits"]}
    return figures
