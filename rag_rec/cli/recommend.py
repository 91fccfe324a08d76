"""`rag-rec recommend`, `search` and `similar`: the engine's answers, printed as text
that reads at 80 columns or as JSON."""

from __future__ import annotations

import json
import textwrap
from typing import Annotated, Any

import typer
from rich.markup import escape

from rag_rec.cli.app import JsonFlag, app, console, handle_errors


@app.command("recommend")
@handle_errors
def recommend(
    user: Annotated[str | None, typer.Option(help="A known user id.")] = None,
    liked: Annotated[list[str] | None, typer.Option(
        help="An item id they like (repeatable).")] = None,
    ask: Annotated[str | None, typer.Option(
        "--ask", "--text", help="What they ask, in words ('a 90s comedy, no Jim Carrey').")
    ] = None,
    genre: Annotated[list[str] | None, typer.Option(help="Only this genre (repeatable: any).")
                     ] = None,
    person: Annotated[list[str] | None, typer.Option(
        help="Only items with this person or company, any role (repeatable: any).")] = None,
    decade: Annotated[int | None, typer.Option(help="Only this decade, e.g. 1990.")] = None,
    without: Annotated[list[str] | None, typer.Option(
        help="Never a genre, person or category of this name (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Never this item id (repeatable).")
                       ] = None,
    goal: Annotated[str | None, typer.Option(help="next (watch next) or enjoy (also like).")
                    ] = None,
    session: Annotated[str | None, typer.Option(help="Remember shown items under this id.")
                       ] = None,
    k: Annotated[int, typer.Option(min=1, max=100)] = 10,
    explain: Annotated[bool, typer.Option(help="Ask the LLM for explanations.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Explained recommendations: a known user and/or liked items and/or words, with
    filters; the same request as HTTP and MCP."""
    from rag_rec.chat import Filters, NameFilter, RecommendRequest, Years
    from rag_rec.recommender import Recommender

    request = RecommendRequest(
        user_id=user, liked_item_ids=liked or [], text=ask, goal=goal, session_id=session,
        k=k, explain=explain, filters=Filters(
            genres=NameFilter(any=genre or []), people=NameFilter(any=person or []),
            entities=NameFilter(none=without or []), exclude_item_ids=exclude or [],
            years=Years(start=decade, end=decade + 9) if decade is not None else Years()))
    with Recommender.from_settings(use_llm=explain) as rec:  # no LLM (or its start) for --no-explain
        result = rec.run(request)
    if as_json:
        print(result.model_dump_json(indent=2, exclude_defaults=True))
        return
    _print_recommendations(result, f"user {user}" if user is not None else "a new user")


def _print_recommendations(result: Any, who: str) -> None:
    """`rag-rec recommend` as text that reads at 80 columns: each item a numbered block
    (title, P(next), P(like)), its why and cited facts wrapped beneath."""
    width = min(console.width, 100)
    console.print(f"[bold]Recommendations for {escape(who)}[/bold]")
    understood = result.understood
    if understood is not None and understood.constraints:
        console.print(escape("Understood: " + "; ".join(
            f"{c.mode} {c.kind}: {', '.join(c.entities) or c.asked}"
            for c in understood.constraints)))
    for note in result.notes:
        console.print(f"[yellow]{escape(note)}[/yellow]")
    for r in result.items:
        year = f" ({r.item.year})" if r.item.year else ""
        numbers = " · ".join(part for part in (
            f"P(next) {r.p_next:.1%}" if r.p_next is not None else "",
            f"P(like) {r.p_like:.0%}" if r.p_like is not None else "") if part)
        # Titles, facts and LLM text contain brackets: escape them, or rich reads
        # `-[directed_by]->` as markup and drops it.
        console.print(f"\n[bold]{r.rank}. {escape(r.item.title + year)}[/bold]  "
                      f"[dim]{r.item.id} · {numbers}[/dim]")
        if r.explanation:
            for line in textwrap.wrap(r.explanation.text, width - 3):
                console.print("   " + escape(line))
            for fact in r.explanation.facts_in_words:
                for n, line in enumerate(textwrap.wrap(fact, width - 5)):
                    console.print(("   • " if n == 0 else "     ") + escape(line))
            if r.explanation.source != "llm":
                console.print(f"   [dim]({r.explanation.source}: "
                              f"{escape(r.explanation.note or '')})[/dim]")
    for line in textwrap.wrap(
            "P(next): calibrated chance it is among what you watch next (the items on one "
            "list share that chance, so each is small) · P(like): chance you rate it 4 or 5 "
            "stars if you watch it", width):
        console.print(f"[dim]{line}[/dim]")
    status = ", ".join(result.flags) if result.flags else "all stages ran"
    console.print(f"\ncold start: {result.cold_start} · degraded: {result.degraded} "
                  f"({escape(status)})" + (f" · session {result.session_id}"
                                           if result.session_id else ""))


@app.command("search")
@handle_errors
def search(query: Annotated[str, typer.Argument(help="A title or a name.")],
           k: Annotated[int, typer.Option(min=1, max=100)] = 10,
           as_json: JsonFlag = False) -> None:
    """Titles and graph names (genres, people and companies, categories) to ids."""
    from dataclasses import asdict

    from rag_rec.recommender import Recommender

    with Recommender.from_settings(use_llm=False) as rec:
        hits = rec.search(query, k)
    if as_json:
        print(json.dumps([asdict(hit) for hit in hits], indent=2))
        return
    for hit in hits:
        console.print(f"{hit.score:5.1f}  {hit.kind:<9} {escape(hit.name)}  "
                      f"[dim]{escape(hit.id)}[/dim]")


@app.command("similar")
@handle_errors
def similar(item: Annotated[str, typer.Argument(help="An item id.")],
            k: Annotated[int, typer.Option(min=1, max=100)] = 10,
            as_json: JsonFlag = False) -> None:
    """The items closest to one in the combined text + knowledge-graph space."""
    from rag_rec.recommender import Recommender

    with Recommender.from_settings(use_llm=False) as rec:
        hits = rec.similar_items(item, k)
    if as_json:
        print(json.dumps([{"item": i.model_dump(mode="json", exclude_defaults=True),
                           "similarity": round(score, 4)} for i, score in hits], indent=2))
        return
    for item_found, score in hits:
        year = f" ({item_found.year})" if item_found.year else ""
        console.print(f"{score:.3f}  {escape(item_found.title + year)}  "
                      f"[dim]{item_found.id}[/dim]")
