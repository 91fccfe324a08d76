"""Build artifacts are keyed by exactly what their step reads: change any setting and
exactly the steps that read it, and the steps after them, get a new key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from rag_rec.errors import StaleArtifact
from rag_rec.settings import Settings
from rag_rec.steps import check_step, record_step, step_inputs, step_keys

EVERY_STEP = {"kg", "index", "sources", "scorer", "like"}
AFTER_INDEX = {"index", "sources", "scorer", "like"}

# What a change in each settings section must rebuild, written out here rather than
# derived from rag_rec.steps, so that a wrong declaration there fails this test. The most
# specific entry (a field over its section) wins.
REBUILDS: dict[str, set[str]] = {
    "home": set(),
    "data": EVERY_STEP,
    "ranker_slice": EVERY_STEP,
    "embed": EVERY_STEP,
    "index": AFTER_INDEX,
    "sources": {"sources", "scorer"},
    "retrieval": {"scorer"},
    "retrieval.max_entity_degree": {"sources", "scorer"},
    "scorer": {"scorer"},
    "like": {"like"},
    "graph": set(), "llm": set(), "api": set(), "log": set(), "writes": set(),
    "llm_url": set(), "neo4j_uri": set(), "neo4j_user": set(), "neo4j_password": set(),
}

# Fields that change no artifact, each for a reason its docstring gives.
UNKEYED = {"data.source", "data.kg_dir", "embed.batch_size", "retrieval.tail_boost",
           "scorer.blend_short_history", "like.enjoy_weight", "like.default_goal"}

FACTS = {"kg": {"data": "fingerprint", "split": "loo"}, "index": {"text_encoder": "minilm"}}


def leaf_fields(model: BaseModel, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted path, value) of every field, nested sections recursed."""
    out = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        path = f"{prefix}{name}"
        if isinstance(value, BaseModel) and not isinstance(value, SecretStr):
            out += leaf_fields(value, path + ".")
        else:
            out.append((path, value))
    return out


def another(value: Any) -> Any:
    """A different value of the same kind (validity does not matter to a key)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 1
    if isinstance(value, tuple):
        return value[:-1] if len(value) > 1 else value + ("another",)
    if isinstance(value, Path):
        return value / "elsewhere"
    if isinstance(value, SecretStr):
        return SecretStr(value.get_secret_value() + "x")
    if value is None:
        return "set"
    return f"{value}-changed"


def with_value(settings: Settings, path: str, value: Any) -> Settings:
    *parents, field = path.split(".")
    models = [settings]
    for name in parents:
        models.append(getattr(models[-1], name))
    changed = models[-1].model_copy(update={field: value})
    for model, name in zip(reversed(models[:-1]), reversed(parents)):
        changed = model.model_copy(update={name: changed})
    return changed


def expected(path: str) -> set[str]:
    if path in UNKEYED:
        return set()
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in REBUILDS:
            return REBUILDS[".".join(parts[:n])]
    raise AssertionError(f"{path}: a setting this test does not know; add its section "
                         f"to REBUILDS with the steps a change to it must rebuild")


FIELDS = leaf_fields(Settings())


def test_the_walk_covers_every_section() -> None:
    assert {path.split(".")[0] for path, _ in FIELDS} == {
        key for key in REBUILDS if "." not in key}
    assert len(FIELDS) > 100


@pytest.mark.parametrize("path,value", FIELDS, ids=[path for path, _ in FIELDS])
def test_a_changed_setting_rebuilds_exactly_its_readers(path: str, value: Any) -> None:
    settings = Settings()
    before = step_keys(settings, FACTS)
    after = step_keys(with_value(settings, path, another(value)), FACTS)
    changed = {step for step in before if before[step] != after[step]}
    assert changed == expected(path)


def test_facts_and_versions_reach_every_later_step(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    before = step_keys(settings, FACTS)
    other_data = step_keys(settings, {**FACTS, "kg": {"data": "other", "split": "loo"}})
    assert all(before[s] != other_data[s] for s in EVERY_STEP)
    other_encoder = step_keys(settings, {**FACTS, "index": {"text_encoder": "smollm2"}})
    assert {s for s in before if before[s] != other_encoder[s]} == AFTER_INDEX

    from rag_rec import steps
    bumped = steps.Step("sources", reads=steps.STEPS["sources"].reads,
                        after=steps.STEPS["sources"].after,
                        version=steps.STEPS["sources"].version + 1)
    monkeypatch.setitem(steps.STEPS, "sources", bumped)
    after_bump = step_keys(settings, FACTS)
    assert {s for s in before if before[s] != after_bump[s]} == {"sources", "scorer"}


def test_a_folder_built_from_other_inputs_is_refused(tmp_path: Path) -> None:
    settings = Settings()
    inputs = step_inputs(settings, FACTS)["scorer"]
    key = step_keys(settings, FACTS)["scorer"]
    folder = tmp_path / "scorer"
    with pytest.raises(StaleArtifact, match="no finished build step"):
        check_step(folder, key, "rag-rec build")  # interrupted: no record yet
    record_step(folder, inputs)
    check_step(folder, key, "rag-rec build")
    other = step_keys(with_value(settings, "scorer.lr", 0.5), FACTS)["scorer"]
    with pytest.raises(StaleArtifact, match="built from other inputs"):
        check_step(folder, other, "rag-rec build")
