"""Explanation benchmark: are shipped explanations supported, well chosen and fast?

    uv run --extra cpu python -m eval.bench_explain [--users 24] [--cold 8] [--free-users 6]

For real users (known users by id, and cold-start users given 3 films another user rated
5) it ranks with `Recommender` (the prebuilt artifacts), retrieves the KG facts for the
top 10, takes the scorer's attention over the history (`Scorer.attention`) and explains
the top 10 (and, timed separately, the top 5) with `rag_rec.explain.explain_many` in the
configured mode (`choose` by default); a few users also in `free` mode. It measures:
unsupported claims in what is shipped (the claim checker, plus every cited path looked up
again in Neo4j), the share by mode (LLM / template / rejected-then-template), evidence
through a history film rated >= 4 where the graph has one, evidence specificity (entity
degree), and p50/p95 time of the explain stage for top 5 and top 10. Writes
eval/results/explain.json and eval/reports/explanations.md (20 explanations to read); on
another dataset than MovieLens-100K, explain-<name>.json and explanations-<name>.md, in
that dataset's words (`rag_rec.wording`) and thresholds (its rating scale; without
ratings a history item is "chosen", never rated).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path
from statistics import mean

from eval.common import latency_summary, print_table, write_results
from rag_rec.explain import check_claims, display_title, explain_many, explain_mode
from rag_rec.models import Explanation, Item, User
from rag_rec.wording import speaking_of

REPORT = Path(__file__).resolve().parent / "reports" / "explanations.md"


def verify_paths(graph, explanations: list[tuple[Item, Explanation]]) -> int:
    """Cited paths that the graph does not hold (looked up one by one, independently of
    the query that retrieved them)."""
    missing = 0
    for _, ex in explanations:
        for e in ex.evidence:
            f = e.fact
            rows = graph.driver.execute_query(
                "MATCH (c:Item {id: $c})-[r1]->(e:Entity {id: $e})<-[r2]-(h:Item {id: $h}) "
                "WHERE toLower(type(r1)) = $r1 AND toLower(type(r2)) = $r2 RETURN count(*) AS n",
                c=f.candidate_id, e=f.entity_id, h=f.history_item_id, r1=f.relation,
                r2=f.history_relation, database_="neo4j").records
            missing += rows[0]["n"] == 0
    return missing


async def run_case(rec, user: User, history: list[tuple[Item, float]],
                   items: list[Item], mode: str | None) -> dict:
    """Facts, attention and explanations for one user's top items, timed."""
    ratings = {h.id: r for h, r in history}
    t0 = time.perf_counter()
    facts = await asyncio.to_thread(rec.graph.candidate_facts, [i.id for i in items], ratings,
                                    scale=rec.artifacts.ds.meta.rating_scale)
    t_facts = time.perf_counter() - t0
    attention = rec.scorer.attention([(h.id, r) for h, r in history], [i.id for i in items])
    t0 = time.perf_counter()
    out = await explain_many(rec.llm, rec.settings.llm, user, history, items, facts, attention,
                             mode=mode)
    return {"explanations": out, "facts": facts, "explain_s": time.perf_counter() - t0,
            "facts_s": t_facts}


async def main() -> None:
    from rag_rec.recommender import Recommender

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=24, help="known users")
    parser.add_argument("--cold", type=int, default=8, help="cold-start users")
    parser.add_argument("--free-users", type=int, default=6, help="users also in free mode")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    with Recommender.from_settings() as rec, speaking_of(
            rec.artifacts.ds.meta.item_noun, rec.artifacts.ds.meta.relation_phrases,
            rec.artifacts.ds.meta.has_ratings, rec.artifacts.ds.meta.rating_scale):
        ds = rec.artifacts.ds
        meta = ds.meta
        told = (lambda r: r) if meta.has_ratings else (lambda r: None)  # chosen, not rated
        liked_at = meta.like_threshold if meta.has_ratings else None
        users = rng.sample(sorted(ds.user_ids), args.users + args.cold)
        cases = []
        for n, uid in enumerate(users):
            if n < args.users:
                result = await rec.arecommend(uid, k=10, explain=False)
                history = [(ds.item(i.item_id), told(i.rating)) for i in ds.history(uid)]
                cases.append((ds.user(uid), uid, history, [r.item for r in result.items]))
            else:  # cold start: three films this (other) user rated 5, nothing else
                liked = [i.item_id for i in ds.history(uid)
                         if i.rating >= meta.top_rating][:3]
                result = await rec.arecommend_new_user(liked, k=10, explain=False)
                history = [(ds.item(i), told(meta.top_rating)) for i in liked]
                cases.append((User(id="new"), None, history, [r.item for r in result.items]))

        shipped: list[tuple[Item, Explanation, list[tuple[Item, float]], bool, dict]] = []
        t5, t10, tf = [], [], []
        for user, uid, history, items in cases:
            top5 = await run_case(rec, user, history, items[:5], None)
            t5.append(top5["explain_s"])
            top10 = await run_case(rec, user, history, items, None)
            t10.append(top10["explain_s"])
            tf.append(top10["facts_s"])
            ratings = {h.id: r for h, r in history}
            for item, ex in zip(items, top10["explanations"]):
                liked_path = any(liked_at is None or (ratings.get(f.history_item_id) or 0)
                                 >= liked_at for f in top10["facts"][item.id])
                shipped.append((item, ex, history, liked_path, {"user": uid or "new (cold)"}))
        free: list[tuple[Item, Explanation, list[tuple[Item, float]]]] = []
        for user, uid, history, items in cases[:args.free_users]:
            case = await run_case(rec, user, history, items[:5], "free")
            free += [(i, e, history) for i, e in zip(items[:5], case["explanations"])]
        missing = verify_paths(rec.graph, [(i, e) for i, e, *_ in shipped + free])
        mode = explain_mode(rec.settings.llm)
        backend = rec.llm.name if rec.llm else "none"

    figures = {"mode": mode, "backend": backend,
               "users": {"known": args.users, "cold_start": args.cold},
               "default_mode": summarise([(i, e, h) for i, e, h, *_ in shipped], shipped),
               "free_mode": summarise(free, None),
               "cited_paths_missing_from_graph": missing,
               "latency": {"explain_top5": latency_summary(t5),
                           "explain_top10": latency_summary(t10),
                           "facts_top10": latency_summary(tf)}}
    suffix = "" if ds.name == "ml-100k" else f"-{ds.name}"  # never overwrite ML-100K's
    path = write_results(f"explain{suffix}", figures)
    d, f = figures["default_mode"], figures["free_mode"]
    flat = [{k: v for k, v in m.items() if k != "relations"} for m in (d, f)]
    for m in flat:
        m.update({f"{k} %": v for k, v in m.pop("share_pct").items()})
    print_table("Explanations", [{"": k, f"{figures['mode']} (default)": flat[0].get(k, ""),
                                  "free": flat[1].get(k, "")} for k in flat[0]])
    print_table("Explain-stage latency", [{"stage": k, **v}
                                         for k, v in figures["latency"].items()])
    report = REPORT.with_name(f"explanations{suffix}.md")
    write_report(shipped, free, figures, report)
    print(f"wrote {path} and {report}")


def summarise(rows: list[tuple[Item, Explanation, list]], with_paths) -> dict:
    n = len(rows)
    unsupported = sum(bool(ex.evidence and check_claims(ex.text, item,
                                                        [e.fact for e in ex.evidence], hist))
                      for item, ex, hist in rows)
    by = {"llm": sum(ex.source in ("llm", "llm_retry") for _, ex, _ in rows),
          "template": sum(ex.source == "template" and not ex.rejected for _, ex, _ in rows),
          "rejected_then_template": sum(ex.source == "template" and bool(ex.rejected)
                                        for _, ex, _ in rows)}
    evidence = [e for _, ex, _ in rows for e in ex.evidence]
    out = {"n": n, "unsupported_claims": unsupported,
           "share_pct": {k: round(100 * v / n, 1) for k, v in by.items()},
           "with_evidence_pct": round(100 * sum(bool(ex.evidence) for _, ex, _ in rows) / n, 1),
           "evidence_degree_mean": round(mean(e.fact.entity_degree or 0 for e in evidence), 1)
           if evidence else None,
           "evidence_degree_median": sorted(e.fact.entity_degree or 0
                                            for e in evidence)[len(evidence) // 2]
           if evidence else None,
           "low_rated_evidence": sum((e.history_rating or 5) < 3 for e in evidence),
           "relations": dict(sorted(_count(e.fact.relation for e in evidence).items(),
                                    key=lambda kv: -kv[1]))}
    if with_paths is not None:
        eligible = [ex for _, ex, _, liked, _ in with_paths if liked]
        ok = sum(bool(ex.evidence) and all((e.history_rating or 5) >= 4 for e in ex.evidence)
                 for ex in eligible)
        out["liked_evidence_pct_where_available"] = round(100 * ok / max(1, len(eligible)), 1)
        out["with_a_liked_path"] = len(eligible)
    return out


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def write_report(shipped, free, figures, report: Path = REPORT) -> None:
    rng = random.Random(1)
    picks = rng.sample(shipped, 16) + rng.sample([(i, e, h, True, {"user": "free mode"})
                                                  for i, e, h in free], 4)
    lines = ["# Explanations, for people to read", "",
             "Twenty explanations from `eval/bench_explain.py` (`eval/results/explain.json`): "
             "16 from the default mode (the LLM chooses among checked sentences) for known and "
             "cold-start users, 4 written freely by the LLM and passed (or not) by the claim "
             "checker. Each shows the short why, then the cited facts in plain words, the "
             "evidence weights, and how it was made.", ""]
    for n, (item, ex, _, _, meta) in enumerate(picks, start=1):
        lines += [f"## {n}. {display_title(item.title)} ({item.year}) - user {meta['user']}",
                  "", f"> {ex.text}", ""]
        for e in ex.evidence:
            lines.append(f"- {e.plain} *(weight {e.weight:.3f}: attention {e.attention:.2f}, "
                         f"specificity {e.specificity:.2f}, entity in {e.fact.entity_degree} "
                         "films)*")
        how = f"{ex.source}" + (f", {ex.mode} mode" if ex.mode else "")
        if ex.rejected:
            how += "; rejected: " + " | ".join(ex.rejected)
        elif ex.note:
            how += f"; {ex.note}"
        lines += ["", f"*{how}*", ""]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
