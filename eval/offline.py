"""Offline evaluation: rag_rec beside tuned baselines and its own ablations, one protocol.

    uv run --extra cpu python -m eval.offline        # kfold0..4, loo (3 seeds), loo-cold
    uv run --extra cpu python -m eval.offline --splits kfold0 --seeds 42

Protocol (every system alike): train on the split's train part, tune on its validation
items, then rank every catalogue item the user has not seen, with train + validation as
the user's history, and read the test items' positions (rag_rec/metrics.py). Splits:
`kfoldN` (the published user-level 5-fold protocol, each user's latest train item as
validation), `loo` (last interaction by time; validation = the one before) and
`loo-cold` (the same with 30% of users cut to 5 train interactions: the cold slice).

Systems:
- rag_rec: `Recommender.rank` on the split's build (sources fit on train minus the ranker
  slice, the scorer stacked on their lists for the slice, sources refit on train; the
  slice is random for k-fold, the latest items for leave-last-out). Candidates first, in
  the scorer's order, the rest of the catalogue behind them by popularity.
- EASE (closed form, L2 from a grid by validation NDCG@10) and, on the leave-last-out
  splits, SASRec (full-softmax cross-entropy, early stopped on validation NDCG@10: the
  strong sequential baseline), both trained on the split's train part alone; iALS
  (`implicit`; hyper-parameters from a grid by held-out NDCG@10, on k-fold a random 10%
  of train; refit on train + validation); popularity. `--recbole BPR,LightGCN` adds
  RecBole 1.2.0 models, tuned on the same held-out items as iALS and refit on train +
  validation (eval/baselines.py).
- Ablations: each source's own full ranking (no scorer) and the long-tail boost on every
  seed; the scorer retrained without KG vectors, without text vectors, without each
  source on the `--ablations` splits (first seed).

Reported: every metric's mean (and std over seeds / folds), paired bootstrap 95%
intervals of rag_rec minus the best baseline and minus its best source alone (NDCG@10,
users resampled), each source's and the union's recall of the test items at the
candidate budget (the ceiling the scorer works under), calibration of `p_next` on the
test candidate lists (ECE, Brier skill, log-loss against the base rate), wall times.
Finished (split, seed) parts are kept in eval/results/parts/ (`--fresh` redoes them).
Figures: eval/results/offline_eval.json; report: eval/reports/offline_eval.md.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from eval.baselines import implicit_scores, popularity, recbole_scores
from eval.common import RESULTS, write_results
from eval.report import write_report
from rag_rec.build import build
from rag_rec.data import (Dataset, Split, SplitProtocol, load_dataset, make_split,
                          split_protocol)
from rag_rec.metrics import ndcg_per_user, ranking_metrics, recall_at
from rag_rec.recommender import Recommender
from rag_rec.retrieve import head_items
from rag_rec.scorer import brier, ece, sigmoid
from rag_rec.settings import Settings, get_settings, updated
from rag_rec.sources import EASE, Catalogue, Query, SASRec, histories_of

PARTS = RESULTS / "parts"
"""Finished (split, seed) parts: each system's metrics and per-user NDCG@10, committed
with the report, so a fresh clone can rebuild the report or rerun one system."""
SPLITS = ("kfold0", "kfold1", "kfold2", "kfold3", "kfold4", "loo", "loo-cold")
TAIL_BOOSTS = (0.5, 1.0, 2.0)
BOOTSTRAP = 2000


@dataclass
class Protocol:
    """One split's evaluation matrices over (test users x catalogue items)."""

    split: Split
    users: list[str]
    items: list[str]
    tail: np.ndarray
    cold_rows: np.ndarray

    @cached_property
    def row(self) -> dict[str, int]:
        return {u: r for r, u in enumerate(self.users)}

    @cached_property
    def col(self) -> dict[str, int]:
        return {i: c for c, i in enumerate(self.items)}

    def _mask(self, *frames: pd.DataFrame) -> np.ndarray:
        m = np.zeros((len(self.users), len(self.items)), dtype=bool)
        for df in frames:
            df = df[df.user_id.isin(self.row)]
            m[df.user_id.map(self.row).to_numpy(), df.item_id.map(self.col).to_numpy()] = True
        return m

    @cached_property
    def seen(self) -> np.ndarray:
        """What the user already has at test time: train and validation."""
        return self._mask(self.split.train, self.split.valid)

    @cached_property
    def test(self) -> np.ndarray:
        return self._mask(self.split.test)

    @cached_property
    def queries(self) -> list[Query]:
        """Each test user's history at test time (train + validation, oldest first)."""
        histories = histories_of(pd.concat([self.split.train, self.split.valid]))
        return [Query(histories.get(u, [])) for u in self.users]

    @cached_property
    def fallback(self) -> np.ndarray:
        """The score of items a system did not rank: below every ranked item, in
        popularity order among themselves."""
        pop = self.split.train.item_id.value_counts().reindex(self.items, fill_value=0)
        base = np.log1p(pop.to_numpy(dtype=np.float64))
        return -1e6 + base / (base.max() + 1.0)

    @classmethod
    def of(cls, ds: Dataset, split: Split, head_mass: float) -> Protocol:
        users = sorted(split.test.user_id.unique())
        items = list(ds.items.index)
        counts = split.train.item_id.value_counts().to_dict()
        head = head_items({i: int(counts.get(i, 0)) for i in items}, head_mass)
        n_train = split.train.groupby("user_id").size().reindex(users, fill_value=0)
        return cls(split, users, items, np.array([i not in head for i in items]),
                   np.flatnonzero(n_train.to_numpy() <= 5))

    def metrics(self, scores: np.ndarray) -> dict:
        scores = np.where(np.isfinite(scores), scores, -1e9)
        out = {"all": ranking_metrics(scores, self.seen, self.test, self.tail),
               "ndcg_per_user": ndcg_per_user(scores, self.seen, self.test).tolist()}
        if len(self.cold_rows):
            c = self.cold_rows
            out["cold_users"] = ranking_metrics(scores[c], self.seen[c], self.test[c],
                                                self.tail)
        return out

    def ranked_rows(self, ranked: list, scores: list[np.ndarray]) -> np.ndarray:
        """Full score rows (one per ranking in `ranked`, which may cover a subset of the
        users): each ranking's candidates on top with its `scores`, the rest of the
        catalogue behind them."""
        rows = np.tile(self.fallback, (len(ranked), 1))
        for r, (result, score) in enumerate(zip(ranked, scores)):
            rows[r, [self.col[i] for i in result.items]] = 1e3 + score
        return rows

    def source_rows(self, scores: np.ndarray, ids: list[str]) -> np.ndarray:
        """A source's scores (index order `ids`) as a full row in catalogue order."""
        rows = np.tile(self.fallback, (len(self.users), 1))
        cols = [self.col[i] for i in ids]
        rows[:, cols] = np.where(np.isfinite(scores), 1e3 + scores, rows[:, cols])
        return rows


# --------------------------------------------------------------------------- systems


def split_settings(settings: Settings, name: str, seed: int) -> Settings:
    """The ranker slice follows the protocol: for k-fold a random share, cross-fitted
    over three disjoint slices (kfold0 NDCG@10: 0.4594 with one, 0.4668 with three);
    otherwise the latest items, one slice, as served (three gave 0.1041 against 0.1080 on
    loo seed 42, and each fold is another SASRec fit in the README's main command)."""
    kfold = split_protocol(name) is SplitProtocol.KFOLD
    ranker_slice = settings.ranker_slice.model_copy(update={
        "kind": "random" if kfold else "latest", "seed": seed,
        "folds": 3 if kfold else settings.ranker_slice.folds})
    sources = updated(settings.sources, {"seed": seed, **(KFOLD_SASREC if kfold else {})})
    return settings.model_copy(update={
        "scorer": settings.scorer.model_copy(update={"seed": seed}),
        "ranker_slice": ranker_slice, "sources": sources})


KFOLD_SASREC = {"sasrec": {"content": True, "crop": 0, "epochs": 60, "patience": 3,
                           "refit_share": 0.5, "members": 1}}
"""The k-fold builds keep the SASRec recipe they were measured with before crops: crops
target what comes next, which a random holdout is not, and each k-fold build fits SASRec
once per cross-fitting slice (three times the cost: not refit with crops on two cores)."""

PLAIN_SASREC = {"sasrec": {"content": False, "crop": 0, "epochs": 60, "patience": 3,
                           "members": 1}}
"""The plain SASRec-CE baseline: ids only, no crops, the source's former budget."""


def run_baselines(settings: Settings, ds: Dataset, proto: Protocol, seed: int,
                  recbole: list[str], workdir: Path, path: Path,
                  only: set[str] | None = None) -> dict[str, dict]:
    """EASE and SASRec fit on train and tuned on validation; popularity; RecBole models.
    Systems already in the part at `path` (a cached run) are kept, the missing ones (of
    `only`, when given) added and written there one by one: a run cut short keeps what
    it finished."""
    s = split_settings(settings, proto.split.name, seed)
    artifacts = build(s, proto.split.name, ranker=False)
    ids = artifacts.index.ids
    out = json.loads(path.read_text()) if path.exists() else {}
    models = {"Popularity": None, "EASE": (EASE, s.sources), "iALS": "implicit"}
    if proto.split.name.startswith("loo"):
        # The baseline SASRec is the plain model: ids only, no content vectors; it runs
        # where order is the protocol (leave-last-out; on k-fold EASE is the bar).
        plain = updated(s.sources, PLAIN_SASREC)
        models["SASRec-CE"] = (SASRec, plain)
        # The same with crop augmentation (SASRec._crops), the best training recipe a GPU
        # probe found for it, given SASRec-CE-200's patience (crops make the validation
        # curve noisier: with patience 3 seed 42 stopped at epoch 27 and 0.0870).
        crops = updated(plain, {"sasrec": {"crop": 8, "epochs": 150, "patience": 5}})
        models["SASRec-CE+crops"] = (SASRec, crops)
        # rag_rec's SASRec source averages two; so does this one, for a like-for-like bar.
        models["SASRec-CE+crops×2"] = (SASRec, updated(crops, {"sasrec": {"members": 2}}))
        if proto.split.name == "loo":
            # The probe: 200 positions, trained to convergence (best epoch ~105 on
            # seed 42; 42-47 minutes a seed on two cores): leave-last-out's strongest bar.
            models["SASRec-CE-200"] = (SASRec, updated(plain, {"sasrec": {
                "max_len": 200, "epochs": 150, "patience": 5}}))
    for name, spec in [*models.items(), *((m, "recbole") for m in recbole)]:
        if name in out or (only is not None and name not in only):
            continue
        start = time.perf_counter()
        if spec is None:
            out[name] = proto.metrics(popularity(ds, proto.split, proto.users))
        elif spec == "implicit":
            scores, info = implicit_scores(name, ds, proto.split, proto.users, seed=seed)
            out[name] = {**proto.metrics(scores), "train": info}
        elif spec == "recbole":
            scores, info = recbole_scores(name, ds, proto.split, proto.users, workdir, seed=seed)
            out[name] = {**proto.metrics(scores), "train": info}
        else:
            model = spec[0].from_settings(Catalogue.of(artifacts), spec[1], s.retrieval)
            report = model.fit(proto.split.train, proto.split.valid, progress=True)
            out[name] = {**proto.metrics(proto.source_rows(model.scores(proto.queries), ids)),
                         "train": report}
        out[name]["wall_s"] = round(time.perf_counter() - start, 1)
        path.write_text(json.dumps(out))
        print(f"{proto.split.name} seed {seed} {name}: ndcg@10 "
              f"{out[name]['all']['ndcg@10']:.4f} ({out[name]['wall_s']} s)", flush=True)
    return out


def _rank_rows(rec: Recommender, proto: Protocol, chunk: int = 256
               ) -> tuple[np.ndarray, list]:
    """rag_rec's full score rows (its candidates on top, in its order) and its ranking."""
    ranked = []
    for start in tqdm(range(0, len(proto.users), chunk), desc="rank test users", unit="chunk",
                      leave=False):
        part = slice(start, start + chunk)
        ranked += rec.rank(proto.queries[part], proto.users[part])
    return proto.ranked_rows(ranked, [r.scores for r in ranked]), ranked


def _calibration(proto: Protocol, ranked: list) -> dict:
    """`p_next` on the test candidate lists: is the item a test item?"""
    probs, labels, owner = [], [], []
    for r, result in enumerate(ranked):
        probs.append(sigmoid(result.logits))
        labels.append(proto.test[r, [proto.col[i] for i in result.items]])
        owner.append(np.full(len(result.items), r))
    p, y, o = np.concatenate(probs), np.concatenate(labels).astype(float), np.concatenate(owner)
    base = y.mean()

    def scores(idx: np.ndarray) -> tuple[float, float]:
        yb, pb = y[idx], np.clip(p[idx], 1e-7, 1 - 1e-7)
        rate = np.clip(yb.mean(), 1e-7, 1 - 1e-7)
        skill = 1 - brier(pb, yb) / (rate * (1 - rate))
        ll = -np.mean(yb * np.log(pb) + (1 - yb) * np.log(1 - pb))
        ll_base = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
        return skill, ll_base - ll

    rng = np.random.default_rng(0)
    users = np.unique(o)
    by_user = [np.flatnonzero(o == u) for u in users]
    boot = np.array([scores(np.concatenate([by_user[u] for u in rng.integers(
        0, len(users), len(users))])) for _ in range(200)])
    skill, gain = scores(np.arange(len(y)))
    return {"pairs": int(len(y)), "base_rate": round(float(base), 5),
            "mean_p": round(float(p.mean()), 5), "ece": round(ece(p, y), 5),
            "brier": round(brier(p, y), 5), "brier_base": round(float(base * (1 - base)), 5),
            "brier_skill": round(float(skill), 4),
            "brier_skill_ci95": [round(float(v), 4) for v in np.percentile(boot[:, 0],
                                                                           [2.5, 97.5])],
            "log_loss_gain": round(float(gain), 5),
            "log_loss_gain_ci95": [round(float(v), 5) for v in np.percentile(boot[:, 1],
                                                                             [2.5, 97.5])]}


def run_rag_rec(settings: Settings, proto: Protocol, seed: int) -> dict:
    """rag_rec through `Recommender.rank`, each source's own ranking (rag_rec without its
    scorer, on every seed: the stacker is judged against them too) and the tail boost
    (cheap: no retraining)."""
    name = proto.split.name
    s = split_settings(settings, name, seed)
    timings = {}
    t0 = time.perf_counter()
    build(s, name)
    timings["build_s"] = round(time.perf_counter() - t0, 1)
    out: dict = {"systems": {}}
    t0 = time.perf_counter()
    with Recommender.from_settings(s, split=name, use_llm=False) as rec:
        rows, ranked = _rank_rows(rec, proto)
        timings["rank_test_s"] = round(time.perf_counter() - t0, 1)
        out["systems"]["rag_rec"] = proto.metrics(rows)
        out["calibration"] = _calibration(proto, ranked)
        out["scorer_report"] = rec.scorer.report
        out["blend"] = asdict(rec.scorer.blend)
        budget = s.retrieval.budget
        ceiling = {"k": budget, "union": round(float(np.mean(
            [proto.test[r, [proto.col[i] for i in res.items]].sum() / max(1, proto.test[r].sum())
             for r, res in enumerate(ranked) if proto.test[r].any()])), 4)}
        for source_name, source in rec.sources.items():
            src_rows = proto.source_rows(source.scores(proto.queries), rec.artifacts.index.ids)
            ceiling[source_name] = round(recall_at(src_rows, proto.seen, proto.test, budget),
                                         4)
            out["systems"][f"only_{source_name}"] = proto.metrics(src_rows)
        out["recall_ceiling"] = ceiling
        tail = [np.array([rec.retriever.is_tail(i) for i in res.items], dtype=float)
                for res in ranked]
        for boost in TAIL_BOOSTS:
            boosted = proto.ranked_rows(
                ranked, [res.logits + boost * t for res, t in zip(ranked, tail)])
            out["systems"][f"rag_rec+tail_boost={boost}"] = proto.metrics(boosted)
    out["timings"] = timings
    out["measured_at"] = time.strftime("%Y-%m-%d")
    return out


def run_ablations(settings: Settings, proto: Protocol, seed: int) -> dict:
    """The scorer retrained without KG vectors, without text vectors, without each source
    (left out of the union and the features); the sources themselves are shared."""
    name = proto.split.name
    s = split_settings(settings, name, seed)
    variants = {"no_kg_emb": {"use_kg": False}, "no_text_emb": {"use_text": False},
                **{f"no_{n}": {"drop_sources": (n,)} for n in s.sources.enabled}}
    out = {}
    for variant, change in variants.items():
        t0 = time.perf_counter()
        vs = s.model_copy(update={"scorer": s.scorer.model_copy(update=change)})
        build(vs, name, progress=False)
        with Recommender.from_settings(vs, split=name, use_llm=False) as rec:
            out[variant] = proto.metrics(_rank_rows(rec, proto)[0])
        out[variant]["wall_s"] = round(time.perf_counter() - t0, 1)
        print(f"{name} seed {seed} {variant}: ndcg@10 {out[variant]['all']['ndcg@10']:.4f}",
              flush=True)
    return out


# --------------------------------------------------------------------------- summary


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
                 "baseline_train": {n: first["baselines"][n].get("train") for n in baselines}}
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


# --------------------------------------------------------------------------- main


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
    seeds = [int(s) for s in args.seeds.split(",")]
    recbole = [m for m in args.recbole.split(",") if m]
    runs: dict[str, dict[int, dict]] = {}
    for name in args.splits.split(","):
        split = make_split(ds, name, seed=settings.data.seed)
        proto = Protocol.of(ds, split, settings.retrieval.head_mass)
        runs[name] = {}
        for seed in seeds[:1] if split.protocol is SplitProtocol.KFOLD else seeds:
            folder = PARTS / name
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
                args.cached_only and not (PARTS / name /
                                          f"ablations-seed{first}.json").exists()):
            runs[name][first]["rag_rec"]["systems"].update(_cached(
                PARTS / name / f"ablations-seed{first}.json", args.fresh,
                lambda: run_ablations(settings, proto, first)))
    if only:
        return 0
    figures = keep_earlier(summarise(runs), RESULTS / "offline_eval.json")
    path = write_results("offline_eval", figures)
    report = write_report(figures)
    print(f"wrote {path} and {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
