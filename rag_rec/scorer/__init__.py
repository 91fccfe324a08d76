"""The attention scorer: a stacker over the candidate sources, and its calibration.

Model (torch): target attention over the user's history. Every item is represented as
[text embedding ⊕ PyKEEN embedding ⊕ learned id embedding] projected to `d`; the id part
is dropped at random in training (and is zero for items added after training), so cold
items are scored from content alone. The candidate attends to the last `max_history`
history items (scaled dot product, padding masked, a learned recency position added);
[candidate, attended history, their product, user KG embedding, side features] go
through an MLP, plus a linear term on the side features, to a logit. The side features
are every source's standardised score and rank for the candidate (retrieve.py) and the
history length, named columns (`ease.score`, `ease.rank`, ..., `history.length`) of one
`FeatureSchema` that the checkpoint records: the scorer learns how the history, the
candidate's content and KG and the sources' signals interact, instead of averaging the
sources.

Training (as a stacker, without leakage; the build runs it): the sources are fit on the
train interactions minus a per-user *ranker slice* (`ranker_slice`), they produce
candidate lists for each user from the rest, labelled by the slice (once per cross-
fitting fold, each with its own slice and sources: more lists to learn from); the scorer
learns on whole lists with BCE (every candidate, not a few sampled negatives), early-
stopping on NDCG@10 of a held-out share of users' lists. The slice matches the protocol:
the latest items (what comes next) or a random share (k-fold). Last, the blend (`Blend`)
sets the best source's final weight and the Platt calibration on lists for validation
items that neither the scorer nor those sources learnt from (`validation`). The
calibrated probability `p_next` is therefore "the chance that this candidate is among what
the user interacts with next" — not a like probability.

Modules: `model` (the nn.Module), `features` (`FeatureSchema`, `Featurizer`),
`calibration` (ECE, Brier, Platt), `slices` (the ranker slices and validation items),
`training` (`Lists`, `train`), `blend` (`Blend`) and `scorer` (`Scorer`, its checkpoint).
Every name the rest of rag_rec imports from `rag_rec.scorer` is re-exported here.
"""

from rag_rec.scorer.blend import (
    BLEND_WEIGHTS,
    MIN_SHORT_LISTS,
    SHORT_RULE,
    Blend,
    _standardised,
)
from rag_rec.scorer.calibration import brier, ece, fit_platt, reliability_diagram, sigmoid
from rag_rec.scorer.features import FeatureSchema, Featurizer
from rag_rec.scorer.model import AttentionScorer
from rag_rec.scorer.scorer import Scorer
from rag_rec.scorer.slices import ranker_slice, unsliced, validation
from rag_rec.scorer.training import (
    Lists,
    TrainReport,
    list_ndcg,
    make_lists,
    predict,
    sources_alone,
    train,
)

__all__ = [
    "BLEND_WEIGHTS", "MIN_SHORT_LISTS", "SHORT_RULE", "AttentionScorer", "Blend", "FeatureSchema",
    "Featurizer", "Lists", "Scorer", "TrainReport", "_standardised", "brier", "ece", "fit_platt",
    "list_ndcg", "make_lists", "predict", "ranker_slice", "reliability_diagram", "sigmoid",
    "sources_alone", "train", "unsliced", "validation",
]
