"""What every settings section shares: the repository root and the `UNKEYED` marker.

A module of its own so that the section modules and `Settings` import it without a
circle; `rag_rec.settings` re-exports both.
"""

from __future__ import annotations

from pathlib import Path

#: The repository root: graph/, prompts/ and eval/ live beside the package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent

UNKEYED = {"keyed": False}
"""`json_schema_extra` of a field that changes no build artifact (speed, a serving-only
knob, a path whose content the dataset's fingerprint covers): the build steps that read
its section leave it out of their keys (rag_rec/steps.py)."""
