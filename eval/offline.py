"""Offline evaluation: rag_rec beside the baselines and its own ablations, one protocol.

    uv run --extra cpu python eval/offline.py                        # loo, loo-cold, kfold0
    uv run --extra cpu python eval/offline.py --splits kfold0,kfold1,kfold2,kfold3,kfold4

Protocol (every system alike): train on the split's train part, stop early / calibrate on
its validation items, then rank every catalogue item the user has not seen (train and
validation) and read the test items' positions (eval/metrics.py). Splits: `loo` (last
interaction by time), `loo-cold` (the same with 10% of users cut to 5 train interactions:
the cold slice) and `kfoldN` (the published user-level 5-fold protocol).

rag_rec ranks the way it serves: its retrieval candidates (the graph holding train, then
train + validation at test time) ordered by the scorer, the rest of the catalogue behind
them by popularity. Its probabilities are checked on those candidates (label: the item is
a test item). The LLM stage needs vLLM (`rag-rec llm serve`): on `--llm-users` users of
the loo split it fits the weight of the LLM's rerank score on validation candidates and
measures the fused ranking on the same users' test items (`--llm-users 0` skips it).

Finished parts are kept under <home>/eval/ and skipped on a rerun (`--fresh` redoes them);
the figures go to eval/results/offline_eval.json, the report to eval/reports/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eval.baselines import MODELS, SEQUENTIAL, popularity, recbole_scores  # noqa: E402
from eval.common import write_results  # noqa: E402
from eval.metrics import ranking_metrics  # noqa: E402
from eval.report import write_report  # noqa: E402
from rag_rec.build import Artifacts, build  # noqa: E402
from rag_rec.data import Dataset, Split, load_dataset, make_split  # noqa: E402
from rag_rec.graph import GraphClient  # noqa: E402
from rag_rec.retrieve import CandidateGenerator, head_items  # noqa: E402
from rag_rec.scorer import brier, ece, load_or_fit, sigmoid  # noqa: E402
from rag_rec.settings import Settings, get_settings  # noqa: E402

ABLATIONS = {"no_kg_emb": {"use_kg": False}, "no_text_emb": {"use_text": False}}
TAIL_BOOSTS = (0.5, 1.0, 2.0)


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

    def _mask(self, *frames) -> np.ndarray:
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
    def fallback(self) -> np.ndarray:
        """The score of items rag_rec did not retrieve: below every candidate, in
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

    def metrics(self, scores: np.ndarray) -> dict[str, dict[str, float]]:
        out = {"all": ranking_metrics(scores, self.seen, self.test, self.tail)}
        if len(self.cold_rows):
            c = self.cold_rows
            out["cold_users"] = ranking_metrics(scores[c], self.seen[c], self.test[c],
                                                self.tail)
        return out


# --------------------------------------------------------------------------- baselines


def run_baselines(ds: Dataset, proto: Protocol, workdir: Path, cache: Path, fresh: bool,
                  only: set[str] | None = None) -> dict[str, dict]:
    results = {}
    systems = ["Popularity", *(m for m in MODELS
                              if m not in SEQUENTIAL or proto.split.name.startswith("loo"))]
    systems = [s for s in systems if only is None or s in only or (cache / f"{s}.json").exists()]
    for name in systems:
        path = cache / f"{name}.json"
        if path.exists() and not fresh:
            results[name] = json.loads(path.read_text())
            continue
        start = time.perf_counter()
        if name == "Popularity":
            scores, info = popularity(ds, proto.split, proto.users), {}
        else:
            scores, info = recbole_scores(name, ds, proto.split, proto.users, workdir)
        results[name] = {**proto.metrics(scores), "train": info,
                         "wall_s": round(time.perf_counter() - start, 1)}
        path.write_text(json.dumps(results[name], indent=1))
        print(f"{proto.split.name} {name}: ndcg@10 {results[name]['all']['ndcg@10']:.4f} "
              f"({results[name]['wall_s']} s)", flush=True)
    return results


# --------------------------------------------------------------------------- rag_rec


@dataclass
class UserCandidates:
    user_id: str
    history: list[tuple[str, float]]
    items: list[str]
    logits: dict[str, np.ndarray]
    """Scorer variant -> calibrated logits over `items`."""


def _candidates(retriever: CandidateGenerator, scorers: dict, users: list[str],
                exclude: dict[str, set[str]], desc: str) -> list[UserCandidates]:
    out = []
    for user_id in tqdm(users, desc=desc, unit="user"):
        r = retriever.for_user(user_id)
        items = [c.item.id for c in r.candidates if c.item.id not in exclude.get(user_id, ())]
        out.append(UserCandidates(user_id, r.history, items, {
            name: s.logits(r.history, user_id, items) for name, s in scorers.items()}))
    return out


def _full_rows(proto: Protocol, cands: list[UserCandidates], score) -> np.ndarray:
    """Score matrix: candidates by `score(user_candidates)`, above every other item,
    which keep popularity order."""
    rows = np.tile(proto.fallback, (len(proto.users), 1))
    for uc in cands:
        s = np.asarray(score(uc), dtype=np.float64)
        rows[proto.row[uc.user_id], [proto.col[i] for i in uc.items]] = 1e3 + s
    return rows


def _labels(proto: Protocol, cands: list[UserCandidates]) -> list[np.ndarray]:
    return [proto.test[proto.row[uc.user_id], [proto.col[i] for i in uc.items]].astype(
        np.float32) for uc in cands]


def run_rag_rec(settings: Settings, ds: Dataset, proto: Protocol, cache: Path, fresh: bool,
                llm_users: int, ablations: bool) -> dict[str, dict]:
    path = cache / "rag_rec.json"
    if path.exists() and not fresh:
        return json.loads(path.read_text())
    split = proto.split
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    artifacts = build(settings, split.name)
    timings["build_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scorers = {"rag_rec": load_or_fit(artifacts, settings.scorer)}
    for name, change in ABLATIONS.items() if ablations else ():
        scorers[name] = load_or_fit(artifacts, settings.scorer.model_copy(update=change))
    timings["ablation_scorers_s"] = time.perf_counter() - t0
    for name, s in scorers.items():
        timings[f"scorer_train_s.{name}"] = s.report.get("seconds")

    valid_item = dict(zip(split.valid.user_id, split.valid.item_id))
    rng = np.random.default_rng(settings.data.seed)
    llm_sample = set(rng.choice(sorted(valid_item), min(llm_users, len(valid_item)),
                                replace=False).tolist()) if llm_users else set()
    with GraphClient(settings.graph, settings.home) as graph:
        valid, llm_valid = [], {}
        if llm_sample:  # validation candidates: the graph holds train only here
            retriever = CandidateGenerator(artifacts, graph, settings)
            valid = _candidates(retriever, scorers, sorted(llm_sample), {},
                                "validation candidates")
            llm_valid = _llm_scores(settings, artifacts, valid)
        graph.ingest(ds, split, with_valid=True, progress=False)
        retriever = CandidateGenerator(artifacts, graph, settings)
        t0 = time.perf_counter()
        seen_valid = {u: {i} for u, i in valid_item.items()}
        test = _candidates(retriever, scorers, proto.users, seen_valid, "test candidates")
        timings["test_retrieval_s"] = time.perf_counter() - t0
        sampled = [uc for uc in test if uc.user_id in llm_sample]
        llm_test = _llm_scores(settings, artifacts, sampled) if llm_valid else {}

    results: dict[str, dict] = {}
    for name in scorers:
        results[name] = proto.metrics(_full_rows(proto, test, lambda uc, n=name: uc.logits[n]))
    results["no_scorer"] = proto.metrics(
        _full_rows(proto, test, lambda uc: -np.arange(len(uc.items), dtype=np.float64)))
    tail = dict(zip(proto.items, proto.tail))
    for boost in TAIL_BOOSTS:
        results[f"rag_rec+tail_boost={boost}"] = proto.metrics(_full_rows(
            proto, test, lambda uc, b=boost: uc.logits["rag_rec"] + b * np.array(
                [tail[i] for i in uc.items])))

    # Calibration on the candidates the recommender ranks, against the test items: the
    # served probabilities (Platt-scaled by the build on validation candidates), and
    # what they would be with the temperature alone or with no calibration at all.
    main = scorers["rag_rec"]
    served = np.concatenate([uc.logits["rag_rec"] for uc in test])
    t_labels = np.concatenate(_labels(proto, test))
    a, b = main.platt
    curves = {"none": sigmoid((served - b) / a * main.temperature),
              "temperature": sigmoid((served - b) / a),
              "served": sigmoid(served)}
    calibration = {name: {"ece": round(ece(p, t_labels), 4), "brier": round(brier(p, t_labels), 5),
                          "mean_p": round(float(p.mean()), 4)}
                   for name, p in curves.items()}
    calibration["base_rate"] = round(float(t_labels.mean()), 4)
    calibration["pairs"] = int(len(t_labels))
    calibration["scorer_report"] = main.report
    np.savez_compressed(cache / "calibration.npz", labels=t_labels, **curves)
    results["no_calibration"] = {**results["rag_rec"], "note": "same ranking; see calibration"}

    if llm_valid and llm_test:
        results["llm_fusion"] = _llm_fusion(proto, valid, valid_item, llm_valid, test, llm_test)
    timings = {k: round(v, 1) for k, v in timings.items() if v is not None}
    out = {"systems": results, "calibration": calibration, "timings": timings}
    path.write_text(json.dumps(out, indent=1))
    return out


def _llm_scores(settings: Settings, artifacts: Artifacts,
                cands: list[UserCandidates]) -> dict[str, dict[str, float]]:
    """LLM rerank scores for each user's top `rerank_window` candidates by the scorer;
    {} when no LLM server answers."""
    from rag_rec.errors import LLMUnavailable
    from rag_rec.llm import make_backend
    from rag_rec.rerank import score_candidates

    try:
        backend = make_backend(settings.llm, settings.home, autostart=False)
    except LLMUnavailable as exc:
        print(f"LLM stage skipped: {exc}", flush=True)
        return {}
    ds = artifacts.ds
    top_n = settings.llm.rerank_window

    async def run() -> dict[str, dict[str, float]]:
        if not await backend.health():
            print("LLM stage skipped: vLLM is not answering", flush=True)
            return {}
        out = {}
        for uc in tqdm(cands, desc="LLM scores", unit="user"):
            top = np.argsort(-uc.logits["rag_rec"], kind="stable")[:top_n]
            history = [(artifacts.items[i], r) for i, r in uc.history if i in artifacts.items]
            result = await score_candidates(backend, settings.llm, ds.user(uc.user_id), history,
                                            [artifacts.items[uc.items[t]] for t in top])
            if not result.degraded:
                out[uc.user_id] = result.scores
        await backend.aclose()
        return out

    return asyncio.run(run())


def _llm_fusion(proto: Protocol, valid: list[UserCandidates], valid_item: dict[str, str],
                llm_valid: dict, test: list[UserCandidates], llm_test: dict) -> dict:
    """Fit logit' = a*logit + w*llm + b on the validation users' LLM-scored candidates;
    compare rankings with and without the LLM on the test users that were LLM-scored."""
    xs, ys = [], []
    for uc in valid:
        scores = llm_valid.get(uc.user_id)
        if scores:
            for i, lg in zip(uc.items, uc.logits["rag_rec"]):
                if i in scores:
                    xs.append((lg, scores[i]))
                    ys.append(float(i == valid_item[uc.user_id]))
    x, y = np.array(xs), np.array(ys)
    fit = LogisticRegression(C=1e6).fit(x, y)
    a, w = fit.coef_[0]
    base = LogisticRegression(C=1e6).fit(x[:, :1], y)
    scored = [uc for uc in test if uc.user_id in llm_test]
    sub = Protocol(proto.split, [uc.user_id for uc in scored], proto.items, proto.tail,
                   np.array([], dtype=int))

    def fused(uc: UserCandidates) -> np.ndarray:
        llm = np.array([llm_test[uc.user_id].get(i, 0.0) for i in uc.items])
        return a * uc.logits["rag_rec"] + w * llm

    return {
        "users_valid": len(llm_valid), "users_test": len(scored), "pairs_valid": len(y),
        "weight_llm": round(float(w), 4), "weight_scorer": round(float(a), 4),
        "valid_log_loss_with_llm": round(float(_log_loss(fit, x, y)), 5),
        "valid_log_loss_without": round(float(_log_loss(base, x[:, :1], y)), 5),
        "with_llm": sub.metrics(_full_rows(sub, scored, fused))["all"],
        "without_llm": sub.metrics(_full_rows(sub, scored,
                                              lambda uc: uc.logits["rag_rec"]))["all"],
    }


def _log_loss(model: LogisticRegression, x: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(model.predict_proba(x)[:, 1], 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--splits", default="loo,loo-cold,kfold0",
                    help="comma-separated: loo, loo-cold, kfold0..kfold4")
    ap.add_argument("--llm-users", type=int, default=40,
                    help="users of the loo split scored by the LLM (0: skip the LLM stage)")
    ap.add_argument("--ablations", default="loo",
                    help="splits on which the ablated scorers are trained too (each is "
                         "another scorer training)")
    ap.add_argument("--part", choices=("all", "baselines", "rag_rec"), default="all",
                    help="run one side only (two processes can share the work); the "
                         "report is written when both sides are there")
    ap.add_argument("--baselines", default=None,
                    help="comma-separated subset of: Popularity, " + ", ".join(MODELS)
                         + " (default: all; results already computed are always reported)")
    ap.add_argument("--fresh", action="store_true", help="recompute cached parts")
    args = ap.parse_args(argv)
    settings = get_settings()
    ds = load_dataset(settings.data, settings.home)
    figures: dict[str, dict] = {}
    for name in args.splits.split(","):
        start = time.perf_counter()
        split = make_split(ds, name, seed=settings.data.seed)
        proto = Protocol.of(ds, split, settings.retrieval.head_mass)
        cache = settings.home / "eval" / name
        cache.mkdir(parents=True, exist_ok=True)
        if args.part in ("all", "baselines"):
            only = set(args.baselines.split(",")) if args.baselines else None
            baselines = run_baselines(ds, proto, settings.home / "eval" / "recbole", cache,
                                      args.fresh, only)
        if args.part in ("all", "rag_rec"):
            rag = run_rag_rec(settings, ds, proto, cache, args.fresh,
                              args.llm_users if name == "loo" else 0,
                              name in args.ablations.split(","))
        if args.part != "all":
            continue
        figures[name] = {"protocol": split.info | {"cold_users": len(proto.cold_rows)},
                         "users": len(proto.users), "baselines": baselines, **rag,
                         "wall_s": round(time.perf_counter() - start, 1)}
    if args.part != "all":
        return 0
    path = write_results("offline_eval", {"splits": figures})
    report = write_report(figures, settings.home / "eval")
    print(f"wrote {path} and {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
