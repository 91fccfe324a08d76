"""What a dataset says about itself: the noun for its items, its rating scale (or none),
what counts as liked, whether it has timestamps, and how its relations read; and where
the thresholds sit on its scale (`rating_marks`).

MovieLens adapters fill it from the release (`movielens_meta`); the generic format
(`rag_rec.data.generic`) from `dataset.toml` and the columns present (`meta_from`). Everything
downstream of `load_dataset` asks this instead of assuming movies, 1-5 stars or time.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DatasetMeta(BaseModel):
    """A dataset's own facts about itself (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    item_noun: str = "item"
    """What an item is called in answers ("movie", "book", "product")."""
    rating_scale: tuple[float, float] | None = None
    """(lowest, highest) rating; None: no ratings (implicit feedback)."""
    like_threshold: float | None = None
    """A rating at or above this counts as liked; None without ratings."""
    has_ratings: bool = False
    has_timestamps: bool = False
    has_weights: bool = False
    """Interactions carry a positive weight (e.g. listen counts) instead of a rating."""
    relation_phrases: dict[str, str] = Field(default_factory=dict)
    """Relation name -> phrase with `{tail}` ("written by {tail}"), from dataset.toml."""

    @model_validator(mode="after")
    def _consistent(self) -> DatasetMeta:
        if self.has_ratings != (self.rating_scale is not None):
            raise ValueError("a rating scale is given exactly when there are ratings")
        if self.rating_scale is not None:
            lo, hi = self.rating_scale
            if not lo < hi:
                raise ValueError(f"rating scale [{lo:g}, {hi:g}]: the lowest must be below "
                                 "the highest")
            if self.like_threshold is not None and not lo <= self.like_threshold <= hi:
                raise ValueError(f"like_threshold {self.like_threshold:g} is outside the "
                                 f"rating scale [{lo:g}, {hi:g}]")
        elif self.like_threshold is not None:
            raise ValueError("like_threshold needs ratings")
        return self

    @property
    def top_rating(self) -> float:
        """What a positive interaction stands in as where a rating is read (the sources,
        history weights): the scale's top, or 5 without ratings (as a liked item does for
        a new user, `recommender.LIKED`)."""
        return self.rating_scale[1] if self.rating_scale else 5.0


def default_like_threshold(scale: tuple[float, float]) -> float:
    """Three quarters up the scale: 4 of 1-5 stars, as MovieLens work uses."""
    lo, hi = scale
    return lo + 0.75 * (hi - lo)


def movielens_meta(scale: tuple[float, float]) -> DatasetMeta:
    """The meta of a MovieLens release read by its adapter: movies, explicit ratings on
    `scale`, liked at 4 stars, timestamps."""
    return DatasetMeta(item_noun="movie", rating_scale=scale, like_threshold=4.0,
                       has_ratings=True, has_timestamps=True)


def rating_marks(scale: tuple[float, float] | None) -> tuple[float, float, float]:
    """(lowest rating a path may pass through, liked, top) on a rating scale: 3, 4 and 5
    on MovieLens' 1-5 stars (the default), the same places on any other scale."""
    lo, hi = scale or (1.0, 5.0)
    return lo + 0.5 * (hi - lo), default_like_threshold((lo, hi)), hi


# --------------------------------------------------------------------------- dataset.toml

TOML_KEYS = {"name", "item_noun", "ratings", "relations", "links"}
RATINGS_KEYS = {"scale", "like_threshold"}
RELATION_KEYS = {"phrase"}


def read_dataset_toml(path: Path, problems: list[str]) -> dict:
    """dataset.toml's tables, each unknown key or bad phrase added to `problems`."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: {exc}")
        return {}
    for key in sorted(set(data) - TOML_KEYS):
        problems.append(f"{path}: unknown key {key!r} (known: {', '.join(sorted(TOML_KEYS))})")
    for key in sorted(set(data.get("ratings", {})) - RATINGS_KEYS):
        problems.append(f"{path}: unknown key 'ratings.{key}' "
                        f"(known: {', '.join(sorted(RATINGS_KEYS))})")
    for name, table in data.get("relations", {}).items():
        if not isinstance(table, dict):
            problems.append(f"{path}: relations.{name} must be a table with `phrase`")
            continue
        for key in sorted(set(table) - RELATION_KEYS):
            problems.append(f"{path}: unknown key 'relations.{name}.{key}' (known: phrase)")
        phrase = table.get("phrase", "")
        if "phrase" in table and (not isinstance(phrase, str) or "{tail}" not in phrase):
            problems.append(f"{path}: relations.{name}.phrase must be a string holding "
                            "{tail}, e.g. \"written by {tail}\"")
    return data


def given_scale(data: dict) -> tuple[float, float] | None:
    """dataset.toml's `[ratings] scale` when it is a valid [lowest, highest]."""
    given = data.get("ratings", {}).get("scale")
    if (isinstance(given, list) and len(given) == 2
            and all(isinstance(x, int | float) for x in given) and given[0] < given[1]):
        return float(given[0]), float(given[1])
    return None


def meta_from(data: dict, columns: list[str], ratings: list[float], problems: list[str],
              toml_path: Path, interactions_path: Path) -> DatasetMeta:
    """The generic format's meta: dataset.toml's tables (`data`) and the interaction
    columns present; `ratings`: the ratings read, for a scale dataset.toml leaves out."""
    has_ratings, has_weights = "rating" in columns, "weight" in columns
    if has_ratings and has_weights:
        problems.append(f"{interactions_path}:1: both `rating` and `weight` columns: give "
                        "one (rating: explicit feedback; weight: implicit, e.g. counts)")
    table = data.get("ratings", {})
    scale = None
    if has_ratings:
        scale = given_scale(data)
        if scale is None and "scale" in table:
            problems.append(f"{toml_path}: ratings.scale must be [lowest, highest], got "
                            f"{table['scale']!r}")
        if scale is None:
            scale = (min(ratings), max(ratings)) if ratings and min(ratings) < max(ratings) \
                else (0.0, max(ratings, default=1.0) or 1.0)
    elif table:
        problems.append(f"{toml_path}: [ratings] is set but {interactions_path.name} has no "
                        "`rating` column")
    threshold = table.get("like_threshold") if has_ratings else None
    if threshold is not None and scale and not scale[0] <= threshold <= scale[1]:
        problems.append(f"{toml_path}: ratings.like_threshold {threshold} is outside the "
                        f"scale [{scale[0]:g}, {scale[1]:g}]")
        threshold = None
    phrases = {name: t["phrase"] for name, t in data.get("relations", {}).items()
               if isinstance(t, dict) and isinstance(t.get("phrase"), str)
               and "{tail}" in t["phrase"]}
    return DatasetMeta(
        item_noun=str(data.get("item_noun", "item")), rating_scale=scale,
        like_threshold=(float(threshold) if threshold is not None
                        else default_like_threshold(scale) if scale else None),
        has_ratings=scale is not None, has_timestamps="timestamp" in columns,
        has_weights=has_weights and not has_ratings, relation_phrases=phrases)
