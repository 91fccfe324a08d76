"""The parser section of eval/bench_chat.py: how well free text becomes constraints.

In: the served recommender (its parser, names and catalogue), the dataset, and the
hand-written requests (eval/data/parser_cases.toml, also read by tests/test_chat.py). Out:
precision, recall and F1 of the constraints read, per text set (hand-written, generated
from templates with random graph names, typos and negations) and per reader (the rules,
and the rules with the LLM for leftover words), negations read as wishes counted apart.
"""

from __future__ import annotations

import asyncio
import random
import time
import tomllib
from pathlib import Path

from eval.common import latency_summary
from rag_rec.chat import RecommendRequest, Understood
from rag_rec.data import Dataset

CASES = Path(__file__).parent / "data" / "parser_cases.toml"



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
    shared = ds.entities.name.value_counts()
    people = sorted({n for n in names if " " in n and "(" not in n and shared[n] == 1})
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
