"""The sources by name: `source_resolver` (PyKEEN's `class_resolver`) and `make_source`.

In: a source name (`ease`, `ials`, `sasrec`, `markov`, `faiss`, `kg_path`, `popular`),
a `Catalogue`, and the settings sections a source reads. Out: an unfitted source. An
unknown name raises a `KeyError` that lists the valid ones.
"""

from __future__ import annotations

from class_resolver import ClassResolver

from rag_rec.settings import RetrievalSettings, SourceSettings
from rag_rec.sources.base import BaseSource, CandidateSource, Catalogue
from rag_rec.sources.ease import EASE
from rag_rec.sources.ials import IALS
from rag_rec.sources.kg_path import KGPath
from rag_rec.sources.markov import Markov
from rag_rec.sources.popular import Popular
from rag_rec.sources.sasrec import SASRec
from rag_rec.sources.vector import Faiss

class _SourceResolver(ClassResolver[BaseSource]):
    """class_resolver's lookup, its unknown-name error listing the names as configured
    (`kg_path`, not the folded `kgpath`)."""

    def lookup(self, query: str | type[BaseSource] | None,
               default: type[BaseSource] | None = None) -> type[BaseSource]:
        try:
            return super().lookup(query, default)
        except KeyError:
            names = ", ".join(sorted(cls.name for cls in self))
            raise KeyError(f"unknown candidate source {query!r}; valid: {names}") from None


source_resolver = _SourceResolver([EASE, IALS, SASRec, Markov, Faiss, KGPath, Popular],
                                  base=BaseSource, suffix="", synonym_attribute="name")
"""Source classes by name. The resolver folds case and underscores (`kg_path` and
`KGPath` find the same class); `make(name, catalogue=...)` builds one with its default
settings."""


def make_source(name: str, catalogue: Catalogue, settings: SourceSettings,
                retrieval: RetrievalSettings) -> CandidateSource:
    """Source `name`, reading its own section of `settings` (and `retrieval` for the
    KG-path source's hub limit)."""
    return source_resolver.lookup(name).from_settings(catalogue, settings, retrieval)
