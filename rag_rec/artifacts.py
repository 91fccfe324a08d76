"""What a build wrote, and opening it for serving: `Artifacts` and `load_artifacts`.

Every stage that reads a build (sources, scorer, recommender, evaluation) imports this
module, never build.py, so build -> sources/scorer -> artifacts has no cycle. Each build
step keeps its artifact under `<home>/builds/<split>/<step>-<key>/`, the key derived from
what the step reads (rag_rec/steps.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rag_rec.data import Dataset, Split, SplitProtocol, load_dataset, make_split, splits
from rag_rec.embed import (
    KGEmbeddings,
    TextCache,
    item_texts,
    make_text_encoder,
    text_encoder_id,
)
from rag_rec.index import ItemIndex
from rag_rec.models import Item
from rag_rec.settings import EmbedSettings, RankerSliceSettings, Settings
from rag_rec.steps import check_step, digest, step_inputs


def validation_kind(has_valid: bool, ranker_slice: RankerSliceSettings) -> str:
    """Which items a build chooses its blend on (`scorer.validation`): a split's own
    validation items, each user's next interaction, when the ranker slice is "latest"
    too ("validation"), or a holdout cut from the build's train data first ("holdout":
    the full build, and random slices, whose protocol tests a random share)."""
    return "validation" if has_valid and ranker_slice.kind == "latest" else "holdout"


def build_facts(settings: Settings, ds: Dataset, split: Split | None) -> dict[str, dict]:
    """What the build steps read besides the settings (rag_rec/steps.py): the data and
    the split for the first step, the text encoder's identity for the index's vectors."""
    data = {"data": ds.fingerprint, "split": split.name if split is not None else "full"}
    if split is not None and split.protocol is SplitProtocol.COLD:
        # The cold slice is an experiment constant, not a setting.
        data["cold_slice"] = [splits.COLD_SHARE, splits.COLD_DRAW]
    return {"kg": data, "index": {"text_encoder": text_encoder_id(settings.embed,
                                                                   settings.llm)}}


@dataclass
class Artifacts:
    """Everything retrieval and scoring read at serving time, and where each build step
    of this data, split and settings keeps its artifact."""

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
    steps: dict[str, dict]
    """Step name -> its inputs (`steps.step_inputs`), whose digest is the step's key."""
    home: Path
    embed: EmbedSettings
    """The settings the embeddings were built with (their steps' keys cover them)."""
    ranker_slice: RankerSliceSettings

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

    @property
    def validation_kind(self) -> str:
        """Which items this build chooses its blend on (`validation_kind`)."""
        return validation_kind(self.split is not None and len(self.split.valid) > 0,
                               self.ranker_slice)

    def key(self, step: str) -> str:
        return digest(self.steps[step])

    def folder(self, step: str) -> Path:
        """Where `step` keeps its artifact: one folder per key, so builds with other
        settings (ablations, the test suite's short training) live side by side."""
        return step_folder(self.home, self.split_name, step, self.key(step))


def step_folder(home: Path, split_name: str, step: str, key: str) -> Path:
    return home / "builds" / split_name / f"{step}-{key}"


def text_vectors(settings: Settings, ds: Dataset, progress: bool) -> dict[str, np.ndarray]:
    encoder = make_text_encoder(settings.embed, settings.llm, settings.home)
    texts = item_texts(ds)
    cache = TextCache(encoder, settings.home / "embeddings")
    vectors = cache.embed(list(texts.values()), progress=progress)
    return dict(zip(texts, vectors))


def load_artifacts(settings: Settings, split_name: str | None = None, *,
                   ds: Dataset | None = None,
                   text: dict[str, np.ndarray] | None = None) -> Artifacts:
    """Open a finished build's embeddings and index; `StaleArtifact` naming the fix if
    there is none for this data and these settings."""
    ds = ds or load_dataset(settings.data, settings.home)
    split = make_split(ds, split_name, seed=settings.data.seed) if split_name else None
    name = split.name if split is not None else "full"
    steps = step_inputs(settings, build_facts(settings, ds, split))
    fix = "rag-rec build" + (f" --split {name}" if split else "")
    folders = {step: step_folder(settings.home, name, step, digest(steps[step]))
               for step in ("kg", "index")}
    for step, folder in folders.items():
        check_step(folder, digest(steps[step]), fix)
    kg = KGEmbeddings.load(folders["kg"])
    index = ItemIndex.load(folders["index"], settings.index)
    if text is None:
        text = text_vectors(settings, ds, progress=False)
    popularity = (split.train if split is not None else ds.interactions
                  ).item_id.value_counts().to_dict()
    items = {i: ds.item(i) for i in ds.items.index}
    return Artifacts(ds=ds, split=split, items=items, text=text, kg=kg, index=index,
                     popularity={i: int(popularity.get(i, 0)) for i in items}, steps=steps,
                     home=settings.home, embed=settings.embed,
                     ranker_slice=settings.ranker_slice)
