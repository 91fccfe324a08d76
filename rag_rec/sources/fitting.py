"""A build's set of sources: fit the enabled ones, save them together, load them back.

In: a build's `Artifacts` (its catalogue, see `Catalogue.of`), the `sources` and
`retrieval` settings sections, train interactions and tuning items. Out: the fitted
sources by name and a report per source (its fit report, or `{"unavailable": why}` for
one that cannot fit); saved as one folder per set (`sources.json` plus each source's
files); each folder's record (rag_rec/steps.py) is checked against the build's key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rag_rec.artifacts import Artifacts
from rag_rec.errors import StaleArtifact
from rag_rec.steps import check_step
from rag_rec.settings import RetrievalSettings, SourceSettings
from rag_rec.sources.base import CandidateSource, Catalogue, SourceUnavailable
from rag_rec.sources.registry import make_source


def fit_sources(artifacts: Artifacts, settings: SourceSettings, retrieval: RetrievalSettings,
                train: pd.DataFrame, tune: pd.DataFrame | None, *,
                warm: dict[str, CandidateSource] | None = None, progress: bool = False
                ) -> tuple[dict[str, CandidateSource], dict[str, dict]]:
    """Fit every enabled source; one that cannot fit is left out and its reason kept in
    the report (`{"unavailable": "..."}`)."""
    catalogue = Catalogue.of(artifacts)
    sources, report = {}, {}
    for name in settings.enabled:
        source = make_source(name, catalogue, settings, retrieval)
        try:
            report[name] = source.fit(train, tune, warm=(warm or {}).get(name),
                                      progress=progress)
        except SourceUnavailable as exc:
            report[name] = {"unavailable": str(exc)}
            continue
        sources[name] = source
    return sources, report


def save_sources(sources: dict[str, CandidateSource], report: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for source in sources.values():
        source.save(folder)
    (folder / "sources.json").write_text(json.dumps(
        {"fitted": list(sources), "report": report}, indent=1))


def load_sources(artifacts: Artifacts, settings: SourceSettings, retrieval: RetrievalSettings,
                 folder: Path) -> tuple[dict[str, CandidateSource], dict]:
    """The fitted sources saved in `folder` (one of the sources step's folders);
    `StaleArtifact` when missing, or recorded under another key than this build's."""
    fix = f"rebuild with `{artifacts.rebuild}`"
    check_step(folder, artifacts.key("sources"), artifacts.rebuild)
    try:
        meta = json.loads((folder / "sources.json").read_text())
    except (OSError, ValueError) as exc:
        raise StaleArtifact(f"no fitted sources in {folder} ({exc}); {fix}") from None
    catalogue = Catalogue.of(artifacts)
    sources = {}
    for name in meta["fitted"]:
        source = make_source(name, catalogue, settings, retrieval)
        try:
            source.load(folder)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise StaleArtifact(f"source {name!r} in {folder} is missing or corrupt "
                                f"({exc}); {fix}") from None
        sources[name] = source
    return sources, meta["report"]
