"""The blend: the stacker's logit plus the best sources' standardised scores, calibrated.

In: the trained model, candidate lists for validation items none of it learnt from
(`slices.validation`), and the simulated short lists. Out: a `Blend`, saved beside the
checkpoint, which turns a served list's raw logits into calibrated log-odds (`apply`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rag_rec.scorer.calibration import ece, fit_platt, sigmoid
from rag_rec.scorer.features import FeatureSchema, column
from rag_rec.scorer.model import AttentionScorer
from rag_rec.scorer.training import Lists, list_ndcg, predict, sources_alone

BLEND_WEIGHTS = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
"""Up to 16: 8, the former top, was chosen on loo seed 44 and for loo-cold's short lists
on every seed, and a grid must reach past the weight it picks."""
MIN_SHORT_LISTS = 30
"""Simulated short lists below which their own weights are not chosen (too noisy)."""
SHORT_RULE = "worse_shape"
"""Short-history weights maximise the NDCG of the worse simulated shape (`Blend`)."""


@dataclass
class Blend:
    """The served log-odds: `platt` applied to (the stacker's logit + `weight` x the
    standardised score of `source`, the best source on the validation lists).

    The stacker learns on lists from sources fit without its slice; the sources it is
    served with see all train, and on next-item lists the sequential one gains most from
    that (leave-last-out seed 43: the stacker alone 0.1018 at test, its SASRec source
    0.1107, with the blend 0.1135). So the last word on the best source's weight,
    and the calibration, come from lists of sources that saw everything but the
    validation items (`validation`), labelled by them: tuned on held-out items as the
    baselines tune their knobs.

    Short lists (a history of at most `short_history` items,
    `ScorerSettings.blend_short_history`) get their own weights, over the two best
    sources on them, and their own Platt scaling, chosen on short histories simulated
    from the long ones (`build.short_lists`): the stacker learns mostly from long
    histories, and which source judges a short one best depends on its shape (on the
    validation users of loo-cold's former 10% slice, seed 42, cut to their latest five
    items SASRec leads, 0.126 against 0.098 for the Markov source; cut to their first four
    and latest, as loo-cold's cold users are at test, the Markov source leads, 0.098
    against 0.064). The validation's own short lists cannot choose: their history is the
    five oldest items, far from the validation item (the 10% slice's 94 lists had one to
    three items in the top 10 whatever the weight). Which shape a deployment serves is
    unknown, so the weights are those that do best on the worse of the two (their mean
    favoured the new users' shape: on loo-cold's 30% slice, draw 0, its cold users got
    0.0533 against 0.0600 for the Markov source alone)."""

    source: str
    weight: float
    platt: tuple[float, float]
    report: dict
    short_history: int | None = None
    """The threshold it was chosen with; a blend with another is refit by the build."""
    short_weights: dict[str, float] | None = None
    """Source -> weight for short lists; None: too few simulated ones, `weight` serves
    them."""
    chosen_on: str | None = None
    """"validation" or "holdout" (`validation`); a blend chosen otherwise is refit."""
    short_platt: tuple[float, float] | None = None
    """The short lists' scaling, with `short_weights`."""
    short_rule: str | None = None
    """How `short_weights` were chosen; a blend chosen by another rule is refit."""

    @classmethod
    def fit(cls, model: AttentionScorer, lists: Lists, sources: list[str],
            trained: np.ndarray, short_history: int, chosen_on: str,
            short: Lists | None = None) -> Blend:
        """`trained`: `Featurizer.trained`, which items the sources learnt from; `short`:
        the simulated short lists (`build.short_lists`)."""
        rows = np.arange(len(lists.cand))
        logits = predict(model, lists, rows)
        side = lists.side.numpy()
        alone = sources_alone(lists, sources, rows)
        best = max(alone, key=alone.get)
        best_column = _standardised(side, sources, best, trained[lists.cand.numpy()],
                                    lists.owner)
        short_weights = short_platt = None
        report: dict = {"holdout_ndcg_sources": alone, "lists": len(lists.users),
                        "short_lists": len(short.users) if short is not None else 0}
        # Without positives among them there is nothing to scale the short lists by.
        if (short is not None and len(short.users) >= MIN_SHORT_LISTS
                and short.calibration.numpy().any()):
            short_weights, short_platt, report["short"] = cls._fit_short(
                model, short, sources, trained)
        long = ((lists.hist > 0).sum(1).numpy() > short_history)[lists.owner.numpy()]
        # Short histories served their own weights leave the long ones' choice; without
        # those, one weight serves every list and is chosen on all of them.
        on = rows[long] if short_weights and long.any() else rows
        report["long_lists"] = len(np.unique(lists.owner.numpy()[on]))
        weight, report["holdout_ndcg_by_weight"] = _best_weight(logits, best_column, lists, on)
        blended, labels = (logits + weight * best_column)[on], lists.calibration.numpy()[on]
        platt = _rounded(fit_platt(blended, labels))
        report |= {"ece": round(ece(sigmoid(platt[0] * blended + platt[1]), labels), 4),
                   "base_rate": round(float(labels.mean()), 5)}
        return cls(best, weight, platt, report, short_history, short_weights, chosen_on,
                   short_platt, SHORT_RULE)

    @staticmethod
    def _fit_short(model: AttentionScorer, short: Lists, sources: list[str],
                   trained: np.ndarray) -> tuple[dict, tuple[float, float], dict]:
        """Weights for the two best sources alone on the short lists (the grid's pair whose
        worse shape does best, smallest first among equals; a list's shape is the end of
        its name, `build.short_lists`) and the scaling of the blended log-odds."""
        rows = np.arange(len(short.cand))
        logits = predict(model, short, rows)
        side = short.side.numpy()
        alone = sources_alone(short, sources, rows)
        pair = sorted(alone, key=alone.get, reverse=True)[:2]
        columns = [_standardised(side, sources, name, trained[short.cand.numpy()], short.owner)
                   for name in pair]
        shape = np.array([short.users[o].rsplit("/", 1)[-1] for o in short.owner.numpy()])
        grid = [(first, second) for first in BLEND_WEIGHTS
                for second in (BLEND_WEIGHTS if len(pair) > 1 else (0.0,))]
        by_shape = {}
        for pair_weights in grid:
            blended = logits + pair_weights[0] * columns[0] + pair_weights[-1] * columns[-1]
            by_shape[pair_weights] = {
                s: round(list_ndcg(blended[shape == s], short, rows[shape == s]), 4)
                for s in np.unique(shape)}
        first, second = max(grid, key=lambda pair_weights: min(by_shape[pair_weights].values()))
        weights = dict(zip(pair, (first, second)))
        blended = logits + first * columns[0] + second * columns[-1]
        labels = short.calibration.numpy()
        platt = _rounded(fit_platt(blended, labels))
        report = {"ndcg_sources": alone,
                  "stacker_ndcg": round(list_ndcg(logits, short, rows), 4),
                  "ndcg": round(list_ndcg(blended, short, rows), 4),
                  "ndcg_by_shape": by_shape[(first, second)],
                  "ece": round(ece(sigmoid(platt[0] * blended + platt[1]), labels), 4)}
        return weights, platt, report

    def apply(self, logits: np.ndarray, features: np.ndarray, sources: list[str],
              trained: np.ndarray, history_len: int) -> np.ndarray:
        """Served log-odds of one list from its raw logits, the retrieval's source features,
        which candidates have train interactions and the history's length."""
        owner = np.zeros(len(trained), dtype=int)
        if self.short_weights and history_len <= (self.short_history or 0):
            weights, (scale, shift) = self.short_weights, self.short_platt
        else:
            weights, (scale, shift) = {self.source: self.weight}, self.platt
        return scale * (logits + sum(
            weight * _standardised(features, sources, name, trained, owner)
            for name, weight in weights.items())) + shift


def _standardised(side: np.ndarray, sources: list[str], name: str, trained: np.ndarray,
                  owner: np.ndarray | torch.Tensor) -> np.ndarray:
    """Source `name`'s `score` column of `side` (side features, or a retrieval's source
    features: the schema gives both the same index), untrained candidates at their list's
    median (`_untrained_at_median`)."""
    owner = owner.numpy() if isinstance(owner, torch.Tensor) else owner
    score = side[:, FeatureSchema(tuple(sources)).index(column(name, "score"))]
    return _untrained_at_median(score, trained, owner)


def _rounded(platt: tuple[float, float]) -> tuple[float, float]:
    return tuple(round(float(v), 5) for v in platt)


def _best_weight(logits: np.ndarray, source_column: np.ndarray, lists: Lists,
                 rows: np.ndarray) -> tuple[float, dict[float, float]]:
    """The weight of `source_column` beside the stacker's `logits` with the best NDCG@10 on the
    lists `rows` cover (the smallest of equals), and the NDCG of each."""
    by_weight = {w: round(list_ndcg((logits + w * source_column)[rows], lists, rows), 4)
                 for w in BLEND_WEIGHTS}
    return max(by_weight, key=by_weight.get), by_weight


def _untrained_at_median(col: np.ndarray, trained: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """`col` with the candidates nobody interacted with in train (a film added since the
    build, say) set to their list's median: the source has no say on them, so the blend
    neither lifts nor sinks them and the scorer's content-based logit decides."""
    out = col.copy()
    for list_no in np.unique(owner[~trained]):
        mine = owner == list_no
        known = col[mine & trained]
        out[mine & ~trained] = np.median(known) if len(known) else 0.0
    return out
