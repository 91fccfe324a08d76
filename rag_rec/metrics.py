"""Full-ranking metrics, computed the same way for every system (the offline evaluation,
and the sources' own tuning).

A system hands over a score matrix (evaluated users x all catalogue items); items the
user has already seen (train, and validation at test time) are masked out, every other
item is ranked, and the metrics read the positions of the user's test items. Ties keep
catalogue order (a stable sort), so no system gains from them.
"""

from __future__ import annotations

import numpy as np

TOP = (10, 20)


def rank_positions(scores: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Per user, each item's 0-based position among the unseen items (seen: -1)."""
    masked = np.where(seen, -np.inf, scores)
    order = np.argsort(-masked, axis=1, kind="stable")
    pos = np.empty_like(order)
    rows = np.arange(len(scores))[:, None]
    pos[rows, order] = np.arange(scores.shape[1])[None, :]
    return np.where(seen, -1, pos)


def recall_at(scores: np.ndarray, seen: np.ndarray, test: np.ndarray, k: int) -> float:
    """Mean recall@k over users with test items (any k: the candidate budget, say)."""
    pos = rank_positions(scores, seen)
    n_test = test.sum(1)
    keep = n_test > 0
    hits = (test & (pos >= 0) & (pos < k)).sum(1)
    return float(np.mean(hits[keep] / n_test[keep])) if keep.any() else 0.0


def ranking_metrics(scores: np.ndarray, seen: np.ndarray, test: np.ndarray,
                    tail: np.ndarray) -> dict[str, float]:
    """Recall/NDCG@10/20, HR@10, MRR, AUC (means over users), catalogue coverage@10 and
    long-tail share@10. `seen`/`test` are boolean (users x items); `tail` marks items."""
    pos = rank_positions(scores, seen)
    n_test = test.sum(1)
    keep = n_test > 0
    pos, seen, test, n_test = pos[keep], seen[keep], test[keep], n_test[keep]
    test_pos = np.where(test, pos, np.iinfo(pos.dtype).max)
    out: dict[str, float] = {"users": int(keep.sum())}
    for k in TOP:
        hit = test & (pos < k)
        out[f"recall@{k}"] = float(np.mean(hit.sum(1) / n_test))
        out[f"ndcg@{k}"] = float(np.mean(_ndcg(pos, test, k)))
    out["hr@10"] = float(np.mean((test & (pos < 10)).any(1)))
    out["mrr"] = float(np.mean(1.0 / (test_pos.min(1) + 1.0)))
    # AUC: a test item at position p with j test items above it has p - j negatives
    # above it, out of all the user's unseen negatives.
    sorted_pos = np.sort(test_pos, axis=1)
    above = sorted_pos - np.arange(sorted_pos.shape[1])[None, :]
    n_neg = (~seen).sum(1) - n_test
    valid = np.arange(sorted_pos.shape[1])[None, :] < n_test[:, None]
    wrong = np.where(valid, above, 0).sum(1) / (n_test * n_neg)
    out["auc"] = float(np.mean(1.0 - wrong))
    top10 = (pos >= 0) & (pos < 10)
    out["coverage@10"] = float(top10.any(0).mean())
    out["tail_share@10"] = float((top10 & tail[None, :]).sum() / top10.sum())
    return out



def _ndcg(pos: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k per user from each item's 0-based position (users with test items only)."""
    gains = np.where(test & (pos >= 0) & (pos < k), 1.0 / np.log2(np.maximum(pos, 0) + 2.0), 0.0)
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[np.minimum(test.sum(1), k) - 1]
    return gains.sum(1) / ideal


def ndcg_at(scores: np.ndarray, seen: np.ndarray, test: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over users with test items (the one `ranking_metrics` reports)."""
    per_user = ndcg_per_user(scores, seen, test, k)
    return float(per_user.mean()) if len(per_user) else 0.0


def ndcg_per_user(scores: np.ndarray, seen: np.ndarray, test: np.ndarray,
                  k: int = 10) -> np.ndarray:
    """NDCG@k of each user that has test items (paired bootstrap intervals need these)."""
    keep = test.any(1)
    return _ndcg(rank_positions(scores[keep], seen[keep]), test[keep], k)
