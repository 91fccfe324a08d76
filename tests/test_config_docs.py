"""docs/configuration.md is generated from `Settings` (rag_rec/config_docs.py): the
committed page must be what the generator writes now, so a setting changed without
regenerating the page fails here. No server, no build."""

from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag_rec import config_docs
from rag_rec.settings import Settings


class _Sasrec(BaseModel):
    """One source's own knobs."""

    epochs: int = Field(90, ge=1)
    """Upper bound on training epochs."""
    window: tuple[int, ...] = (1, 3)


class _Sources(BaseModel):
    """The candidate sources."""

    enabled: tuple[str, ...] = ("ease", "sasrec")
    """Which sources run."""
    sasrec: _Sasrec = _Sasrec()


class _Nested(BaseSettings):
    """A settings class with a model nested two deep."""

    model_config = SettingsConfigDict(env_prefix="RAG_REC_", env_nested_delimiter="__")

    sources: _Sources = _Sources()


def test_committed_page_is_current():
    assert config_docs.PAGE.read_text() == config_docs.render(), (
        "docs/configuration.md is stale: run python -m rag_rec.config_docs")


def _leaves(model: type, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, field in model.model_fields.items():
        sub = config_docs._model_of(field.annotation)
        out += _leaves(sub, (*path, name)) if sub is not None else [(*path, name)]
    return out


def test_every_field_has_a_row_with_its_variable():
    page = config_docs.render()
    nested = [path for path in _leaves(Settings) if len(path) > 1]
    assert ("sources", "sasrec", "epochs") in nested
    for path in nested:
        row = f"| `{'.'.join(path)}` | `RAG_REC_{'__'.join(path).upper()}`"
        assert row in page
    assert "`RAG_REC_GRAPH__URI` or `NEO4J_URI`" in page
    assert "`RAG_REC_LLM__URL` or `RAG_REC_LLM_URL`" in page
    assert "| `graph.bolt_port` | `RAG_REC_GRAPH__BOLT_PORT` | `int` | `7687` | ≥ 1024, ≤ 65535 |" \
        in page


def test_nested_models_become_subsections_with_their_variables(monkeypatch):
    page = config_docs.render(_Nested)
    assert "## `sources` (_Sources)" in page
    assert "### `sources.sasrec` (_Sasrec)" in page
    assert "One source's own knobs." in page
    assert ("| `sources.sasrec.epochs` | `RAG_REC_SOURCES__SASREC__EPOCHS` | `int` | `90` | "
            "≥ 1 | Upper bound on training epochs. |") in page
    assert "| `sources.sasrec.window` | `RAG_REC_SOURCES__SASREC__WINDOW` | `tuple[int, ...]` | " \
        "`[1, 3]` |  | — |" in page
    # The variable the page names is the one pydantic-settings reads.
    monkeypatch.setenv("RAG_REC_SOURCES__SASREC__EPOCHS", "7")
    assert _Nested().sources.sasrec.epochs == 7


def test_check_fails_on_a_stale_page_and_passes_once_rewritten(tmp_path, monkeypatch):
    page = tmp_path / "configuration.md"
    page.write_text("# Configuration\n\nstale\n")
    monkeypatch.setattr(config_docs, "PAGE", page)
    monkeypatch.setattr(config_docs, "PROJECT_ROOT", tmp_path)
    assert config_docs.main(["--check"]) == 1
    assert config_docs.main([]) == 0
    assert config_docs.main(["--check"]) == 0
    assert page.read_text() == config_docs.render()


def test_an_unlisted_alias_is_refused():
    from pydantic import AliasChoices

    class _Aliased(_Nested):
        other_url: str | None = Field(None, validation_alias=AliasChoices("OTHER_URL"))

    try:
        config_docs.render(_Aliased)
    except ValueError as exc:
        assert "ALIASES" in str(exc)
    else:
        raise AssertionError("an alias missing from ALIASES was documented silently")
