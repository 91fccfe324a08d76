"""What a dataset says about itself: the noun for its items, its rating scale (or none),
what counts as liked, whether it has timestamps, and how its relations read.

MovieLens adapters fill it from the release (`movielens_meta`); the generic format
(`rag_rec.data.generic`) from `dataset.toml` and the columns present. Everything
downstream of `load_dataset` asks this instead of assuming movies, 1-5 stars or time.
"""

from __future__ import annotations

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
