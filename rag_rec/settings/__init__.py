"""One typed settings object for every stage.

Each stage reads only its own section. Values come from the environment
(`RAG_REC_<SECTION>__<FIELD>`, e.g. `RAG_REC_GRAPH__BOLT_PORT=7688`), with the
conventional `NEO4J_URI` / `NEO4J_USER` / `NEO4J_PASSWORD` and `RAG_REC_LLM_URL`
accepted as well, so a user with their own servers sets only those.

The sections live beside this module, by concern: `pipeline.py` (what a build reads:
data, embeddings, index, ranker slice, retrieval, sources, scorer, P(like)),
`serving.py` (graph, LLM, logs, HTTP service) and `base.py` (`PROJECT_ROOT`,
`UNKEYED`); import them all from `rag_rec.settings`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag_rec.settings.base import PROJECT_ROOT, UNKEYED
from rag_rec.settings.pipeline import (
    DataSettings,
    EaseSettings,
    EmbedSettings,
    IALSSettings,
    IndexSettings,
    LikeSettings,
    MarkovSettings,
    RankerSliceSettings,
    RetrievalSettings,
    SASRecSettings,
    ScorerSettings,
    SourceSettings,
)
from rag_rec.settings.serving import ApiSettings, GraphSettings, LLMSettings, LogSettings

__all__ = [
    "PROJECT_ROOT", "UNKEYED", "ApiSettings", "DataSettings", "EaseSettings",
    "EmbedSettings", "GraphSettings", "IALSSettings", "IndexSettings", "LLMSettings",
    "LikeSettings", "LogSettings", "MarkovSettings", "RankerSliceSettings",
    "RetrievalSettings", "SASRecSettings", "ScorerSettings", "Settings", "SourceSettings",
    "get_settings", "updated", "IMPORTED_DATASET",
]

IMPORTED_DATASET = Path("data") / "imported.json"
"""Under the home: the folder `rag-rec data import` made the configured dataset
(`{"source": ...}`); `RAG_REC_DATA__SOURCE` wins over it."""


class Settings(BaseSettings):
    """All of rag_rec's configuration. Build once with `get_settings()`."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_REC_", env_nested_delimiter="__", extra="ignore"
    )

    home: Path = PROJECT_ROOT / "artifacts"
    """Artifacts folder: fetched data, server data and logs, models, indexes, checkpoints."""
    data: DataSettings = DataSettings()
    graph: GraphSettings = GraphSettings()
    llm: LLMSettings = LLMSettings()
    embed: EmbedSettings = EmbedSettings()
    index: IndexSettings = IndexSettings()
    ranker_slice: RankerSliceSettings = RankerSliceSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    sources: SourceSettings = SourceSettings()
    scorer: ScorerSettings = ScorerSettings()
    api: ApiSettings = ApiSettings()
    like: LikeSettings = LikeSettings()
    log: LogSettings = LogSettings()

    llm_url: str | None = Field(None, validation_alias=AliasChoices("RAG_REC_LLM_URL"))
    neo4j_uri: str | None = Field(None, validation_alias=AliasChoices("NEO4J_URI"))
    neo4j_user: str | None = Field(None, validation_alias=AliasChoices("NEO4J_USER"))
    neo4j_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("NEO4J_PASSWORD")
    )

    def model_post_init(self, _context: object) -> None:
        # The conventional NEO4J_* variables win over the nested form: they are what
        # every Neo4j tool and tutorial tells users to set.
        if self.llm_url:
            self.llm.url = self.llm_url
        if self.neo4j_uri:
            self.graph.uri = self.neo4j_uri
        if self.neo4j_user:
            self.graph.user = self.neo4j_user
        if self.neo4j_password:
            self.graph.password = self.neo4j_password
        recorded = self.home / IMPORTED_DATASET
        if self.data.source is None and recorded.is_file():
            self.data = self.data.model_copy(update={
                "source": Path(json.loads(recorded.read_text())["source"])})


Section = TypeVar("Section", bound=BaseModel)


def updated(section: Section, changes: Mapping[str, Any]) -> Section:
    """A copy of `section` with `changes`, where a mapping given for a nested section
    changes only those of its fields: `updated(sources, {"sasrec": {"epochs": 2}})`
    keeps SASRec's other settings, which `model_copy(update=...)` would replace whole."""
    return section.model_copy(update={
        name: updated(getattr(section, name), value)
        if isinstance(value, Mapping) and isinstance(getattr(section, name, None), BaseModel)
        else value
        for name, value in changes.items()})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
