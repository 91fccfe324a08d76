"""The `rag-rec` command's Typer `app`, its shared options and helpers: what every command
module (prepare.py, recommend.py, services.py) imports. Typed errors become one readable
line on stderr and a non-zero exit code (`EXIT_CODES`)."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from rag_rec.errors import (
    DataError,
    GraphMismatch,
    GraphUnavailable,
    InvalidRequest,
    LLMUnavailable,
    RagRecError,
    UnknownItem,
    UnknownName,
    UnknownUser,
    error_line,
)
from rag_rec.settings import get_settings

app = typer.Typer(no_args_is_help=True, help="rag_rec: explained recommendations.",
                  pretty_exceptions_show_locals=False)
console = Console()

EXIT_CODES: dict[type[RagRecError], int] = {
    DataError: 3, GraphUnavailable: 4, GraphMismatch: 4, UnknownUser: 5, UnknownItem: 5,
    LLMUnavailable: 6, UnknownName: 2, InvalidRequest: 2,
}

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
VerboseFlag = Annotated[bool, typer.Option(
    "--verbose", "-v", help="Also show library logs and warnings on the terminal (they "
                            "always go to <home>/logs/rag-rec.log).")]


@app.callback()
def main(verbose: VerboseFlag = False) -> None:
    """rag_rec: explained recommendations."""
    from rag_rec.logs import setup_logging

    setup_logging(get_settings(), verbose)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RagRecError as exc:
            code = next((c for t, c in EXIT_CODES.items() if isinstance(exc, t)), 1)
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(code) from None
        except ValidationError as exc:  # a request the options make invalid
            print(f"error: {error_line(exc)}", file=sys.stderr)
            raise typer.Exit(2) from None
    return wrapper


def print_mapping(title: str, values: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(values, indent=2, default=str))
        return
    table = Table(title=title, show_header=False)
    for key, value in values.items():
        table.add_row(key, str(value))
    console.print(table)
