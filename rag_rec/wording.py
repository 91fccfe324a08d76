"""The served dataset's words: what its items are called, what a user did with one when
nothing was rated, its rating scale and its own relation phrases.

Explanations (`explain/phrasing.py`, `explain/evidence.py`) and prompts (`llm.render`)
read them through `dataset_words()`; `Recommender` sets them around each answer with
`speaking_of`, a context variable, so one process can serve MovieLens and a shop and a
thread or task of one never sees the other's words. Outside it: MovieLens' words.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DatasetWords:
    """See the module docstring; the defaults are MovieLens'."""

    noun: str = "film"
    """The item noun in explanations ("film" where the dataset says "movie")."""
    unrated: str = "liked"
    """What the user did with a history item that has no rating: "liked" (a new user's
    liked items), "chose" on data without ratings."""
    relation_phrases: Mapping[str, str] = field(default_factory=dict)
    """dataset.toml `[relations.NAME] phrase`, with `{tail}`."""
    scale: tuple[float, float] = (1.0, 5.0)
    """The rating scale (MovieLens' 1-5 stars without one)."""

    def stars(self, rating: float) -> float:
        """`rating` as its place on 1-5 stars (itself on MovieLens), for thresholds."""
        lo, hi = self.scale
        return 1.0 + 4.0 * (rating - lo) / (hi - lo)


_WORDS: ContextVar[DatasetWords] = ContextVar("dataset_words", default=DatasetWords())


def dataset_words() -> DatasetWords:
    """The words of the dataset being answered for (`speaking_of`), MovieLens' outside."""
    return _WORDS.get()


@contextmanager
def speaking_of(item_noun: str, relation_phrases: Mapping[str, str], has_ratings: bool,
                rating_scale: tuple[float, float] | None = None) -> Iterator[None]:
    """Use one dataset's words (a `DatasetMeta`'s fields) inside the block: "a kitchen
    product", "which you chose" (no ratings: nothing was liked or rated, only chosen),
    "made by Forgehouse" from its `{tail}` phrases."""
    token = _WORDS.set(DatasetWords("film" if item_noun == "movie" else item_noun,
                                    "liked" if has_ratings else "chose",
                                    dict(relation_phrases), rating_scale or (1.0, 5.0)))
    try:
        yield
    finally:
        _WORDS.reset(token)
