"""The leave-last-out sections of eval/bench_chat.py: constrained accuracy against filtered
baselines, sessions, and the goal "enjoy" against "next".

In: the settings, the dataset and the seeds. Each seed's leave-last-out build is made as
eval/offline.py makes it (`split_settings`), then served whole (`loo_recommender`: its
test-time history in an in-memory graph, no LLM). Out: per constraint kind, rag_rec's
NDCG@10 against EASE's and SASRec-CE+crops' filtered by the same constraint with a paired
interval; repeats and NDCG per turn of simulated sessions; NDCG on liked items, disliked
items in the top 10 and mean P(like) for both goals.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from eval.summary import paired_bootstrap
from rag_rec.chat import RecommendRequest
from rag_rec.data import Dataset, make_split
from rag_rec.settings import Settings

PARTS = Path(__file__).parent / "results" / "parts"
"""Each finished seed's per-user figures, so a run cut short keeps what it finished."""


def _constraint_of(ds: Dataset, item_id: str, kind: str) -> set[str] | None:
    """The entity ids a held-out item's `kind` constraint allows: its genres, its
    decade, or its rarest person (director, writer or actor)."""
    rows = ds.triples[ds.triples.item_id == item_id]
    if kind == "genre":
        ids = set(rows[rows.relation == "has_genre"].entity_id)
    elif kind == "decade":
        ids = set(rows[rows.relation == "released_in_decade"].entity_id)
    else:
        people = rows[rows.relation.isin(["directed_by", "written_by", "starring"])]
        if people.empty:
            return None
        degree = ds.triples.entity_id.value_counts()
        ids = {min(people.entity_id, key=lambda e: (degree[e], e))}
    return ids or None


def run_accuracy(settings: Settings, ds: Dataset, seeds: list[int]) -> dict:
    """rag_rec filtered by the held-out item's genre / decade / person against EASE and
    SASRec-CE+crops filtered the same way (leave-last-out)."""
    from eval.protocol import Protocol
    from eval.systems import PLAIN_SASREC, split_settings
    from rag_rec.metrics import ndcg_per_user
    from rag_rec.settings import updated
    from rag_rec.sources import EASE, Catalogue, SASRec

    split = make_split(ds, "loo")
    proto = Protocol.of(ds, split, settings.retrieval.head_mass)
    test_item = dict(zip(split.test.user_id, split.test.item_id))
    by_entity: dict[str, set[str]] = {}
    for item_id, entity_id in ds.triples[["item_id", "entity_id"]].itertuples(index=False):
        by_entity.setdefault(entity_id, set()).add(item_id)
    out: dict = {}
    for seed in seeds:
        saved = PARTS / f"chat_accuracy_loo_{seed}.json"
        if saved.exists():  # a finished seed (the parts are committed): not run again
            out[str(seed)] = json.loads(saved.read_text())
            continue
        s = split_settings(settings, "loo", seed)
        with loo_recommender(settings, ds, seed) as rec:
            ids = rec.artifacts.index.ids
            baselines = {}
            ease = EASE.from_settings(Catalogue.of(rec.artifacts), s.sources, s.retrieval)
            ease.fit(split.train, split.valid)
            baselines["EASE"] = proto.source_rows(ease.scores(proto.queries), ids)
            crops = updated(updated(s.sources, PLAIN_SASREC),
                            {"sasrec": {"crop": 8, "epochs": 150, "patience": 5}})
            sasrec = SASRec.from_settings(Catalogue.of(rec.artifacts), crops, s.retrieval)
            sasrec.fit(split.train, split.valid, progress=True)
            baselines["SASRec-CE+crops"] = proto.source_rows(sasrec.scores(proto.queries), ids)
            per_seed = {}
            for kind in ("genre", "decade", "person"):
                users, allowed = [], []
                for row, user in enumerate(proto.users):
                    entities = _constraint_of(ds, test_item[user], kind)
                    if entities:
                        users.append(row)
                        allowed.append(set().union(*(by_entity[e] for e in entities)))
                everything = set(proto.items)
                ranked = []
                for start in range(0, len(users), 256):
                    part = users[start:start + 256]
                    ranked += rec.rank([proto.queries[r] for r in part],
                                       [proto.users[r] for r in part],
                                       exclude=[everything - allowed[users.index(r)]
                                                for r in part])
                mask = np.zeros((len(users), len(proto.items)), dtype=bool)
                for n, items in enumerate(allowed):
                    mask[n, [proto.col[i] for i in items]] = True
                seen, test = proto.seen[users], proto.test[users]
                rows = {"rag_rec": np.where(mask, proto.ranked_rows(
                    ranked, [r.scores for r in ranked]), -np.inf)}
                for name, scores in baselines.items():
                    rows[name] = np.where(mask, scores[users], -np.inf)
                ndcg = {name: ndcg_per_user(np.where(np.isfinite(r), r, -1e12), seen, test)
                        for name, r in rows.items()}
                best = max(baselines, key=lambda name: ndcg[name].mean())
                per_seed[kind] = {
                    "users": len(users),
                    **{name: round(float(v.mean()), 4) for name, v in ndcg.items()},
                    "best_baseline": best,
                    "per_user": {name: v.tolist() for name, v in ndcg.items()}}
                print(f"loo seed {seed} {kind}: " + ", ".join(
                    f"{name} {float(v.mean()):.4f}" for name, v in ndcg.items()), flush=True)
        out[str(seed)] = per_seed
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(per_seed))
    summary = {}
    for kind in ("genre", "decade", "person"):
        ours = np.concatenate([out[str(s)][kind]["per_user"]["rag_rec"] for s in seeds])
        figures = {}
        for name in ("EASE", "SASRec-CE+crops"):
            theirs = np.concatenate([out[str(s)][kind]["per_user"][name] for s in seeds])
            figures[name] = round(float(theirs.mean()), 4)
        best = max(figures, key=figures.get)
        theirs = np.concatenate([out[str(s)][kind]["per_user"][best] for s in seeds])
        diff = paired_bootstrap(ours, theirs)
        summary[kind] = {"rag_rec": round(float(ours.mean()), 4), **figures,
                         "best_baseline": best, "users": len(ours), "difference": diff}
    by_seed = {seed: {kind: {k: v for k, v in figures.items() if k != "per_user"}
                      for kind, figures in per_seed.items()} for seed, per_seed in out.items()}
    return {"seeds": seeds, "by_seed": by_seed, "summary": summary}



def loo_recommender(settings: Settings, ds: Dataset, seed: int):
    """The leave-last-out build of `seed` (built if missing, as eval/offline.py builds
    it), served with its test-time history in memory and no LLM, sessions in a fresh
    folder: whole requests run on it as they do on the served build."""
    import tempfile

    from eval.systems import split_settings
    from rag_rec import like
    from rag_rec.artifacts import load_artifacts
    from rag_rec.build import build, load_ranker
    from rag_rec.chat import SessionStore
    from rag_rec.memory_graph import InMemoryGraph
    from rag_rec.recommender import Recommender

    s = split_settings(settings, "loo", seed)
    build(s, "loo")
    artifacts = load_artifacts(s, "loo", ds=ds)
    split = artifacts.split
    graph = InMemoryGraph(ds, pd.concat([split.train, split.valid]), "loo")
    rec = Recommender(s, artifacts, load_ranker(s, artifacts), like.load_built(artifacts),
                      connect_graph=lambda: graph, llm=None, llm_error="not used")
    rec.sessions = SessionStore(Path(tempfile.mkdtemp(prefix="bench-sessions-")))
    return rec


def run_sessions(settings: Settings, ds: Dataset, seed: int, turns: int = 5,
                 users: int = 300) -> dict:
    """Sessions through `Recommender.run`: each simulated user says "not that one" of the
    top item every turn after the first. Repeats of anything shown, and NDCG@10 of the
    held-out item per turn (among what the session has not shown yet)."""
    split = make_split(ds, "loo")
    test_item = dict(zip(split.test.user_id, split.test.item_id))
    chosen = sorted(test_item)[:users]
    repeats = 0
    ndcg: list[list[float]] = [[] for _ in range(turns)]
    with loo_recommender(settings, ds, seed) as rec:
        for user in chosen:
            shown: set[str] = set()
            for turn in range(turns):
                answer = rec.run(RecommendRequest(
                    user_id=user, k=10, explain=False, session_id=f"bench-{user}",
                    text="not that one" if turn else None))
                ids = [r.item.id for r in answer.items]
                repeats += len(set(ids) & shown)
                shown |= set(ids)
                hit = ids.index(test_item[user]) if test_item[user] in ids else None
                ndcg[turn].append(0.0 if hit is None else 1.0 / np.log2(hit + 2))
    return {"users": len(chosen), "turns": turns, "repeats": repeats,
            "ndcg@10_by_turn": [round(float(np.mean(v)), 4) for v in ndcg]}


def run_goal(settings: Settings, ds: Dataset, seed: int) -> dict:
    """"next" against "enjoy" (w log P(like) added) on leave-last-out."""
    from eval.protocol import Protocol
    from rag_rec.metrics import ndcg_per_user

    split = make_split(ds, "loo")
    proto = Protocol.of(ds, split, settings.retrieval.head_mass)
    rating = dict(zip(split.test.user_id, split.test.rating))
    liked = np.array([rating[u] >= 4 for u in proto.users])
    disliked = np.array([rating[u] <= 2 for u in proto.users])
    out = {}
    with loo_recommender(settings, ds, seed) as rec:
        for goal, weight in (("next", 0.0), ("enjoy", settings.like.enjoy_weight)):
            ranked = []
            for start in range(0, len(proto.users), 256):
                part = slice(start, start + 256)
                ranked += rec.rank(proto.queries[part], proto.users[part],
                                   enjoy_weight=weight)
            rows = proto.ranked_rows(ranked, [r.scores for r in ranked])
            ndcg = ndcg_per_user(rows, proto.seen, proto.test)
            top10 = [r.items[:10] for r in ranked]
            in_top = np.array([split.test.set_index("user_id").item_id[u] in top
                               for u, top in zip(proto.users, top10)])
            p_like = [float(np.mean(rec.like.predict(q.history, u, top)))
                      for q, u, top in zip(proto.queries, proto.users, top10)]
            out[goal] = {"weight": weight,
                         "ndcg@10_liked": round(float(ndcg[liked].mean()), 4),
                         "ndcg@10_all": round(float(ndcg.mean()), 4),
                         "disliked_in_top10": round(float(in_top[disliked].mean()), 4),
                         "mean_p_like_top10": round(float(np.mean(p_like)), 4),
                         "per_user": ndcg.tolist()}
    both = {g: np.array(out[g].pop("per_user")) for g in out}
    out["enjoy_minus_next_liked"] = paired_bootstrap(both["enjoy"][liked], both["next"][liked])
    return out
