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
the leave-last-out split for each seed like eval/offline.py. The sections live in
eval/chat_parser.py (parser) and eval/chat_loo.py (accuracy, sessions, goal); this module
holds satisfaction, latency, the report and the command.
"""

from __future__ import annotations

import argparse
import json
import random
import unicodedata
import time
from pathlib import Path

import numpy as np
import pandas as pd

from eval.common import latency_summary, write_results
from eval.chat_loo import run_accuracy, run_goal, run_sessions
from eval.chat_parser import run_parser
from rag_rec.chat import Filters, NameFilter, RecommendRequest, Years
from rag_rec.data import Dataset, load_dataset
from rag_rec.settings import Settings, get_settings

REPORT = Path(__file__).parent / "reports" / "chat.md"
SECTIONS = ("parser", "satisfaction", "latency", "accuracy", "sessions", "goal")


# --------------------------------------------------------------------------- satisfaction


def _folded(name: str) -> str:
    """A name as a person would not tell apart: case and accents aside (two DBpedia
    resources for one actor, "Rade Šerbedžija" and "Rade Serbedzija", count as one)."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _item_facts(ds: Dataset) -> tuple[dict[str, set[str]], dict[str, int | None], set[str]]:
    """Each item's linked names (folded), years, and the items the graph knows people,
    companies or categories of (not only a genre and a decade)."""
    names = {e: _folded(n) for e, n in ds.entities["name"].items()}
    linked: dict[str, set[str]] = {i: set() for i in ds.items.index}
    for item_id, entity_id in ds.triples[["item_id", "entity_id"]].itertuples(index=False):
        linked[item_id].add(names[entity_id])
    years = {i: (None if pd.isna(y) else int(y)) for i, y in ds.items.year.items()}
    side = ds.triples.relation.isin(["has_genre", "released_in_decade"])
    return linked, years, set(ds.triples[~side].item_id)


def satisfies(item_id: str, filters: Filters, linked: dict[str, set[str]],
              years: dict[str, int | None]) -> bool:
    names = linked.get(item_id, set())
    for wanted in (filters.genres, filters.people, filters.categories):
        if wanted.any and not names & {_folded(n) for n in wanted.any}:
            return False
        if any(_folded(n) not in names for n in wanted.all) or names & {
                _folded(n) for n in wanted.none}:
            return False
    year = years.get(item_id)
    if filters.years.start is not None and (year is None or year < filters.years.start):
        return False
    if filters.years.end is not None and (year is None or year > filters.years.end):
        return False
    return item_id not in filters.exclude_item_ids


def name_pools(ds: Dataset) -> tuple[list[str], list[str]]:
    """(genres, people) constraints are drawn from: people who directed or starred in at
    least two films and share their name with no other entity."""
    genres = sorted(ds.entities[ds.entities.kind == "genre"].name)
    people_rel = ds.triples[ds.triples.relation.isin(["directed_by", "starring"])]
    counts = people_rel.entity_id.value_counts()
    shared = ds.entities.name.value_counts()
    names = ds.entities.loc[counts[counts >= 2].index, "name"]
    return genres, sorted(n for n in set(names) if shared[n] == 1)


def random_filters(pools: tuple[list[str], list[str]], items: list[str],
                   rng: random.Random) -> Filters:
    genres, people = pools
    decade = rng.choice([1950, 1960, 1970, 1980, 1990])
    include = rng.sample(genres, rng.choice([0, 1, 1, 2]))
    return Filters(
        genres=NameFilter(any=include, none=rng.sample(
            [g for g in genres if g not in include], rng.choice([0, 0, 1, 2]))),
        people=NameFilter(any=rng.sample(people, rng.choice([0, 0, 0, 1])),
                          none=rng.sample(people, rng.choice([0, 1, 3]))),
        years=rng.choice([Years(), Years(), Years(start=decade, end=decade + 9),
                          Years(start=decade), Years(end=decade)]),
        exclude_item_ids=rng.sample(items, rng.choice([0, 5, 20])),
        tail_only=rng.random() < 0.1)


def run_satisfaction(rec, ds: Dataset, n: int, k: int = 10) -> dict:
    rng = random.Random(1)
    linked, years, described = _item_facts(ds)
    pools, items = name_pools(ds), sorted(ds.items.index)
    rated_by = ds.interactions.groupby("user_id").item_id.agg(set).to_dict()
    users = sorted(rated_by)
    violations = short = requests = empty = 0
    examples = []
    for _ in range(n):
        filters = random_filters(pools, items, rng)
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
        rated = rated_by[user]
        # Under a ban on people, an item the graph knows no people of is never given
        # (it cannot be checked): it does not count as one that could have been.
        possible = sum(1 for i in ds.items.index
                       if i not in rated and satisfies(i, filters, linked, years)
                       and (not filters.tail_only or rec.retriever.is_tail(i))
                       and (not filters.people.none or i in described))
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
            if "/" not in name:  # the build that answered
                continue
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
    parser.add_argument("--report", action="store_true",
                        help="only rewrite eval/reports/chat.md from eval/results/chat.json")
    args = parser.parse_args()
    path = Path(__file__).parent / "results" / "chat.json"
    if args.report:
        REPORT.write_text(report(json.loads(path.read_text())) + "\n")
        return
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; valid: {', '.join(SECTIONS)}")
    settings = get_settings()
    ds = load_dataset(settings.data, settings.home)
    seeds = [int(s) for s in args.seeds.split(",")]
    figures: dict = {}
    if {"parser", "satisfaction", "latency"} & set(sections):
        with _served(settings) as rec:
            if "parser" in sections:
                figures["parser"] = run_parser(rec, ds, args.generated, args.llm)
            if "satisfaction" in sections:
                figures["satisfaction"] = run_satisfaction(rec, ds, args.requests)
            if "latency" in sections:
                figures["latency"] = run_latency(rec)
            # Which build answered: the served one, or the test suite's shorter training.
            served = {"split": rec.artifacts.split_name, "scorer_key": rec.artifacts.key(
                "scorer"), "scorer_epochs": settings.scorer.epochs,
                "sasrec_epochs": settings.sources.sasrec.epochs}
            for section in ("parser", "satisfaction", "latency"):
                if section in figures:
                    figures[section]["build"] = served
    if "accuracy" in sections:
        figures["accuracy"] = run_accuracy(settings, ds, seeds)
    if "sessions" in sections:
        figures["sessions"] = run_sessions(settings, ds, seeds[0])
    if "goal" in sections:
        figures["goal"] = run_goal(settings, ds, seeds[0])
    # The sections run apart (hours apart, or side by side): each run keeps the others'.
    kept = json.loads(path.read_text()) if path.exists() else {}
    commands = kept.get("commands", {})
    for section in sections:
        commands[section] = ("python -m eval.bench_chat --sections " + section
                             + (f" --seeds {args.seeds}" if section in ("accuracy", "sessions",
                                                                       "goal") else "")
                             + (" --llm" if section == "parser" and args.llm else ""))
    figures = {**{k: v for k, v in kept.items() if k in SECTIONS}, **figures,
               "commands": commands}
    written = write_results("chat", figures)
    text = report(json.loads(written.read_text()))
    REPORT.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
