"""What a build wrote, and opening it for serving: `Artifacts` and `load_artifacts`.

Every stage that reads a build (sources, scorer, recommender, evaluation) imports this
module, never build.py, so build -> sources/scorer -> artifacts has no cycle.
Artifacts live under `<home>/builds/<split>/<key>/`, where the key hashes the data
fingerprint, the split and the settings that change the result.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rag_rec.data import COLD_DRAW, COLD_SHARE, Dataset, Split, load_dataset, make_split
from rag_rec.embed import KGEmbeddings, TextCache, item_texts, make_text_encoder
from rag_rec.errors import StaleArtifact
from rag_rec.index import ItemIndex
from rag_rec.models import Item
from rag_rec.settings import EmbedSettings, ScorerSettings, Settings


def validation_kind(has_valid: bool, cfg: ScorerSettings) -> str:
    """Which items a build chooses its blend on (`scorer.validation`): a split's own
    validation items, each user's next interaction, when the ranker slice is "latest"
    too ("validation"), or a holdout cut from the build's train data first ("holdout":
    the full build, and random slices, whose protocol tests a random share)."""
    return "validation" if has_valid and cfg.slice == "latest" else "holdout"


def build_key(settings: Settings, ds: Dataset, split_name: str) -> str:
    # The ranker slice is held out of the KG embeddings, so it is part of the key.
    cfg = settings.scorer
    slice_ = ([cfg.slice, cfg.slice_latest] if cfg.slice == "latest"
              else [cfg.slice, cfg.slice_share, cfg.seed])
    if cfg.slice_folds > 1:  # one fold keeps the keys of builds made before folds existed
        slice_.append(cfg.slice_folds)
    parts = {"data": ds.fingerprint, "split": split_name, "embed": settings.embed.fingerprint(),
             "index": settings.retrieval.index_kind, "seed": settings.data.seed,
             "slice": slice_}
    if split_name == "loo-cold":  # builds made on another cold slice are stale
        parts["cold_slice"] = [COLD_SHARE, COLD_DRAW]
    if validation_kind(split_name != "full", cfg) == "holdout":
        # The holdout is cut from the KG embeddings' data and the slices' too: builds
        # made before it was are stale.
        parts["validation"] = "holdout"
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def build_dir(settings: Settings, ds: Dataset, split_name: str) -> Path:
    return settings.home / "builds" / split_name / build_key(settings, ds, split_name)


@dataclass
class Artifacts:
    """Everything retrieval and scoring read at serving time."""

    ds: Dataset
    split: Split | None
    items: dict[str, Item]
    """The catalogue, including items added after the build."""
    text: dict[str, np.ndarray]
    """Item id -> text vector."""
    kg: KGEmbeddings
    index: ItemIndex
    popularity: dict[str, int]
    """Item id -> interactions in the data the graph holds (train split when evaluating)."""
    folder: Path
    embed: EmbedSettings
    """The settings the embeddings were built with (the build key covers them)."""

    @property
    def split_name(self) -> str:
        return self.split.name if self.split is not None else "full"

    @property
    def rebuild(self) -> str:
        """The command that (re)builds this build, for `StaleArtifact` messages."""
        return "rag-rec build" + (f" --split {self.split_name}" if self.split else "")

    @property
    def train(self) -> pd.DataFrame:
        """The interactions the sources and the scorer learn from."""
        return self.split.train if self.split is not None else self.ds.interactions


def text_vectors(settings: Settings, ds: Dataset, progress: bool) -> dict[str, np.ndarray]:
    encoder = make_text_encoder(settings.embed, settings.llm, settings.home)
    texts = item_texts(ds)
    cache = TextCache(encoder, settings.home / "embeddings")
    vectors = cache.embed(list(texts.values()), progress=progress)
    return dict(zip(texts, vectors))


def load_artifacts(settings: Settings, split_name: str | None = None, *,
                   ds: Dataset | None = None,
                   text: dict[str, np.ndarray] | None = None) -> Artifacts:
    """Open a finished build; `StaleArtifact` if there is none for these data/settings."""
    ds = ds or load_dataset(settings.data, settings.home)
    split = make_split(ds, split_name, seed=settings.data.seed) if split_name else None
    name = split.name if split is not None else "full"
    folder = build_dir(settings, ds, name)
    fix = f"run `rag-rec build{' --split ' + name if split else ''}`"
    if not folder.exists():
        raise StaleArtifact(f"no build for split {name!r} with the current data and settings "
                            f"({folder}); {fix}")
    kg = KGEmbeddings.load(folder / "kg", folder.name)
    index = ItemIndex.load(folder / "index", settings.retrieval, folder.name)
    if text is None:
        text = text_vectors(settings, ds, progress=False)
    popularity = (split.train if split is not None else ds.interactions
                  ).item_id.value_counts().to_dict()
    items = {i: ds.item(i) for i in ds.items.index}
    return Artifacts(ds=ds, split=split, items=items, text=text, kg=kg, index=index,
                     popularity={i: int(popularity.get(i, 0)) for i in items}, folder=folder,
                     embed=settings.embed)
