"""The data `eval/bench_scale.py` measures beside real datasets: a seeded synthetic
interaction set of a given shape, and a dataset cut to some of its users."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def synthetic(users: int, items: int, interactions: int, seed: int) -> pd.DataFrame:
    """A seeded interaction set of this shape: item popularity Zipf-like (the head of a
    catalogue takes most ratings, as in MovieLens), user activity log-normal, no repeats,
    ratings 1-5 leaning high, timestamps in order per user."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / (np.arange(items) + 10.0) ** 0.9
    popularity = popularity[rng.permutation(items)]
    popularity /= popularity.sum()
    activity = rng.lognormal(0.0, 1.0, users)
    cap = max(1, items // 2)
    counts = np.clip(np.round(activity / activity.sum() * interactions), 1, cap)
    for _ in range(50):  # the capped users' share goes to the others, by activity
        deficit = interactions - counts.sum()
        share = activity * (counts < cap)
        if deficit <= 0 or not share.any():
            break
        counts = np.minimum(cap, counts + np.ceil(deficit * share / share.sum()))
    excess = int(counts.sum() - interactions)
    while excess > 0:  # ceil's overshoot, taken from the most active
        top = int(np.argmax(counts))
        take = min(excess, int(counts[top]) - 1)
        counts[top] -= take
        excess -= take
    item = np.concatenate([rng.choice(items, size=n, replace=False, p=popularity)
                           for n in counts.astype(int)])
    user = np.repeat(np.arange(users), counts.astype(int))
    return pd.DataFrame({
        "user_id": user.astype(str), "item_id": item.astype(str),
        "rating": rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], size=len(user),
                             p=[0.06, 0.11, 0.27, 0.35, 0.21]),
        "timestamp": np.arange(len(user), dtype=np.int64)})


def sample_users(folder: Path, n_users: int, seed: int, into: Path) -> Path | None:
    """`folder` cut to `n_users` of its users (seeded) and the items they rated, written
    as RecBole atomic files named like the source (so an ML-100K sample keeps its DBpedia
    join). Into a temporary folder: MovieLens' licence forbids keeping copies."""
    from rag_rec.data import load_dataset
    from rag_rec.settings import DataSettings

    ds = load_dataset(DataSettings(source=folder), into)
    everyone = sorted(ds.interactions.user_id.unique())
    if n_users >= len(everyone):
        return None  # the dataset itself is no larger
    keep = set(np.random.default_rng(seed).choice(everyone, n_users, replace=False))
    inter = ds.interactions[ds.interactions.user_id.isin(keep)]
    items = ds.items.loc[sorted(set(inter.item_id))]
    out = into / f"{ds.name}-{n_users}u"
    out.mkdir(parents=True, exist_ok=True)
    name = ds.name  # RecBole atomic files, named as the source
    inter[["user_id", "item_id", "rating", "timestamp"]].to_csv(
        out / f"{name}.inter", sep="\t", index=False,
        header=["user_id:token", "item_id:token", "rating:float", "timestamp:float"])
    pd.DataFrame({"item_id:token": items.index, "movie_title:token_seq": items.title,
                  "release_year:token": items.year.astype("string").fillna(""),
                  "class:token_seq": [" ".join(g) for g in items.genres]}).to_csv(
        out / f"{name}.item", sep="\t", index=False)
    users = ds.users.loc[ds.users.index.isin(keep)]
    pd.DataFrame({"user_id:token": users.index, "age:token": users.get("age", ""),
                  "gender:token": users.get("gender", ""),
                  "occupation:token": users.get("occupation", ""),
                  "zip_code:token": ""}).to_csv(out / f"{name}.user", sep="\t", index=False)
    return out
