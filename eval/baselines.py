"""Baselines from established implementations: RecBole 1.2.0 models trained on exactly the
split rag_rec uses, scored over the whole catalogue, then evaluated by rag_rec/metrics.py
(the same code as every other system), not by RecBole's own evaluator.

RecBole reads our split as benchmark files (train / valid / test atomic files); a model
with a grid (BPR, LightGCN) is tuned on held-out items, early-stopped on their NDCG@10,
and refit for its best epoch count on the history the test sees (`MODELS`). CKE and
KGIN get the same DBpedia + genre/decade KG rag_rec uses. iALS comes from `implicit`
with a tuning grid (`implicit_scores`). Popularity needs no library.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import types
from itertools import product
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from rag_rec.data import Dataset, Split, SplitProtocol

# RecBole 1.2.0 aliases NumPy 1 names at import time (`np.float = np.float_` ...);
# NumPy 2 removed the right-hand sides, so they are restored first.
np.float_ = np.float64
np.complex_ = np.complex128
np.unicode_ = np.str_
# Its graph models fill a dok_matrix through `_update`, which SciPy >= 1.13 dropped; the
# entries live in `_dict` now.
sp.dok_matrix._update = lambda self, entries: self._dict.update(entries)


def _scatter_mean(src: torch.Tensor, index: torch.Tensor, dim_size: int,
                  dim: int = 0) -> torch.Tensor:
    out = src.new_zeros((dim_size, *src.shape[1:]))
    return out.index_reduce_(dim, index, src, "mean", include_self=False)


# KGIN imports `torch_scatter.scatter_mean`, a compiled package with no wheels for torch
# 2.13; torch's own index_reduce computes the same mean (empty rows stay zero).
sys.modules.setdefault("torch_scatter", types.SimpleNamespace(scatter_mean=_scatter_mean))

#: Model -> (RecBole parameters, a grid tuned on held-out items). Each grid setting is
#: early-stopped on held-out NDCG@10 (`held_out`); the best setting is refit for its best
#: epoch count on train + validation, the history every system sees at test (a
#: user-embedding model only sees what it was trained on). Epochs are capped for a 2-core
#: CPU; the report's `train` figures say where each stopped. SASRec needs an order, so it
#: runs on the leave-last-out splits only, fit once (rag_rec's own SASRec-CE is the
#: sequential bar: eval/systems.py).
MODELS: dict[str, tuple[dict, dict[str, tuple]]] = {
    "EASE": ({"reg_weight": 500.0}, {}),
    "BPR": ({"epochs": 400}, {"learning_rate": (1e-3, 5e-3)}),
    # 5e-3 stopped at epoch 56 on kfold0's held-out items, 0.004 below 2e-3 (epoch 134);
    # one setting keeps LightGCN to ~7 CPU minutes a split.
    "LightGCN": ({"epochs": 300, "n_layers": 2}, {"learning_rate": (2e-3,)}),
    # KGAT needs DGL, which has no wheels for torch 2.13; KGIN and CKE do not.
    "CKE": ({"epochs": 60, "learning_rate": 2e-3}, {}),
    "KGIN": ({"epochs": 20, "learning_rate": 1e-3}, {}),
    "SASRec": ({"epochs": 8, "learning_rate": 1e-3, "loss_type": "CE",
                "train_neg_sample_args": None, "MAX_ITEM_LIST_LENGTH": 50}, {}),
}
SEQUENTIAL = {"SASRec"}


def popularity(ds: Dataset, split: Split, users: list[str]) -> np.ndarray:
    counts = split.train.item_id.value_counts()
    row = counts.reindex(ds.items.index, fill_value=0).to_numpy(dtype=np.float32)
    return np.tile(row, (len(users), 1))


#: Matrix factorisation from `implicit` (CPU): model -> (class, hyper-parameter grid).
#: Small factor counts matter on 100K ratings: 64+ factors overfit. (implicit's BPR was
#: tried too: 0.17-0.29 NDCG@10 on kfold0 over a grid of factors, step sizes and L2,
#: below RecBole's BPR and at best level with popularity, so iALS is the MF baseline.)
IMPLICIT_MODELS: dict[str, tuple[str, dict[str, tuple]]] = {
    "iALS": ("implicit.cpu.als:AlternatingLeastSquares",
             {"factors": (16, 32, 64), "regularization": (0.1, 1.0, 10.0),
              "alpha": (1.0, 2.0, 5.0), "iterations": (30,)}),
}


def implicit_scores(model_name: str, ds: Dataset, split: Split, users: list[str],
                    seed: int = 42) -> tuple[np.ndarray, dict]:
    """An `IMPLICIT_MODELS` model: every grid setting fit and scored by NDCG@10 on the
    `held_out` items; the best is refit on train + validation, the history every system
    sees at test (a user-factor model has to be trained on it to see it). Returns (scores
    for `users` x catalogue, a report)."""
    from importlib import import_module

    from threadpoolctl import threadpool_limits

    from rag_rec.metrics import ndcg_at

    start = time.perf_counter()
    path, grid = IMPLICIT_MODELS[model_name]
    module, cls = path.split(":")
    model_class = getattr(import_module(module), cls)
    col = {i: c for c, i in enumerate(ds.items.index)}
    everyone = sorted(set(split.train.user_id) | set(split.valid.user_id) | set(users))
    row = {u: r for r, u in enumerate(everyone)}

    def matrix(*frames: pd.DataFrame) -> sp.csr_matrix:
        df = pd.concat(frames)
        m = sp.csr_matrix((np.ones(len(df), dtype=np.float32),
                           (df.user_id.map(row).to_numpy(), df.item_id.map(col).to_numpy())),
                          shape=(len(everyone), len(col)))
        m.sort_indices()  # implicit's negative sampling searches the rows
        return m

    def fit(params: dict, m: sp.csr_matrix) -> np.ndarray:
        # implicit runs its own threads and warns when BLAS would run more beneath them.
        with threadpool_limits(1, "blas"):
            model = model_class(**params, random_state=seed)
            model.fit(m, show_progress=False)
        return model.user_factors @ model.item_factors.T

    fit_on, held = held_out(split, seed)
    train = matrix(fit_on)
    checked = np.array([row[u] for u in sorted(set(held.user_id))])
    valid = matrix(held)[checked].toarray() > 0
    seen = train[checked].toarray() > 0
    tuning = {}
    for combo in product(*grid.values()):
        params = dict(zip(grid, combo))
        tuning[json.dumps(params)] = round(ndcg_at(fit(params, train)[checked], seen, valid), 4)
    best = json.loads(max(tuning, key=tuning.get))
    scores = fit(best, matrix(split.train, split.valid))[[row[u] for u in users]]
    return scores, {"params": best, "tuning_ndcg@10": tuning,
                    "seconds": round(time.perf_counter() - start, 1)}


def _write_inter(df: pd.DataFrame, path: Path) -> None:
    with open(path, "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        df[["user_id", "item_id", "timestamp"]].to_csv(f, sep="\t", header=False, index=False)


def _write_atomic(ds: Dataset, split: Split, folder: Path) -> None:
    """The split as RecBole benchmark files (train / valid / test) and as one file whose
    per-user order is ours (timestamps replaced by positions, so RecBole's own
    leave-last-out split, which sequential models need, cannot break ties differently),
    plus the KG, items being KG heads."""
    folder.mkdir(parents=True, exist_ok=True)
    name = folder.name
    for part in ("train", "valid", "test"):
        _write_inter(getattr(split, part), folder / f"{name}.{part}.inter")
    ordered = pd.concat([split.train, split.valid, split.test], ignore_index=True)
    ordered = ordered.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    ordered["timestamp"] = ordered.groupby("user_id").cumcount()
    _write_inter(ordered, folder / f"{name}.inter")
    kg = pd.DataFrame({"head_id": "item:" + ds.triples.item_id,
                       "relation_id": ds.triples.relation, "tail_id": ds.triples.entity_id})
    with open(folder / f"{name}.kg", "w") as f:
        f.write("head_id:token\trelation_id:token\ttail_id:token\n")
        kg.to_csv(f, sep="\t", header=False, index=False)
    # RecBole fails on linked items that no interaction file mentions (loo-cold cuts some).
    present = pd.Index(pd.concat([split.train.item_id, split.valid.item_id,
                                  split.test.item_id]).unique())
    link = pd.DataFrame({"item_id": present, "entity_id": "item:" + present})
    with open(folder / f"{name}.link", "w") as f:
        f.write("item_id:token\tentity_id:token\n")
        link.to_csv(f, sep="\t", header=False, index=False)


def held_out(split: Split, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(what a tuned baseline fits on, the items it is tuned on): the split's validation
    items; for k-fold, whose test items are a random share of each user's, a random 10%
    of each user's train items, as rag_rec's stacker is tuned (on the latest item iALS
    picked settings 0.05 below the best, and RecBole's BPR stopped after a few epochs)."""
    from rag_rec.scorer import ranker_slice
    from rag_rec.settings import RankerSliceSettings

    if split.protocol is SplitProtocol.KFOLD:
        return ranker_slice(split.train, RankerSliceSettings(kind="random", seed=seed))
    return split.train, split.valid


class _Fit(NamedTuple):
    """One RecBole training: the model (best epoch restored) and what scoring needs."""

    model: Any
    dataset: Any
    test: Any
    """RecBole's test loader: the users to score, with their histories."""
    device: str
    best: float
    """Best validation NDCG@10."""
    epoch: int
    """The epoch it came from (the epochs run when nothing was saved)."""
    seconds: float


def _recbole_fit(model_name: str, ds: Dataset, split: Split, workdir: Path, params: dict,
                 seed: int) -> _Fit:
    """One RecBole training on `split` (its valid items early-stop it unless
    `eval_step` is 0)."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    data_dir = workdir / "data" / split.name
    _write_atomic(ds, split, data_dir)
    if model_name in SEQUENTIAL:
        files = {"eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO",
                               "mode": "full", "group_by": "user"}}
    else:
        files = {"benchmark_filename": ["train", "valid", "test"],
                 "eval_args": {"split": None, "order": "TO", "mode": "full",
                               "group_by": "user"}}
    config = Config(model=model_name, dataset=split.name, config_dict={
        "data_path": str(data_dir.parent), **files,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"],
                     "kg": ["head_id", "relation_id", "tail_id"],
                     "link": ["item_id", "entity_id"]},
        "metrics": ["NDCG"], "topk": [10], "valid_metric": "NDCG@10",
        "eval_step": 2, "stopping_step": 10, "train_batch_size": 2048,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "checkpoint_dir": str(workdir / "checkpoints"), "show_progress": False,
        "seed": seed, "reproducibility": True, "state": "WARNING",
        **params,
    })
    init_seed(config["seed"], config["reproducibility"])
    logging.getLogger().setLevel(logging.WARNING)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = get_model(model_name)(config, train._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    start = time.perf_counter()
    best, _ = trainer.fit(train, valid, saved=True, show_progress=False)
    seconds = time.perf_counter() - start
    epoch = config["epochs"]
    if Path(trainer.saved_model_file).exists():
        # RecBole's own reload uses torch.load's old default (weights_only=False), which
        # torch >= 2.6 refuses for its checkpoints; the state dict is all that is needed.
        state = torch.load(trainer.saved_model_file, map_location=config["device"],
                           weights_only=False)
        model.load_state_dict(state["state_dict"])
        epoch = state["epoch"] + 1
    model.eval()
    return _Fit(model, dataset, test, config["device"], float(best), epoch, seconds)


def recbole_scores(model_name: str, ds: Dataset, split: Split, users: list[str],
                   workdir: Path, seed: int = 42) -> tuple[np.ndarray, dict]:
    """Train `model_name` on the split (tuned and refit as `MODELS` says); its scores
    (users x catalogue) for `users` at test time, and a training report."""
    params, grid = MODELS[model_name]
    if model_name in SEQUENTIAL:
        fit = _recbole_fit(model_name, ds, split, workdir, params, seed)
        info = {"best_valid_ndcg@10": round(fit.best, 4), "epochs": fit.epoch,
                "train_s": round(fit.seconds, 1)}
    else:
        fit_on, held = held_out(split, seed)
        tuning, total = {}, 0.0
        for combo in product(*grid.values()):
            setting = dict(zip(grid, combo))
            tried = _recbole_fit(model_name, ds, Split(split.name + "-tune", fit_on, held, held),
                                 workdir, params | setting, seed)
            tuning[json.dumps(setting)] = {"ndcg@10": round(tried.best, 4),
                                           "epochs": tried.epoch}
            total += tried.seconds
        chosen = max(tuning, key=lambda k: tuning[k]["ndcg@10"])
        refit = Split(split.name + "-refit", pd.concat([split.train, split.valid]),
                      split.valid, split.test)
        fit = _recbole_fit(
            model_name, ds, refit, workdir,
            params | json.loads(chosen) | {"epochs": tuning[chosen]["epochs"], "eval_step": 0},
            seed)
        info = {"params": json.loads(chosen), "epochs": tuning[chosen]["epochs"],
                "tuning": tuning, "train_s": round(total + fit.seconds, 1)}

    columns = {tok: j for j, tok in enumerate(ds.items.index)}
    dataset = fit.dataset
    internal = dataset.field2id_token[dataset.iid_field]
    col_of = np.array([columns.get(tok, -1) for tok in internal])
    row_of = {u: r for r, u in enumerate(users)}
    uid_tokens = dataset.field2id_token[dataset.uid_field]
    ok = col_of >= 0
    scores = np.full((len(users), len(columns)), -np.inf, dtype=np.float32)
    with torch.no_grad():
        for interaction, *_ in fit.test:
            out = fit.model.full_sort_predict(interaction.to(fit.device))
            out = out.view(len(interaction), -1).cpu().numpy()
            for b, uid in enumerate(interaction[dataset.uid_field].cpu().numpy()):
                r = row_of.get(uid_tokens[uid])
                if r is not None:
                    scores[r, col_of[ok]] = out[b, ok]
    return scores, info
