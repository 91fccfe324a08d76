"""What a chat assistant gets from rag_rec: constraints kept, free text read right, sessions
that move on, "enjoy" against "next", and how fast, in one benchmark.

    python -m eval.bench_chat                          # every section, seeds 42,43,44
    python -m eval.bench_chat --sections parser,satisfaction,latency
    python -m eval.bench_chat --sections accuracy,sessions,goal --seeds 42

Writes eval/results/chat.json and eval/reports/chat.md and prints a table per section.

- parser: precision, recall and F1 of the constraints read from the hand-written requests
  (eval/data/parser_cases.toml) and from generated ones (templates filled with random
  graph names, typos and negations), the rules alone and with the LLM for leftover words
  (`--llm`, needs the vLLM server); negations read as wishes are counted apart.
- satisfaction: random users x random constraint combinations drawn from the graph,
  through `Recommender.arun`; every returned item is checked against the dataset's own
  triples and years (not the code under test); a short answer counts as a failure when
  k items were there to give.
- accuracy (leave-last-out, each seed): the held-out item's genre (then its decade, then
  a person it shares with the catalogue) as the filter; rag_rec against EASE and
  SASRec-CE+crops whose scores are filtered by the same constraint; NDCG@10 and a paired
  bootstrap interval of rag_rec minus the best of the two.
- sessions (leave-last-out, first seed): five turns each rejecting the top item ("not that
  one"); repeats and NDCG@10 of the held-out item per turn.
- goal: "next" against "enjoy" on leave-last-out: NDCG@10 on liked (>= 4) held-out items,
  the share of users whose disliked (<= 2) held-out item is in the top 10, and the mean
  P(like) of the top 10.
- latency: a constrained request without explanations, a parsed text request, the top 5
  explained (vLLM), and the size of a k=5 answer, on this machine.

The served sections (parser, satisfaction, latency) run on the full build the settings
point at and the real Neo4j (`rag-rec build` first); accuracy, sessions and goal build
the leave-last-out split for each seed like eval/offline.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from eval.common import latency_summary, write_results
from eval.summary import paired_bootstrap
from rag_rec.chat import Filters, NameFilter, RecommendRequest, Understood, Years
from rag_rec.data import Dataset, load_dataset, make_split
from rag_rec.settings import Settings, get_settings

CASES = Path(__file__).parent / "data" / "parser_cases.toml"
REPORT = Path(__file__).parent / "reports" / "chat.md"
SECTIONS = ("parser", "satisfaction", "latency", "accuracy", "sessions", "goal")


# --------------------------------------------------------------------------- parser


def constraint_keys(understood: Understood) -> set[str]:
    """"kind|mode|name" for each constraint and each entity it names (the cases' form)."""
    return {f"{c.kind}|{c.mode}|{name}" for c in understood.constraints
            for name in (c.entities or [c.asked])}


def f1(expected: list[set[str]], found: list[set[str]]) -> tuple[float, float, float]:
    true = sum(len(e & f) for e, f in zip(expected, found))
    precision = true / max(1, sum(map(len, found)))
    recall = true / max(1, sum(map(len, expected)))
    return precision, recall, 2 * precision * recall / max(1e-9, precision + recall)


def _typo(name: str, rng: random.Random) -> str:
    """One letter dropped from a long word of a name (what people mistype)."""
    words = name.split()
    long = [n for n, w in enumerate(words) if len(w) >= 6]
    if not long:
        return name
    n = rng.choice(long)
    cut = rng.randrange(1, len(words[n]) - 1)
    words[n] = words[n][:cut] + words[n][cut + 1:]
    return " ".join(words)


TEMPLATES = [
    ("a {decade} {genre}", ["years|range|{years}", "genres|any|{Genre}"]),
    ("{genre} with {person}", ["genres|any|{Genre}", "people|any|{Person}"]),
    ("anything by {person}, no {genre}", ["people|any|{Person}", "genres|none|{Genre}"]),
    ("{genre} but nothing with {person}", ["genres|any|{Genre}", "people|none|{Person}"]),
    ("no {genre} please", ["genres|none|{Genre}"]),
    ("something with {person} from the {decade}", ["people|any|{Person}",
                                                   "years|range|{years}"]),
    ("I hate {genre}, give me something with {person}", ["genres|none|{Genre}",
                                                         "people|any|{Person}"]),
    ("{typo} films", ["people|any|{Person}"]),
    ("not {person}, a {genre} maybe", ["people|none|{Person}", "genres|prefer|{Genre}"]),
    ("{genre} from before {year}", ["genres|any|{Genre}", "years|range|…-{year_before}"]),
]
GENRE_WORDS = {"Comedy": "comedy", "Horror": "horror", "Sci-Fi": "sci-fi", "Drama": "drama",
               "Thriller": "thriller", "Romance": "romance", "Western": "western",
               "War": "war", "Animation": "animated", "Musical": "musical",
               "Documentary": "documentary", "Crime": "crime", "Mystery": "mystery",
               "Fantasy": "fantasy", "Adventure": "adventure", "Action": "action"}


def generated_cases(ds: Dataset, n: int, seed: int = 0) -> list[dict]:
    """`n` requests from `TEMPLATES` with random people who directed or starred in at
    least three films (names people ask for), genres and decades."""
    rng = random.Random(seed)
    people_rel = ds.triples[ds.triples.relation.isin(["directed_by", "starring"])]
    counts = people_rel.entity_id.value_counts()
    names = ds.entities.loc[counts[counts >= 3].index, "name"]
    people = sorted({n for n in names if " " in n and "(" not in n
                     and (ds.entities.name == n).sum() == 1})
    cases = []
    for _ in range(n):
        text, expect = rng.choice(TEMPLATES)
        genre = rng.choice(sorted(GENRE_WORDS))
        person = rng.choice(people)
        decade = rng.choice([1940, 1950, 1960, 1970, 1980, 1990])
        year = rng.choice(range(1950, 1996))
        fill = {"genre": GENRE_WORDS[genre], "Genre": genre, "person": person,
                "Person": person, "typo": _typo(person, rng), "decade": f"{decade}s",
                "years": f"{decade}-{decade + 9}", "year": year, "year_before": year - 1}
        cases.append({"text": text.format(**fill),
                      "expect": [e.format(**fill) for e in expect]})
    return cases


def run_parser(rec, ds: Dataset, n_generated: int, use_llm: bool) -> dict:
    from rag_rec.chat.constraints import plan_request
    from rag_rec.chat.propose import propose

    sets = {"hand-written": tomllib.loads(CASES.read_text())["case"],
            "generated": generated_cases(ds, n_generated)}
    out = {}
    for name, cases in sets.items():
        for mode in ("rules", "rules+llm") if use_llm else ("rules",):
            expected, found, seconds = [], [], []
            for case in cases:
                start = time.perf_counter()
                parsed = rec.parser.parse(case["text"])
                if mode == "rules+llm" and parsed.left:
                    mentions, _, _ = asyncio.run(propose(rec.llm, rec.settings.llm,
                                                         parsed.left, rec.names))
                    parsed.mentions += mentions
                try:
                    plan = plan_request(RecommendRequest(text=case["text"]), parsed,
                                        rec.names, rec.catalogue)
                    keys = constraint_keys(plan.understood)
                except Exception:  # noqa: BLE001 - a refused text reads nothing
                    keys = set()
                seconds.append(time.perf_counter() - start)
                expected.append(set(case["expect"]))
                found.append(keys)
            precision, recall, score = f1(expected, found)
            inverted = sum(len({k.replace("|none|", "|any|") for k in e if "|none|" in k} & f)
                           for e, f in zip(expected, found))
            out[f"{name}/{mode}"] = {
                "texts": len(cases), "precision": round(precision, 4),
                "recall": round(recall, 4), "f1": round(score, 4),
                "negations_inverted": inverted,
                "misread": [case["text"] for case, e, f in zip(cases, expected, found)
                            if e != f][:20],
                "parse_ms": latency_summary(seconds)}
    return out


# --------------------------------------------------------------------------- satisfaction


def _item_facts(ds: Dataset) -> tuple[dict[str, set[str]], dict[str, int | None]]:
    names = ds.entities["name"].to_dict()
    linked: dict[str, set[str]] = {i: set() for i in ds.items.index}
    for item_id, entity_id in ds.triples[["item_id", "entity_id"]].itertuples(index=False):
        linked[item_id].add(names[entity_id])
    years = {i: (None if pd.isna(y) else int(y)) for i, y in ds.items.year.items()}
    return linked, years


def satisfies(item_id: str, filters: Filters, linked: dict[str, set[str]],
              years: dict[str, int | None]) -> bool:
    names = linked.get(item_id, set())
    for wanted in (filters.genres, filters.people, filters.categories):
        if wanted.any and not names & set(wanted.any):
            return False
        if any(name not in names for name in wanted.all) or names & set(wanted.none):
            return False
    year = years.get(item_id)
    if filters.years.start is not None and (year is None or year < filters.years.start):
        return False
    if filters.years.end is not None and (year is None or year > filters.years.end):
        return False
    return item_id not in filters.exclude_item_ids


def random_filters(ds: Dataset, rng: random.Random) -> Filters:
    genres = sorted(ds.entities[ds.entities.kind == "genre"].name)
    people_rel = ds.triples[ds.triples.relation.isin(["directed_by", "starring"])]
    counts = people_rel.entity_id.value_counts()
    names = ds.entities.loc[counts[counts >= 2].index, "name"]
    people = sorted(n for n in names if (ds.entities.name == n).sum() == 1)
    decade = rng.choice([1950, 1960, 1970, 1980, 1990])
    include = rng.sample(genres, rng.choice([0, 1, 1, 2]))
    return Filters(
        genres=NameFilter(any=include, none=rng.sample(
            [g for g in genres if g not in include], rng.choice([0, 0, 1, 2]))),
        people=NameFilter(any=rng.sample(people, rng.choice([0, 0, 0, 1])),
                          none=rng.sample(people, rng.choice([0, 1, 3]))),
        years=rng.choice([Years(), Years(), Years(start=decade, end=decade + 9),
                          Years(start=decade), Years(end=decade)]),
        exclude_item_ids=rng.sample(sorted(ds.items.index), rng.choice([0, 5, 20])),
        tail_only=rng.random() < 0.1)


def run_satisfaction(rec, ds: Dataset, n: int, k: int = 10) -> dict:
    rng = random.Random(1)
    linked, years = _item_facts(ds)
    users = sorted(ds.interactions.user_id.unique())
    violations = short = requests = empty = 0
    examples = []
    for _ in range(n):
        filters = random_filters(ds, rng)
        user = rng.choice(users)
        request = RecommendRequest(user_id=user, filters=filters, k=k, explain=False)
        answer = rec.run(request)
        requests += 1
        bad = [r.item.id for r in answer.items
               if not satisfies(r.item.id, filters, linked, years)
               or (filters.tail_only and not rec.retriever.is_tail(r.item.id))]
        violations += len(bad)
        if bad and len(examples) < 5:
            examples.append({"request": request.model_dump(exclude_defaults=True), "bad": bad})
        rated = set(ds.interactions[ds.interactions.user_id == user].item_id)
        possible = sum(1 for i in ds.items.index
                       if i not in rated and satisfies(i, filters, linked, years)
                       and (not filters.tail_only or rec.retriever.is_tail(i)))
        if len(answer.items) < min(k, possible):
            short += 1
        empty += not answer.items
    return {"requests": requests, "k": k, "items_violating": violations,
            "short_answers_where_k_existed": short, "empty_answers": empty,
            "satisfaction": 1.0 if not violations else round(1 - violations / (requests * k),
                                                             6),
            "examples": examples}


# --------------------------------------------------------------------------- latency


def run_latency(rec, repeats: int = 40) -> dict:
    users = sorted(rec.artifacts.ds.interactions.user_id.unique())[:repeats]
    filtered, parsed, explained = [], [], []
    sizes = {}
    for user in users:
        start = time.perf_counter()
        rec.run(RecommendRequest(user_id=user, k=10, explain=False, filters=Filters(
            genres=NameFilter(any=["Comedy", "Drama"]), years=Years(start=1980))))
        filtered.append(time.perf_counter() - start)
        start = time.perf_counter()
        rec.run(RecommendRequest(user_id=user, k=10, explain=False,
                                 text="a 1990s comedy, nothing with Jim Carrey"))
        parsed.append(time.perf_counter() - start)
    for user in users[:8]:
        start = time.perf_counter()
        answer = rec.run(RecommendRequest(user_id=user, k=5))
        explained.append(time.perf_counter() - start)
        sizes[user] = len(answer.model_dump_json(exclude_defaults=True))
    return {"constrained_no_explanations_ms": latency_summary(filtered),
            "parsed_text_no_explanations_ms": latency_summary(parsed),
            "top5_explained_ms": latency_summary(explained),
            "k5_answer_bytes": {"median": int(np.median(list(sizes.values()))),
                                "max": max(sizes.values())},
            "llm": "on" if rec.llm is not None else "off"}


# --------------------------------------------------------------------------- accuracy


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
    for seed in seeds:
        for kind in out[str(seed)]:
            out[str(seed)][kind].pop("per_user")
    return {"seeds": seeds, "by_seed": out, "summary": summary}


# --------------------------------------------------------------------------- sessions, goal


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


# --------------------------------------------------------------------------- main


def _served(settings: Settings):
    from rag_rec.recommender import Recommender

    return Recommender.from_settings(settings)


def report(figures: dict) -> str:
    lines = ["# Chat benchmark", "",
             f"Generated by `python -m eval.bench_chat` ({figures.get('measured_at', '')}); "
             "figures in eval/results/chat.json.", ""]
    if "parser" in figures:
        lines += ["## Free text to constraints", "",
                  "| texts | reader | n | precision | recall | F1 | negations inverted |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for name, row in figures["parser"].items():
            texts, reader = name.split("/")
            lines.append(f"| {texts} | {reader} | {row['texts']} | {row['precision']} | "
                         f"{row['recall']} | {row['f1']} | {row['negations_inverted']} |")
        lines.append("")
    if "satisfaction" in figures:
        row = figures["satisfaction"]
        lines += ["## Hard constraints", "",
                  f"{row['requests']} random requests (k={row['k']}): "
                  f"{row['items_violating']} items violating a constraint, "
                  f"{row['short_answers_where_k_existed']} short answers where k items "
                  f"existed, {row['empty_answers']} empty.", ""]
    if "accuracy" in figures:
        lines += ["## Constrained accuracy (leave-last-out, NDCG@10)", "",
                  "| constraint | users | rag_rec | EASE | SASRec-CE+crops | "
                  "rag_rec − best (95% CI) | ratio |", "|---|---:|---:|---:|---:|---|---:|"]
        for kind, row in figures["accuracy"]["summary"].items():
            diff = row["difference"]
            lines.append(f"| {kind} | {row['users']} | {row['rag_rec']} | {row['EASE']} | "
                         f"{row['SASRec-CE+crops']} | {diff['diff']:+.4f} "
                         f"({diff['ci95'][0]:+.4f} … {diff['ci95'][1]:+.4f}) | "
                         f"{diff['ratio']} |")
        lines += ["", f"Seeds {figures['accuracy']['seeds']}.", ""]
    if "sessions" in figures:
        row = figures["sessions"]
        lines += ["## Sessions", "",
                  f"{row['users']} users, {row['turns']} turns, the top item rejected each "
                  f"turn: {row['repeats']} items shown twice; NDCG@10 per turn "
                  f"{row['ndcg@10_by_turn']}.", ""]
    if "goal" in figures:
        goal = figures["goal"]
        lines += ["## next against enjoy (leave-last-out)", "",
                  "| goal | w | NDCG@10 liked | NDCG@10 all | disliked in top 10 | "
                  "mean P(like) top 10 |", "|---|---:|---:|---:|---:|---:|"]
        for name in ("next", "enjoy"):
            row = goal[name]
            lines.append(f"| {name} | {row['weight']} | {row['ndcg@10_liked']} | "
                         f"{row['ndcg@10_all']} | {row['disliked_in_top10']} | "
                         f"{row['mean_p_like_top10']} |")
        diff = goal["enjoy_minus_next_liked"]
        lines += ["", f"enjoy − next on liked items: {diff['diff']:+.4f} "
                      f"({diff['ci95'][0]:+.4f} … {diff['ci95'][1]:+.4f}).", ""]
    if "latency" in figures:
        row = figures["latency"]
        lines += ["## Latency (this machine)", "",
                  "| request | p50 ms | p95 ms |", "|---|---:|---:|"]
        for name in ("constrained_no_explanations_ms", "parsed_text_no_explanations_ms",
                     "top5_explained_ms"):
            lines.append(f"| {name.removesuffix('_ms').replace('_', ' ')} | "
                         f"{row[name]['p50_ms']} | {row[name]['p95_ms']} |")
        lines += ["", f"A k=5 answer: {row['k5_answer_bytes']['median']} bytes (median); "
                      f"LLM {row['llm']}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--generated", type=int, default=300)
    parser.add_argument("--llm", action="store_true", help="also parse with the LLM")
    args = parser.parse_args()
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; valid: {', '.join(SECTIONS)}")
    settings = get_settings()
    ds = load_dataset(settings.data, settings.home)
    seeds = [int(s) for s in args.seeds.split(",")]
    path = Path(__file__).parent / "results" / "chat.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    figures = {key: value for key, value in figures.items()
               if key in SECTIONS or key == "commands"}
    figures.setdefault("commands", {})
    if {"parser", "satisfaction", "latency"} & set(sections):
        with _served(settings) as rec:
            if "parser" in sections:
                figures["parser"] = run_parser(rec, ds, args.generated, args.llm)
            if "satisfaction" in sections:
                figures["satisfaction"] = run_satisfaction(rec, ds, args.requests)
            if "latency" in sections:
                figures["latency"] = run_latency(rec)
    if "accuracy" in sections:
        figures["accuracy"] = run_accuracy(settings, ds, seeds)
    if "sessions" in sections:
        figures["sessions"] = run_sessions(settings, ds, seeds[0])
    if "goal" in sections:
        figures["goal"] = run_goal(settings, ds, seeds[0])
    for section in sections:
        figures["commands"][section] = ("python -m eval.bench_chat --sections " + section
                                        + (f" --seeds {args.seeds}" if section in
                                           ("accuracy", "sessions", "goal") else ""))
    written = write_results("chat", figures)
    text = report(json.loads(written.read_text()))
    REPORT.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
