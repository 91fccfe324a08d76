"""The build's artifact graph: what each step reads, and the keys derived from it.

    step     reads (settings)                        after      facts the build adds
    kg       data, ranker_slice, embed               -          the dataset's fingerprint, the split
    index    index                                   kg         the text encoder's identity
    sources  sources, retrieval.max_entity_degree    index
    scorer   scorer, retrieval                       sources
    like     like                                    index

A step's key hashes exactly what it declares: the values of the settings sections (or
single fields) it reads, the keys of the steps it comes after, the facts the build hands
it, and its `version`, bumped when its code changes what it writes. A field that changes
no artifact (speed, a serving-only knob, a path whose content is fingerprinted) says so on
the field itself with `settings.UNKEYED`. Nobody lists fields by hand: a new setting in a
section is in the key of every step that reads the section, and of every step after it.

Each step writes under `<home>/builds/<split>/<step>-<key>/` and records there, in
`step.json`, the key and the inputs it was built from; `check_step` refuses a folder
whose record does not match, so nothing built from other inputs is ever served.

`timed` records each step's wall time and the process's peak memory in
`<home>/builds/<split>/timings.json` (the last run of each step; part of no key):
what docs/scale.md reads to say which step dominates.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import resource
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from rag_rec.errors import StaleArtifact
from rag_rec.settings import Settings

RECORD = "step.json"
TIMINGS = "timings.json"


@dataclass(frozen=True)
class Step:
    """One build step: the settings it reads and the steps whose artifacts it reads."""

    name: str
    reads: tuple[str, ...]
    """Settings sections (`embed`) or single fields (`retrieval.max_entity_degree`)."""
    after: tuple[str, ...] = ()
    version: int = 1
    """Bump when the step's code changes what it writes: every build of it is then stale."""


STEPS: dict[str, Step] = {step.name: step for step in (
    Step("kg", reads=("data", "ranker_slice", "embed")),
    Step("index", reads=("index",), after=("kg",)),
    Step("sources", reads=("sources", "retrieval.max_entity_degree"), after=("index",)),
    Step("scorer", reads=("scorer", "retrieval"), after=("sources",), version=2),
    Step("like", reads=("like",), after=("index",), version=2),
)}
"""In dependency order: a step comes after every step it reads."""


def keyed_values(model: BaseModel) -> dict[str, Any]:
    """A settings section's values that change an artifact (nested sections recursed)."""
    values = {}
    for name, info in type(model).model_fields.items():
        if (info.json_schema_extra or {}).get("keyed") is False:
            continue
        value = getattr(model, name)
        values[name] = keyed_values(value) if isinstance(value, BaseModel) else value
    return values


def read_settings(step: Step, settings: Settings) -> dict[str, Any]:
    """The values of what `step` declares it reads."""
    values = {}
    for path in step.reads:
        section, _, field = path.partition(".")
        model = getattr(settings, section)
        if field:
            values[path] = getattr(model, field)
        else:
            values[path] = keyed_values(model)
    return values


def step_inputs(settings: Settings, facts: Mapping[str, Mapping[str, Any]]
                ) -> dict[str, dict[str, Any]]:
    """Every step's inputs, in dependency order; its key is their hash (`digest`)."""
    inputs: dict[str, dict[str, Any]] = {}
    for step in STEPS.values():
        inputs[step.name] = {
            "step": step.name, "version": step.version,
            "settings": read_settings(step, settings),
            "after": {name: digest(inputs[name]) for name in step.after},
            "facts": dict(facts.get(step.name, {})),
        }
    return inputs


def step_keys(settings: Settings, facts: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Step name -> key, for these settings and the facts the build hands the steps."""
    return {name: digest(values) for name, values in step_inputs(settings, facts).items()}


def digest(values: Mapping[str, Any]) -> str:
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def record_step(folder: Path, inputs: Mapping[str, Any]) -> None:
    """Write the step's record last, once its artifact is complete: a folder without one
    is an interrupted build."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"key": digest(inputs), **inputs}
    tmp = folder / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
    tmp.replace(folder / RECORD)


def check_step(folder: Path, key: str, rebuild: str) -> None:
    """`StaleArtifact` unless `folder` holds a complete artifact recorded under `key`."""
    try:
        recorded = json.loads((folder / RECORD).read_text()).get("key")
    except (OSError, ValueError):
        raise StaleArtifact(f"{folder} holds no finished build step; run `{rebuild}`") from None
    if recorded != key:
        raise StaleArtifact(f"{folder} was built from other inputs (key {recorded}, "
                            f"expected {key}); run `{rebuild}`")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (`getrusage`; Linux reports
    KB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


@contextmanager
def timed(split_folder: Path, name: str) -> Iterator[None]:
    """Record what runs inside as step `name` in `split_folder/timings.json`: its wall
    time, the process's peak RSS at its end, and how much it raised that peak (the
    step's own peak when it is the largest so far; 0 when an earlier step peaked
    higher), and the process (a step run beside another has its own). Nothing is
    recorded when it raises."""
    start, peak_before = time.perf_counter(), peak_rss_mb()
    yield
    peak = peak_rss_mb()
    record = {"seconds": round(time.perf_counter() - start, 3), "peak_rss_mb": peak,
              "peak_rss_rise_mb": round(peak - peak_before, 1),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid()}
    path = split_folder / TIMINGS
    split_folder.mkdir(parents=True, exist_ok=True)
    # Locked: the build's holdout sources are timed in a process of their own, beside
    # the serving ones (build.fit_beside), and neither may drop the other's record.
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            timings = json.loads(path.read_text())
        except (OSError, ValueError):
            timings = {}
        timings[name] = record
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(timings, indent=1, sort_keys=True))
        tmp.replace(path)
