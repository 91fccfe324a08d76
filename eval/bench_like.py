"""The P(like) head (rag_rec/like/) on held-out ratings, against a bias-only baseline.

    uv run --extra cpu python -m eval.bench_like [--splits loo,kfold0,...] [--vectors text]

Per split, both models are fitted the same way (BCE on the train ratings, early stopping
and Platt scaling on the validation ratings; the baseline with its own step size and decay) and scored on the test ratings, label =
rating >= 4, each user's history being their train + validation ratings:
AUC, ECE (10 equal-mass bins, beside the ECE a perfectly calibrated model would show on
this many ratings: its noise floor), Brier score and log-loss with their skill against
predicting the test base rate for everyone (1 - score / reference; > 0 is skill). 95%
intervals come from a bootstrap over users (ratings of one user move together).

Ranking mode (`loo`): candidate lists are the top 100 unseen items of EASE (numpy closed
form on the train ratings, λ = 500), their EASE scores Platt-scaled into P(next) on the
validation items; ranking by P(next) · P(like)^w is compared with P(next) alone on
NDCG@10 of the test items the user liked (rated >= 4), all test items, and the disliked
ones; w = 1 (the plain product) and w tuned on validation.

Item vectors: `text` (default) reads the build's cached text embeddings, which hold no
interactions; `fused` uses a build's [text ⊕ KG] index (the split's build if there is
one; otherwise the full build, whose KG embeddings saw the test interactions - marked so).
Writes eval/results/like.json.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from eval.common import print_table, write_results
from rag_rec.data import Dataset, Split, load_dataset, make_split
from rag_rec.like import LikeModel
from rag_rec.settings import Settings, get_settings

BINS = 10
CANDIDATES = 100
EASE_LAMBDA = 500.0
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
#: The baseline with its own step size and decay: the full model's (lr 2e-3, decay 0.5)
#: leave the biases under-fitted (loo AUC 0.749 instead of 0.775).
BIAS_ONLY = {"terms": "bias", "lr": 5e-3, "weight_decay": 1e-4}


# --------------------------------------------------------------------------- inputs


class _CachedOnly:
    """A text encoder that only reads the build's cache (never loads a model)."""

    def __init__(self, name: str):
        self.name = name

    def encode(self, texts, *, progress: bool = False):
        raise SystemExit(f"{len(texts)} item texts are not in the text cache: run "
                         "`rag-rec build` first")


def item_vectors(settings: Settings, ds: Dataset, split: Split, kind: str
                 ) -> tuple[dict[str, np.ndarray], str]:
    """(item id -> vector, a description of where they come from)."""
    if kind == "text":
        from rag_rec.embed import TextCache, item_texts

        texts = item_texts(ds)
        cache = TextCache(_CachedOnly(settings.embed.text_encoder), settings.home / "embeddings")
        return (dict(zip(texts, cache.embed(list(texts.values())))),
                f"text ({settings.embed.text_encoder}; no interactions)")
    from rag_rec.artifacts import load_artifacts
    from rag_rec.errors import StaleArtifact

    note = f"fused text+KG from the {split.name} build"
    try:
        index = load_artifacts(settings, split.name, ds=ds, text={}).index
    except StaleArtifact:
        index = load_artifacts(settings, None, ds=ds, text={}).index
        note = "fused text+KG from the FULL build (its KG saw the test interactions)"
    return {i: index.vector(i) for i in index.ids}, note


def histories(*frames: pd.DataFrame) -> dict[str, list[tuple[str, float]]]:
    inter = pd.concat(frames).sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    return {u: list(zip(g.item_id, g.rating.astype(float)))
            for u, g in inter.groupby("user_id", sort=False)}


def predict_held(model: LikeModel, held: pd.DataFrame,
                 hist: dict[str, list[tuple[str, float]]]) -> tuple[np.ndarray, ...]:
    """(user index per rating, P(like), label) for the held-out ratings."""
    users, probs, labels = [], [], []
    for k, (u, g) in enumerate(held.groupby("user_id", sort=False)):
        probs.append(model.predict(hist.get(u, []), u, list(g.item_id)))
        labels.append(g.rating.to_numpy() >= model.settings.threshold)
        users.append(np.full(len(g), k))
    return np.concatenate(users), np.concatenate(probs), np.concatenate(labels).astype(float)


# --------------------------------------------------------------------------- metrics


def ece(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Expected calibration error over BINS equal-mass bins (weighted)."""
    order = np.argsort(p, kind="stable")
    total = 0.0
    for part in np.array_split(order, BINS):
        wt = w[part].sum()
        if wt > 0:
            total += abs(np.average(p[part], weights=w[part]) -
                         np.average(y[part], weights=w[part])) * wt
    return total / w.sum()


def _logloss(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(np.average(-(y * np.log(p) + (1 - y) * np.log(1 - p)), weights=w))


def binary_metrics(p: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> dict:
    w = np.ones_like(p) if w is None else w
    base = np.full_like(p, np.average(y, weights=w))
    brier = float(np.average((p - y) ** 2, weights=w))
    brier_ref = float(np.average((base - y) ** 2, weights=w))
    ll, ll_ref = _logloss(p, y, w), _logloss(base, y, w)
    return {"auc": float(roc_auc_score(y, p, sample_weight=w)), "ece": ece(p, y, w),
            "brier": brier, "brier_base_rate": brier_ref, "brier_skill": 1 - brier / brier_ref,
            "logloss": ll, "logloss_base_rate": ll_ref, "logloss_skill": 1 - ll / ll_ref}


def bootstrap(users: np.ndarray, fn, n: int, seed: int = 0) -> list[dict]:
    """fn(weights) over `n` resamples of the users (weights = times each user was drawn)."""
    rng = np.random.default_rng(seed)
    n_users = users.max() + 1
    return [fn(np.bincount(rng.integers(0, n_users, n_users), minlength=n_users)[users]
               .astype(float)) for _ in range(n)]


def interval(point: float, draws: list[float]) -> dict:
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return {"value": round(point, 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}


def ece_floor(p: np.ndarray, sims: int = 200, seed: int = 1) -> float:
    """Mean ECE of labels drawn from `p` itself: what a perfect model would show."""
    rng = np.random.default_rng(seed)
    w = np.ones_like(p)
    return float(np.mean([ece(p, (rng.random(len(p)) < p).astype(float), w)
                          for _ in range(sims)]))


# --------------------------------------------------------------------------- ranking


def ease_scores(train: pd.DataFrame, items: list[str], lam: float) -> tuple[np.ndarray, dict]:
    """EASE's item-item weights B (closed form) and the item column map."""
    col = {i: c for c, i in enumerate(items)}
    users = {u: r for r, u in enumerate(sorted(train.user_id.unique()))}
    x = np.zeros((len(users), len(items)))
    x[train.user_id.map(users).to_numpy(), train.item_id.map(col).to_numpy()] = 1.0
    g = x.T @ x + lam * np.eye(len(items))
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b, col


def candidate_lists(b: np.ndarray, col: dict, items: list[str],
                    seen: dict[str, list[tuple[str, float]]]) -> dict[str, tuple[list, np.ndarray]]:
    """Per user: the top CANDIDATES unseen items by EASE and their scores."""
    out = {}
    for u, hist in seen.items():
        x = np.zeros(len(items))
        x[[col[i] for i, _ in hist]] = 1.0
        s = x @ b
        s[x > 0] = -np.inf
        top = np.argsort(-s, kind="stable")[:CANDIDATES]
        out[u] = ([items[c] for c in top], s[top])
    return out


def ndcg_at_10(ranked: list[str], target: str) -> float:
    pos = ranked.index(target) if target in ranked[:10] else -1
    return 1.0 / np.log2(pos + 2) if pos >= 0 else 0.0


def ranking_mode(settings: Settings, ds: Dataset, split: Split, model: LikeModel,
                 boot: int) -> dict:
    items = list(ds.items.index)
    b, col = ease_scores(split.train, items, EASE_LAMBDA)
    train_hist = histories(split.train)
    test_hist = histories(split.train, split.valid)
    parts = {}
    for name, hist, held in (("valid", train_hist, split.valid),
                             ("test", test_hist, split.test)):
        lists = candidate_lists(b, col, items, {u: hist[u] for u in held.user_id})
        p_like = {u: model.predict(hist[u], u, c) for u, (c, _) in lists.items()}
        parts[name] = (lists, p_like, dict(zip(held.user_id, zip(held.item_id, held.rating))))
    # P(next): EASE scores Platt-scaled on whether a validation candidate is the
    # user's validation item.
    lists, _, truth = parts["valid"]
    scores = np.concatenate([s for _, s in lists.values()])
    hits = np.concatenate([[i == truth[u][0] for i in c] for u, (c, _) in lists.items()])
    platt = LogisticRegression(C=1e6).fit(scores[:, None], hits)

    def p_next(s: np.ndarray) -> np.ndarray:
        return platt.predict_proba(s[:, None])[:, 1]

    def per_user(part: str, weight: float) -> pd.DataFrame:
        lists, p_like, truth = parts[part]
        rows = []
        for u, (cands, s) in lists.items():
            key = np.log(p_next(s)) + weight * np.log(np.clip(p_like[u], 1e-7, 1))
            ranked = [cands[j] for j in np.argsort(-key, kind="stable")]
            item, rating = truth[u]
            rows.append({"user": u, "liked": rating >= model.settings.threshold,
                         "ndcg": ndcg_at_10(ranked, item)})
        return pd.DataFrame(rows)

    def liked_ndcg(df: pd.DataFrame) -> float:
        return float(df[df.liked].ndcg.mean())

    test_lists, _, test_truth = parts["test"]
    tuned = max(WEIGHTS, key=lambda w: liked_ndcg(per_user("valid", w)))
    base = per_user("test", 0.0)
    out = {"candidates": f"EASE (λ={EASE_LAMBDA:g}) top {CANDIDATES} unseen items",
           "p_next": "EASE score, Platt-scaled on validation candidate lists",
           "test_users": len(base), "liked_test_users": int(base.liked.sum()),
           "candidate_recall": round(float(np.mean(
               [test_truth[u][0] in c for u, (c, _) in test_lists.items()])), 4),
           "weight_tuned_on_valid": tuned, "modes": {}}
    for label, weight in (("p_next", 0.0), ("p_next*p_like", 1.0),
                          (f"p_next*p_like^{tuned:g}", tuned)):
        df = per_user("test", weight)
        row = {}
        for subset, mask in (("liked", df.liked), ("all", np.ones(len(df), bool)),
                             ("disliked", ~df.liked)):
            a, b0 = df.ndcg[mask].to_numpy(), base.ndcg[mask].to_numpy()
            users = np.arange(len(a))
            diffs = bootstrap(users, lambda w: float(np.average(a - b0, weights=w)), boot)
            draws = bootstrap(users, lambda w: float(np.average(a, weights=w)), boot)
            row[f"ndcg@10_{subset}"] = interval(float(a.mean()), draws)
            if weight:
                row[f"ndcg@10_{subset}_vs_p_next"] = interval(float((a - b0).mean()), diffs)
        out["modes"][label] = row
    return out


# --------------------------------------------------------------------------- main


def evaluate_split(settings: Settings, ds: Dataset, name: str, vectors: str, boot: int,
                   ranking: bool) -> dict:
    split = make_split(ds, name, seed=settings.data.seed)
    vecs, note = item_vectors(settings, ds, split, vectors)
    hist = histories(split.train, split.valid)
    out: dict = {"vectors": note, "models": {}}
    preds = {}
    for label, update in (("like", {}), ("bias_only", BIAS_ONLY)):
        model = LikeModel.fit(ds, split, vecs, settings.like.model_copy(update=update))
        users, p, y = predict_held(model, split.test, hist)
        preds[label] = p
        point = binary_metrics(p, y)
        draws = bootstrap(users, lambda w: binary_metrics(p, y, w), boot)
        out["models"][label] = {
            **{k: interval(v, [d[k] for d in draws]) for k, v in point.items()},
            "ece_noise_floor": round(ece_floor(p), 4), "mean_p": round(float(p.mean()), 4),
            "fit": model.report}
        if label == "like" and ranking:
            like_model = model
    out["test_ratings"], out["test_users"] = len(y), int(users.max() + 1)
    out["base_rate"] = round(float(y.mean()), 4)
    a, b = preds["like"], preds["bias_only"]
    diffs = bootstrap(users, lambda w: roc_auc_score(y, a, sample_weight=w)
                      - roc_auc_score(y, b, sample_weight=w), boot)
    out["auc_gain_over_bias_only"] = interval(roc_auc_score(y, a) - roc_auc_score(y, b), diffs)
    if ranking:
        out["ranking"] = ranking_mode(settings, ds, split, like_model, boot)
    return out


def _fmt(m: dict) -> str:
    lo, hi = m["ci95"]
    return f"{m['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", default="loo,kfold0")
    parser.add_argument("--vectors", choices=["text", "fused"], default="text")
    parser.add_argument("--boot", type=int, default=500, help="bootstrap resamples")
    args = parser.parse_args()
    settings = get_settings()
    ds = load_dataset(settings.data, settings.home)
    start = time.perf_counter()
    results = {}
    for name in args.splits.split(","):
        results[name] = evaluate_split(settings, ds, name, args.vectors, args.boot,
                                       ranking=name == "loo")
    rows = []
    for name, r in results.items():
        for label, m in r["models"].items():
            rows.append({"split": name, "model": label, "n": r["test_ratings"],
                         "base rate": r["base_rate"], "AUC": _fmt(m["auc"]),
                         "ECE (floor)": f"{_fmt(m['ece'])} ({m['ece_noise_floor']:.3f})",
                         "Brier": f"{m['brier']['value']:.4f}",
                         "Brier skill": _fmt(m["brier_skill"]),
                         "log-loss skill": _fmt(m["logloss_skill"]),
                         "fit s": m["fit"]["seconds"]})
    print_table("P(like) on held-out ratings (95% user-bootstrap intervals)", rows)
    if "loo" in results:
        rk = results["loo"]["ranking"]
        print_table(f"loo ranking mode: {rk['candidates']}; recall of the test item "
                    f"{rk['candidate_recall']}",
                    [{"mode": mode, **{k: _fmt(v) for k, v in row.items()}}
                     for mode, row in rk["modes"].items()])
    path = write_results("like", {
        "command": "uv run --extra cpu python -m eval.bench_like " + " ".join(sys.argv[1:]),
        "label": f"rating >= {settings.like.threshold or ds.meta.like_threshold:g}", "settings": settings.like.model_dump(),
        "seconds": round(time.perf_counter() - start, 1), "splits": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
