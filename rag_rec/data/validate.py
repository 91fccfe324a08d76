"""`rag-rec data validate` and `rag-rec data import`: a folder checked whole, and made
the configured dataset.

In: a dataset folder (the generic format, or a MovieLens-family layout). Out: a
`Validation` with the format, the statistics and every problem as `file:line: reason`
(the generic format collects them all; a MovieLens layout stops at its first, as its
reader does). `import_dataset` records a valid folder under the artifacts home, where
the settings read it (`Settings.data.source`, unless `RAG_REC_DATA__SOURCE` is set).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from rag_rec.data import generic
from rag_rec.data.readers import GENERIC, detect
from rag_rec.errors import DataError
from rag_rec.settings import IMPORTED_DATASET


class Validation(BaseModel):
    """What `rag-rec data validate` reports."""

    folder: Path
    format: str | None
    stats: dict[str, int | float | str | bool | None]
    problems: list[str]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(folder: Path) -> Validation:
    """Check `folder` whole (see the module docstring)."""
    try:
        source = detect(folder)
    except DataError as exc:
        return Validation(folder=folder, format=None, stats={}, problems=[str(exc)],
                          warnings=[])
    if source.format == GENERIC:
        cat = generic.parse(folder)
        return Validation(folder=folder, format=GENERIC, stats=cat.stats(),
                          problems=cat.problems, warnings=cat.warnings)
    from rag_rec.data.dataset import load_dataset
    from rag_rec.settings import DataSettings

    try:
        ds = load_dataset(DataSettings(source=folder), folder)
    except DataError as exc:
        return Validation(folder=folder, format=source.format, stats={},
                          problems=str(exc).splitlines(), warnings=[])
    return Validation(folder=folder, format=source.format, stats=ds.stats(), problems=[],
                      warnings=[])


def import_dataset(folder: Path, home: Path) -> tuple[Validation, Path | None]:
    """Validate `folder` and, if it has no problems, record it as the configured dataset
    (`<home>/data/imported.json`); the folder is read in place, not copied, and every
    build fingerprints what it reads, so a later edit there makes the next build refit."""
    checked = validate(folder)
    if not checked.ok:
        return checked, None
    record = home / IMPORTED_DATASET
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"source": str(folder.resolve()), "format": checked.format,
                                  "stats": checked.stats}, indent=2))
    return checked, record
