"""Explanations on any catalogue's k-fold build, without servers: are they supported?

    RAG_REC_DATA__SOURCE=data/goodbooks RAG_REC_LLM__BACKEND=transformers \\
        python -m eval.explain_catalogue [--split kfold0] [--users 10] [--seed 0]

For `--users` test users of the split (seeded draw), it serves the split's build (the one
eval/offline.py made, built here if missing) with the users' test-time history in the
in-memory graph (rag_rec/memory_graph.py, no Neo4j) and the configured LLM (the
`transformers` backend runs SmolLM2 in process; with none, the templates), asks for the
top 10 with explanations through `Recommender.recommend`, and counts:

- unsupported claims: explanations whose text the claim checker
  (`rag_rec.explain.check_claims`) finds a statement in that its cited facts and the
  user's history do not support;
- cited paths missing from the graph: each cited (candidate, relation, entity, history
  item) looked up again in the dataset's triples and the user's history;
- wrong item noun: explanations whose text or cited facts in words call the dataset's
  items something else ("film" for a book), a claim the checker does not read.

Writes eval/results/explain_NAME.json and eval/reports/NAME_explanations.md (every
explanation, to read).
"""

from __future__ import annotations

import argparse
import random
import re
import time
from pathlib import Path

import pandas as pd

from eval.common import write_results
from rag_rec.explain import check_claims, display_title

REPORTS = Path(__file__).resolve().parent / "reports"
OTHER_NOUNS = {"movie": r"\b(books?|novels?)\b",
               "book": r"\b(films?|movies?|cinema|directed|starring)\b"}
"""Words that name another kind of item than the dataset's, by its item noun."""


def wrong_noun(text: str, noun: str) -> bool:
    pattern = OTHER_NOUNS.get(noun)
    return bool(pattern and re.search(pattern, text, flags=re.IGNORECASE))


def path_exists(triples: set[tuple[str, str, str]], history: set[str], fact) -> bool:
    return ((fact.candidate_id, fact.relation, fact.entity_id) in triples
            and (fact.history_item_id, fact.history_relation, fact.entity_id) in triples
            and fact.history_item_id in history)


def main(argv: list[str] | None = None) -> int:
    from eval.systems import split_settings
    from rag_rec import like
    from rag_rec.artifacts import load_artifacts
    from rag_rec.build import build, load_ranker
    from rag_rec.data import load_dataset
    from rag_rec.errors import LLMUnavailable
    from rag_rec.llm import make_backend
    from rag_rec.memory_graph import InMemoryGraph
    from rag_rec.recommender import Recommender
    from rag_rec.settings import get_settings
    from rag_rec.wording import speaking_of

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default="kfold0")
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args(argv)

    settings = get_settings()
    ds = load_dataset(settings.data, settings.home)
    s = split_settings(settings, args.split, 42)
    build(s, args.split)
    artifacts = load_artifacts(s, args.split, ds=ds)
    split = artifacts.split
    seen = pd.concat([split.train, split.valid])
    graph = InMemoryGraph(ds, seen, args.split)
    try:
        llm, llm_error = make_backend(s.llm, s.home), None
    except LLMUnavailable as exc:
        llm, llm_error = None, str(exc)
    users = random.Random(args.seed).sample(sorted(split.test.user_id.unique()), args.users)
    triples = set(ds.triples.itertuples(index=False, name=None))
    noun = ds.meta.item_noun
    rows, answers = [], []
    meta = ds.meta
    # The checker reads the dataset's relation phrases ("Listed on Goodreads in ...") as
    # the answer did: outside `speaking_of` their words would count as unsupported names.
    with Recommender(s, artifacts, load_ranker(s, artifacts), like.load_built(artifacts),
                     connect_graph=lambda: graph, llm=llm, llm_error=llm_error or "") as rec, \
            speaking_of(meta.item_noun, meta.relation_phrases, meta.has_ratings,
                        meta.rating_scale):
        for uid in users:
            hist_rows = seen[seen.user_id == uid]
            history = [(ds.item(i), float(r)) for i, r in zip(hist_rows.item_id,
                                                              hist_rows.rating)]
            t0 = time.perf_counter()
            answer = rec.recommend(uid, k=args.k, explain=True)
            took = time.perf_counter() - t0
            answers.append((uid, answer, took))
            liked = set(hist_rows.item_id)
            for r in answer.items:
                ex = r.explanation
                facts = [e.fact for e in ex.evidence] if ex else []
                problems = check_claims(ex.text, r.item, facts, history) if ex and facts else []
                rows.append({"user": uid, "item": r.item.id, "title": r.item.title,
                             "text": ex.text if ex else None,
                             "source": ex.source if ex else None,
                             "evidence": len(facts), "unsupported": problems,
                             "missing_paths": sum(not path_exists(triples, liked, f)
                                                  for f in facts),
                             "wrong_noun": bool(ex and any(wrong_noun(t, noun) for t in [
                                 ex.text, *(e.plain for e in ex.evidence)])),
                             "test_hit": bool(((split.test.user_id == uid)
                                               & (split.test.item_id == r.item.id)).any())})
        n = len(rows)
        figures = {"dataset": ds.name, "split": args.split, "users": users, "k": args.k,
                   "backend": llm.name if llm else f"none ({llm_error})",
                   "mode": s.llm.explain_mode, "explanations": n,
                   "unsupported_claims": sum(bool(r["unsupported"]) for r in rows),
                   "cited_paths_missing": sum(r["missing_paths"] for r in rows),
                   "wrong_item_noun": sum(r["wrong_noun"] for r in rows),
                   "with_evidence": sum(r["evidence"] > 0 for r in rows),
                   "by_source": pd.Series([r["source"] for r in rows]).value_counts().to_dict(),
                   "test_hits_in_top_k": sum(r["test_hit"] for r in rows),
                   "seconds_per_user": [round(t, 2) for *_, t in answers],
                   "flags": sorted({f for _, a, _ in answers for f in a.flags}),
                   "rows": rows}
        path = write_results(f"explain_{ds.name}", figures)
        report = REPORTS / f"{ds.name}_explanations.md"
        report.write_text(_report(figures, answers, noun))
        print(f"{n} explanations, {figures['unsupported_claims']} unsupported, "
              f"{figures['cited_paths_missing']} cited paths missing, "
              f"{figures['wrong_item_noun']} with a wrong item noun; wrote {path} and {report}")
    return 0


def _report(figures: dict, answers: list, noun: str) -> str:
    lines = [f"# Explanations on {figures['dataset']}, for people to read", "",
             f"Generated by `python -m eval.explain_catalogue` "
             f"(`eval/results/explain_{figures['dataset']}.json`): the top {figures['k']} "
             f"for {len(figures['users'])} test users of the {figures['split']} build, "
             f"history = their train + validation {noun}s, graph in memory, LLM backend "
             f"{figures['backend']}, `{figures['mode']}` mode.", "",
             f"- explanations: {figures['explanations']}, with cited evidence: "
             f"{figures['with_evidence']}; by source: {figures['by_source']}",
             f"- **unsupported claims (claim checker): {figures['unsupported_claims']}**",
             f"- cited paths missing from the data: {figures['cited_paths_missing']}",
             f"- texts naming another kind of item than a {noun}: "
             f"{figures['wrong_item_noun']}",
             f"- test items among the top {figures['k']}: {figures['test_hits_in_top_k']}",
             f"- flags: {', '.join(figures['flags']) or 'none'}", ""]
    by_item = {(r["user"], r["item"]): r for r in figures["rows"]}
    for uid, answer, took in answers:
        lines += [f"## User {uid} ({took:.1f} s)", ""]
        for r in answer.items:
            row = by_item[(uid, r.item.id)]
            mark = " **[test item]**" if row["test_hit"] else ""
            lines.append(f"{r.rank}. **{display_title(r.item.title)}**"
                         f"{f' ({r.item.year})' if r.item.year else ''}{mark}")
            if r.explanation:
                lines.append(f"   > {r.explanation.text}")
                for e in r.explanation.evidence:
                    lines.append(f"   - {e.plain} *(weight {e.weight:.3f})*")
                note = r.explanation.source
                if row["unsupported"]:
                    note += "; UNSUPPORTED: " + " | ".join(row["unsupported"])
                if row["wrong_noun"]:
                    note += f"; names another kind of item than a {noun}"
                lines.append(f"   *{note}*")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
