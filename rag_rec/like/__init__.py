"""P(like): the chance that a user rates an item 4 or 5 (at least the dataset's like
threshold) if they watch it. Data without ratings gets `UnavailableLike`: no head, every
P(like) None and the reason said (`unavailable_reason`).

The ranking probability (P(next), rag_rec/scorer/) says how likely the user is to
interact with an item next; this head says whether they will enjoy it once they do. It
is trained on the observed ratings, which the next-item task throws away.

Inputs: a `Dataset`, a `Split` (None: all data), the fused text+KG item vectors (a
mapping or anything with `.vector(item_id)`, such as the build's `ItemIndex`) and
`LikeSettings`. Output: a `LikeModel` whose `predict(history, user_id, items)` returns
calibrated probabilities, for known users and for a history alone (cold start).

    logit = b0 + b_user + b_item                                 (learned biases)
          + MLP(rating statistics, content neighbourhood)        (features below)
          + q_item · (p_user + |H|^-1/2 Σ_j (y_j + (r_j - μ) x_j))   (factorization)

- rating statistics: the user's mean rating, like rate, count and recent mean (last
  10), the item's mean train rating, like rate and count, shrunk toward the global mean;
- content neighbourhood: cosine similarities between the candidate and the history's
  items in the fused space: a softmax-weighted mean of the nearest `neighbours` items'
  centred ratings and likes, and the mean and max similarity to liked and to disliked
  items;
- the factorization term reads the history itself (asymmetric SVD), so a user the model
  never saw gets one from their ratings; user ids are dropped at random in training for
  the same reason.

Training is BCE on the train ratings (label: rating >= threshold). A pair's features
never see its own rating: the statistics and the neighbourhood leave it out, as serving
never sees the rating it predicts. What else a pair sees follows the protocol
(`LikeSettings.context`): the user's earlier ratings only, as a next rating sees the past
(leave-last-out, serving), or all their other ratings, as a random held-out share of
them sees the rest (k-fold). Early stopping and Platt scaling (sklearn) use the
validation ratings: the split's `valid` (for k-fold, whose test ratings are a random share,
a random share of each user's train ratings instead), or for a build on all data each
user's latest rating, held out from training.

Modules: `features` (`_Stats`, `cowatch_similarity`, `_Featurizer`, `FEATURES`), `model`
(`LikeNet`: q is `item_factors`, p `user_factors`, y `implicit_item_factors`, x
`rating_item_factors`), `training` (the pairs, the batches of whole users, `_fit_net`)
and `head` (`LikeModel`: fit, predict, save, load; `load_built`). Every name the rest of
rag_rec, eval/ and tests/ imports from `rag_rec.like` is re-exported here.
"""

from rag_rec.like.features import (
    FEATURES,
    RECENT,
    HasVector,
    ItemVectors,
    _Featurizer,
    _Stats,
    cowatch_similarity,
)
from rag_rec.like.head import LikeModel, UnavailableLike, load_built, unavailable_reason
from rag_rec.like.model import LikeNet
from rag_rec.like.training import _z_train

__all__ = [
    "FEATURES", "RECENT", "HasVector", "ItemVectors", "LikeModel", "LikeNet", "_Featurizer",
    "_Stats", "UnavailableLike", "_z_train", "cowatch_similarity", "load_built",
    "unavailable_reason",
]
