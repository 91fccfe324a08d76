"""docs/configuration.md, generated from `Settings` so that the page cannot drift.

Every section and field of `rag_rec.settings.Settings`, nested models included (a field
typed as a pydantic model becomes a section of its own, its variables one `__` deeper):
the environment variable that sets it, its type, default, bounds, and its meaning, which
is the docstring written under the field in the source (read with `ast`; pydantic keeps
no attribute docstrings by default). The class docstring introduces each section.

    python -m rag_rec.config_docs            # rewrite docs/configuration.md
    python -m rag_rec.config_docs --check    # exit 1 when the page is stale

tests/test_config_docs.py asserts that the committed page equals `render()`.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import os
import sys
import textwrap
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import annotated_types as at
from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from rag_rec.settings import PROJECT_ROOT, Settings

PAGE = PROJECT_ROOT / "docs" / "configuration.md"

#: The conventional variables `Settings` accepts beside the nested form: the top-level
#: field that reads each one, and the setting `Settings.model_post_init` copies it into.
#: render() refuses a Settings field with its own alias that is not listed here.
ALIASES = {
    "llm_url": "llm.url",
    "neo4j_uri": "graph.uri",
    "neo4j_user": "graph.user",
    "neo4j_password": "graph.password",
}

_BOUNDS = ((at.Gt, "gt", ">"), (at.Ge, "ge", "≥"), (at.Lt, "lt", "<"), (at.Le, "le", "≤"),
           (at.MinLen, "min_length", "length ≥"), (at.MaxLen, "max_length", "length ≤"))


def attribute_docstrings(cls: type) -> dict[str, str]:
    """The docstring written under each annotated attribute of `cls` and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass.__module__.startswith(("pydantic", "pydantic_settings")):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (`X` or `X | None`), or None for a leaf."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _type(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type(a) for a in args)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field: FieldInfo) -> str:
    parts = []
    for kind, attr, sign in _BOUNDS:
        parts += [f"{sign} {getattr(m, attr)}" for m in field.metadata if isinstance(m, kind)]
    # Constraints on a tuple's items (`tuple[PositiveInt, ...]`).
    for arg in typing.get_args(field.annotation):
        if typing.get_origin(arg) is typing.Annotated:
            for kind, attr, sign in _BOUNDS:
                parts += [f"each {sign} {getattr(m, attr)}"
                          for m in typing.get_args(arg)[1:] if isinstance(m, kind)]
    return ", ".join(parts)


def _value(value: Any) -> str:
    """A default as it would be written in the environment."""
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Path):
        # Paths beside the checkout are shown relative to it, the same on every machine.
        if value.is_relative_to(PROJECT_ROOT.parent):
            return f"<repo>/{os.path.relpath(value, PROJECT_ROOT)}"
        return str(value)
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, (bool, tuple, list, dict)):
        return json.dumps(value)
    return str(value)


def _default(field: FieldInfo) -> Any:
    if field.default is not PydanticUndefined:
        return field.default
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return PydanticUndefined


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _section(model: type[BaseModel], path: tuple[str, ...], env: str, delimiter: str,
             aliases: dict[str, str], out: list[str]) -> None:
    """Append `model`'s table of plain fields, then a subsection per nested model."""
    docs = attribute_docstrings(model)
    leaves, nested = [], []
    for name, field in model.model_fields.items():
        if not path and name in ALIASES:  # shown on the settings they override
            continue
        sub = _model_of(field.annotation)
        (nested if sub else leaves).append((name, field, sub))
    if leaves:
        out += ["| setting | environment variable | type | default | bounds | meaning |",
                "|---|---|---|---|---|---|"]
        for name, field, _ in leaves:
            dotted = ".".join((*path, name))
            var = f"`{env}{name.upper()}`"
            if dotted in aliases:
                var += f" or `{aliases[dotted]}`"
            default = _default(field)
            default = "required" if default is PydanticUndefined else f"`{_value(default)}`"
            out.append(f"| `{dotted}` | {var} | `{_type(field.annotation)}` | {default} | "
                       f"{_bounds(field)} | {_cell(docs.get(name, '—'))} |")
        out.append("")
    for name, _field, sub in nested:
        sub_path = (*path, name)
        out += [f"{'#' * min(len(sub_path) + 1, 6)} `{'.'.join(sub_path)}` ({sub.__name__})",
                ""]
        if sub.__doc__:
            out += [" ".join(inspect.cleandoc(sub.__doc__).split()), ""]
        _section(sub, sub_path, f"{env}{name.upper()}{delimiter}", delimiter, aliases, out)


def render(settings: type[BaseSettings] = Settings) -> str:
    """The configuration page, from the `Settings` class as it is now."""
    config = settings.model_config
    prefix = (config.get("env_prefix") or "").upper()
    delimiter = config.get("env_nested_delimiter") or "__"
    aliases: dict[str, str] = {}
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            continue
        if name not in ALIASES:
            raise ValueError(f"Settings.{name} reads its own variable ({alias!r}); add it to "
                             f"rag_rec.config_docs.ALIASES with the setting it overrides")
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        aliases[ALIASES[name]] = "` or `".join(str(c) for c in choices)
    out = ["# Configuration", "",
           "<!-- Generated by `python -m rag_rec.config_docs` from rag_rec/settings/; "
           "do not edit by hand. -->", "",
           " ".join(inspect.cleandoc(settings.__doc__ or "").split()), "",
           f"Every field is read from the environment as `{prefix}<SECTION>{delimiter}"
           f"<FIELD>` (sections nest one `{delimiter}` deeper each, e.g. "
           f"`{prefix}GRAPH{delimiter}BOLT_PORT=7688`), case-insensitively. Lists are "
           "written as JSON (`RAG_REC_SOURCES__ENABLED='[\"ease\", \"sasrec\"]'`); a default "
           "shown as `unset` means the field is None unless set."
           + (" The conventional variables " + ", ".join(f"`{v}`" for v in aliases.values())
              + " are read as well and win over the nested form." if aliases else ""),
           "",
           "## General", ""]
    _section(settings, (), prefix, delimiter, aliases, out)
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when docs/configuration.md differs from render()")
    args = parser.parse_args(argv)
    text = render()
    current = PAGE.read_text() if PAGE.exists() else None
    if args.check:
        if current != text:
            print(f"{PAGE.relative_to(PROJECT_ROOT)} is stale: run python -m "
                  "rag_rec.config_docs", file=sys.stderr)
            return 1
        return 0
    if current != text:
        PAGE.parent.mkdir(parents=True, exist_ok=True)
        PAGE.write_text(text)
        print(f"wrote {PAGE.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
