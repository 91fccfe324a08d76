"""`rag-rec build`: every offline step, each reading the previous one's artifacts.

    data.load -> data.split -> graph.ingest -> embed.text -> embed.kg (PyKEEN) -> index
      -> scorer: trained, temperature-scaled on sampled validation negatives, then
         Platt-scaled on retrieval's candidate lists against each user's held-out item

Artifacts live under `<home>/builds/<split>/<key>/`, where the key hashes the data
fingerprint, the split and the settings that change the result; a second run with the
same inputs finds them and skips the work (text vectors are also cached per text).
`load_artifacts` opens a finished build for serving and raises `StaleArtifact` (with the
command that fixes it) when none matches the current data and settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag_rec.data import Dataset, Split, latest_per_user, load_dataset, make_split
from rag_rec.embed import (
    KGEmbeddings,
    TextCache,
    fuse,
    item_node,
    item_texts,
    kg_triples,
    make_text_encoder,
    train_kg_embeddings,
)
from rag_rec.errors import StaleArtifact
from rag_rec.index import ItemIndex
from rag_rec.models import Item
from rag_rec.settings import EmbedSettings, Settings

if TYPE_CHECKING:  # scorer.py imports this module
    from rag_rec.scorer import Scorer


def build_key(settings: Settings, ds: Dataset, split_name: str) -> str:
    parts = {"data": ds.fingerprint, "split": split_name, "embed": settings.embed.fingerprint(),
             "index": settings.retrieval.index_kind, "seed": settings.data.seed}
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



def _text_vectors(settings: Settings, ds: Dataset, progress: bool) -> dict[str, np.ndarray]:
    encoder = make_text_encoder(settings.embed, settings.llm, settings.home)
    texts = item_texts(ds)
    cache = TextCache(encoder, settings.home / "embeddings")
    vectors = cache.embed(list(texts.values()), progress=progress)
    return dict(zip(texts, vectors))


def _fused(items: list[str], text: dict[str, np.ndarray], kg: KGEmbeddings) -> np.ndarray:
    kg_rows = np.stack([kg.vector(item_node(i)) for i in items])
    return fuse(np.stack([text[i] for i in items]), kg_rows)


def build(settings: Settings, split_name: str | None = None, *, progress: bool = True,
          ingest: bool = True, scorer: bool = True) -> Artifacts:
    """Run every build step for `split_name` (None: all interactions), skipping finished
    ones, and return the artifacts (`scorer=False` stops before the scorer)."""
    from rag_rec.graph import GraphClient

    # PyKEEN (through pystow) writes checkpoints under ~/.data unless told otherwise.
    os.environ.setdefault("PYSTOW_HOME", str(settings.home / "pystow"))
    ds = load_dataset(settings.data, settings.home)
    split = make_split(ds, split_name, seed=settings.data.seed) if split_name else None
    if ingest:
        with GraphClient(settings.graph, settings.home) as graph:
            meta = graph.meta()
            wanted = split.name if split is not None else "full"
            if not (meta.get("complete") and meta.get("split") == wanted
                    and meta.get("fingerprint") == ds.fingerprint):
                graph.ingest(ds, split, progress=progress)
    folder = build_dir(settings, ds, split.name if split is not None else "full")
    text = _text_vectors(settings, ds, progress)
    key = folder.name
    try:
        kg = KGEmbeddings.load(folder / "kg", key)
    except StaleArtifact:
        kg = train_kg_embeddings(kg_triples(ds, split), settings.embed, key)
        kg.save(folder / "kg")
    try:
        ItemIndex.load(folder / "index", settings.retrieval, key)
    except StaleArtifact:
        ids = list(ds.items.index)
        index = ItemIndex(len(next(iter(text.values()))) + kg.dim,
                          settings.retrieval, n_expected=len(ids))
        index.add(ids, _fused(ids, text, kg))
        index.save(folder / "index", key)
    artifacts = load_artifacts(settings, split_name, ds=ds, text=text)
    if scorer:
        from rag_rec.scorer import load_or_fit

        model = load_or_fit(artifacts, settings.scorer, progress=progress)
        if model.platt is None:
            _calibrate(settings, artifacts, model, progress)
    return artifacts


def _calibrate(settings: Settings, artifacts: Artifacts, scorer: Scorer,
               progress: bool) -> None:
    """Platt-scale the scorer on candidate lists. The held-out items are the ones the
    scorer validated on: the split's validation items (never in the graph), or for a
    build on all data each user's latest rating, hidden from the graph meanwhile."""
    from rag_rec.graph import GraphClient
    from rag_rec.retrieve import CandidateGenerator
    from rag_rec.scorer import scorer_dir

    held = (artifacts.split.valid if artifacts.split is not None
            else latest_per_user(artifacts.ds.interactions))
    users = sorted(held.user_id.unique())
    n = settings.scorer.calibration_users
    if 0 < n < len(users):
        rng = np.random.default_rng(settings.scorer.seed)
        held = held[held.user_id.isin(set(rng.choice(users, n, replace=False).tolist()))]
    rows = [{"user_id": u, "item_id": i, "rating": float(r), "timestamp": int(t)}
            for u, i, r, t in held[["user_id", "item_id", "rating", "timestamp"]].itertuples(
                index=False)]
    with GraphClient(settings.graph, settings.home) as graph:
        retriever = CandidateGenerator(artifacts, graph, settings)
        hidden = graph.without_interactions(rows) if artifacts.split is None else nullcontext()
        with hidden:
            scorer.calibrate_on_candidates(retriever, dict(zip(held.user_id, held.item_id)),
                                           progress=progress)
    scorer.save(scorer_dir(artifacts, settings.scorer))


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
        text = _text_vectors(settings, ds, progress=False)
    inter = split.train if split is not None else ds.interactions
    popularity = inter.item_id.value_counts().to_dict()
    items = {i: ds.item(i) for i in ds.items.index}
    return Artifacts(ds=ds, split=split, items=items, text=text, kg=kg, index=index,
                     popularity={i: int(popularity.get(i, 0)) for i in items}, folder=folder,
                     embed=settings.embed)
