"""Candidate sources: strong recommenders behind one protocol, in memory.

A source is fit on interactions (tuning its own knobs on held-out "tuning" items), then
scores the whole catalogue for a batch of `Query`s (a history, and for new users
possibly a free-text vector and KG entities). The union (retrieve.py) takes each
source's top items; the scorer (scorer.py) reads every source's score and rank for every
candidate as features: it is a stacker over these sources.

| name      | what                                                                  | fit       |
|-----------|-----------------------------------------------------------------------|-----------|
| `ease`    | EASE (Steck 2019): closed-form item-item, L2 chosen on tuning items   | seconds   |
| `ials`    | implicit ALS (`implicit`): factors and L2 chosen on tuning items      | seconds   |
| `sasrec`  | SASRec next-item transformer, full-softmax cross-entropy, early stop   | minutes   |
| `markov`  | Markov chain: what followed the history's last item, window tuned     | seconds   |
| `faiss`   | inner product with the user's fused text + KG vector (FAISS index)    | none      |
| `kg_path` | items sharing KG entities with the history, each path weighted        | none      |
|           | 1/log2(1 + entity degree), hubs skipped (the graph's `kg_path_candidates`, |     |
|           | as a sparse product in memory: ~1 ms instead of a Bolt round trip)    |           |
| `popular` | train popularity                                                      | none      |

Scores are `float32` arrays (queries x catalogue, the FAISS index's id order); `-inf`
marks what a source cannot score (an item added after it was fit). A source that cannot
fit raises `SourceUnavailable`; `fit_sources` goes on without it and reports why.
Co-rating neighbours (the graph's `collaborative_candidates`) are gone: EASE is the
same signal, solved exactly, and the ablation had nothing left for it to add.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from functools import cache
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn
from tqdm import tqdm

from rag_rec.artifacts import Artifacts
from rag_rec.embed import fuse, profile_vector
from rag_rec.errors import RagRecError, StaleArtifact
from rag_rec.metrics import ndcg_at
from rag_rec.settings import RetrievalSettings, SourceSettings


class SourceUnavailable(RagRecError):
    """A source cannot fit these data (too few interactions, catalogue too large)."""


@dataclass
class Query:
    """What a source scores for: one user's situation."""

    history: list[tuple[str, float]]
    """(item id, rating), oldest first."""
    text: np.ndarray | None = None
    """A free-text taste in the text half of the index space (new users)."""
    entities: tuple[str, ...] = ()
    """KG entity ids named by a taste profile (new users)."""


class CandidateSource(Protocol):
    """The interface every source implements (registered by name in `SOURCES`)."""

    name: ClassVar[str]

    def fit(self, train: pd.DataFrame, tune: pd.DataFrame | None, *,
            warm: CandidateSource | None = None, progress: bool = False) -> dict:
        """Learn from `train`; choose knobs on `tune` (user_id, item_id: the items to
        find given each user's `train` history), or take them from `warm`, a copy fit
        on a subset. Returns a report (times, chosen knobs)."""

    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        """(len(queries), catalogue) scores, higher is better; -inf where unknown."""

    def add_item(self, item_id: str, entity_ids: Sequence[str]) -> None: ...

    def save(self, folder: Path) -> None: ...

    def load(self, folder: Path) -> None: ...


class _Base:
    """Shared plumbing: the catalogue order, and interaction matrices in it."""

    name: ClassVar[str]

    def __init__(self, artifacts: Artifacts, settings: SourceSettings,
                 retrieval: RetrievalSettings):
        self.a = artifacts
        self.cfg = settings
        self.retrieval = retrieval
        self.col = {i: c for c, i in enumerate(artifacts.index.ids)}

    @property
    def n_items(self) -> int:
        return len(self.a.index.ids)

    def history_matrix(self, histories: Sequence[Sequence[tuple[str, float]]],
                       n_cols: int | None = None) -> sp.csr_matrix:
        """Binary (histories x items) matrix; items outside the first `n_cols` dropped."""
        n_cols = n_cols or self.n_items
        rows, cols = [], []
        for r, history in enumerate(histories):
            for item_id, _ in history:
                c = self.col.get(item_id)
                if c is not None and c < n_cols:
                    rows.append(r)
                    cols.append(c)
        data = np.ones(len(rows), dtype=np.float32)
        m = sp.csr_matrix((data, (rows, cols)), shape=(len(histories), n_cols))
        m.data[:] = 1.0  # duplicates summed by the constructor count once
        return m

    @staticmethod
    def _grid(options: Sequence, warm_choice: object | None,
              tune: pd.DataFrame | None) -> list:
        """The knob values a fit tries: the warm fit's choice, else the whole grid when
        there are tuning items to choose on, else the middle of the grid."""
        if warm_choice is not None:
            return [warm_choice]
        if tune is not None and len(tune):
            return list(options)
        return [options[len(options) // 2]]

    def _pad(self, scores: np.ndarray) -> np.ndarray:
        """Columns for items added after fitting: -inf (the source cannot score them)."""
        missing = self.n_items - scores.shape[1]
        if missing <= 0:
            return scores
        return np.concatenate(
            [scores, np.full((len(scores), missing), -np.inf, np.float32)], axis=1)

    def add_item(self, item_id: str, entity_ids: Sequence[str]) -> None:
        """An item joined the catalogue (the index) after the fit; a source that cannot
        score it pads its column with -inf."""
        self.col[item_id] = len(self.col)

    def save(self, folder: Path) -> None:
        pass

    def load(self, folder: Path) -> None:
        pass


def histories_of(inter: pd.DataFrame) -> dict[str, list[tuple[str, float]]]:
    """User id -> (item id, rating) oldest first (ties by item id)."""
    ordered = inter.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    return {u: list(zip(g.item_id, g.rating.astype(float)))
            for u, g in ordered.groupby("user_id", sort=True)}


def held_out_matrices(histories: dict[str, list[tuple[str, float]]], targets: pd.DataFrame,
                      col: dict[str, int]) -> tuple[list[Query], np.ndarray, np.ndarray]:
    """For the users with both a history and `targets`: their queries, and (users x items)
    masks of what they have seen and what they went on to choose."""
    users = sorted(set(targets.user_id) & set(histories))
    seen = np.zeros((len(users), len(col)), dtype=bool)
    target = np.zeros_like(seen)
    for r, u in enumerate(users):
        seen[r, [col[i] for i, _ in histories[u] if i in col]] = True
    row = {u: r for r, u in enumerate(users)}
    t = targets[targets.user_id.isin(row) & targets.item_id.isin(col)]
    target[t.user_id.map(row).to_numpy(), t.item_id.map(col).to_numpy()] = True
    return [Query(histories[u]) for u in users], seen, target


def tuning_ndcg(source: CandidateSource, histories: dict[str, list[tuple[str, float]]],
                tune: pd.DataFrame, col: dict[str, int]) -> float:
    """NDCG@10 of `source` at finding each tuning user's `tune` items, full ranking over
    the items not in their history: the knob-choosing metric of EASE and SASRec."""
    queries, seen, target = held_out_matrices(histories, tune, col)
    return ndcg_at(source.scores(queries), seen & ~target, target, 10)


# --------------------------------------------------------------------------- EASE


class EASE(_Base):
    """Embarrassingly shallow autoencoder: B = I - P / diag(P), P = (XᵀX + λI)⁻¹."""

    name = "ease"

    def fit(self, train: pd.DataFrame, tune: pd.DataFrame | None, *,
            warm: CandidateSource | None = None, progress: bool = False) -> dict:
        if self.n_items > self.cfg.ease_max_items:
            raise SourceUnavailable(
                f"ease: {self.n_items} items need a dense {self.n_items}² matrix (limit "
                f"`sources.ease_max_items` = {self.cfg.ease_max_items})")
        start = time.perf_counter()
        histories = histories_of(train)
        x = self.history_matrix(list(histories.values()))
        if x.nnz == 0:
            raise SourceUnavailable("ease: no interactions to fit on")
        gram = (x.T @ x).toarray().astype(np.float64)
        grid = self._grid(self.cfg.ease_l2, warm.l2 if isinstance(warm, EASE) else None, tune)
        tried = {}
        for l2 in grid:
            self._solve(gram, l2)
            if len(grid) > 1:
                tried[l2] = tuning_ndcg(self, histories, tune, self.col)
        if tried:
            self._solve(gram, max(tried, key=tried.get))
        return {"l2": self.l2, "tuning_ndcg@10": {str(k): round(v, 4) for k, v in tried.items()},
                "seconds": round(time.perf_counter() - start, 1)}

    def _solve(self, gram: np.ndarray, l2: float) -> None:
        g = gram.copy()
        g[np.diag_indices_from(g)] += l2
        p = np.linalg.inv(g)
        b = p / (-np.diag(p))
        np.fill_diagonal(b, 0.0)
        self.l2, self.b = float(l2), b.astype(np.float32)

    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        x = self.history_matrix([q.history for q in queries], len(self.b))
        out = np.asarray(x @ self.b, dtype=np.float32)
        out[x.getnnz(1) == 0] = -np.inf  # no known history: nothing to score from
        return self._pad(out)

    def save(self, folder: Path) -> None:
        np.save(folder / "ease.npy", self.b)
        (folder / "ease.json").write_text(json.dumps({"l2": self.l2}))

    def load(self, folder: Path) -> None:
        self.b = np.load(folder / "ease.npy")
        self.l2 = json.loads((folder / "ease.json").read_text())["l2"]


@cache
def _blas_threads():
    """threadpoolctl's controller over the loaded BLAS libraries, found once: a fresh
    `threadpool_limits` rescans them (~1-2 ms, more than iALS takes to score one query)."""
    import implicit.cpu.als  # noqa: F401  (its BLAS is loaded before the scan)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class IALS(_Base):
    """Implicit ALS (Hu, Koren & Volinsky 2008; `implicit`'s solver): item factors learned
    on train, a user's factors solved from their history at query time (the same least
    squares the fit alternates), so any history is scored, as EASE does. Factors and L2
    chosen on the tuning items; a matrix factorization beside EASE's item-item model."""

    name = "ials"

    def _model(self, factors: int, regularization: float):
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=factors, regularization=regularization, alpha=self.cfg.ials_alpha,
            iterations=self.cfg.ials_iterations, random_state=self.cfg.seed)

    def fit(self, train: pd.DataFrame, tune: pd.DataFrame | None, *,
            warm: CandidateSource | None = None, progress: bool = False) -> dict:
        start = time.perf_counter()
        histories = histories_of(train)
        x = self.history_matrix(list(histories.values()))
        if x.nnz == 0:
            raise SourceUnavailable("ials: no interactions to fit on")
        grid = self._grid([(f, r) for f in self.cfg.ials_factors for r in self.cfg.ials_l2],
                          warm.params if isinstance(warm, IALS) else None, tune)
        tried, models = {}, {}
        for params in grid:
            # implicit runs its own threads; BLAS threads beneath them only contend.
            with _blas_threads().limit(limits=1, user_api="blas"):
                self.model = models[params] = self._model(*params)
                self.model.fit(x, show_progress=False)
            self.params = params
            if len(grid) > 1:
                tried[params] = tuning_ndcg(self, histories, tune, self.col)
        if tried:
            self.params = max(tried, key=tried.get)
            self.model = models[self.params]
        return {"factors": self.params[0], "l2": self.params[1],
                "tuning_ndcg@10": {f"{f}/{r}": round(v, 4) for (f, r), v in tried.items()},
                "seconds": round(time.perf_counter() - start, 1)}

    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        items = self.model.item_factors
        x = self.history_matrix([q.history for q in queries], len(items))
        with _blas_threads().limit(limits=1, user_api="blas"):
            users = self.model.recalculate_user(np.arange(len(queries)), x)
        out = np.asarray(users @ items.T, dtype=np.float32)
        out[x.getnnz(1) == 0] = -np.inf  # no known history: nothing to score from
        return self._pad(out)

    def save(self, folder: Path) -> None:
        np.save(folder / "ials.npy", self.model.item_factors)
        (folder / "ials.json").write_text(json.dumps({"params": list(self.params)}))

    def load(self, folder: Path) -> None:
        self.params = tuple(json.loads((folder / "ials.json").read_text())["params"])
        with _blas_threads().limit(limits=1, user_api="blas"):  # else implicit warns
            self.model = self._model(*self.params)
        self.model.item_factors = np.load(folder / "ials.npy")


# --------------------------------------------------------------------------- SASRec


class _SASRecNet(nn.Module):
    """Causal self-attention over the last `max_len` items (Kang & McAuley 2018), item
    table tied between input and output; optional content vectors added to the ids."""

    def __init__(self, n_items: int, cfg: SourceSettings, content: torch.Tensor | None):
        super().__init__()
        d = cfg.sasrec_d
        self.d = d
        self.items = nn.Embedding(n_items + 1, d, padding_idx=0)  # row 0 = padding
        self.content = None
        if content is not None:
            self.register_buffer("features", torch.cat([torch.zeros(1, content.shape[1]),
                                                        content]))
            self.content = nn.Linear(content.shape[1], d, bias=False)
        self.positions = nn.Embedding(cfg.sasrec_max_len, d)
        layer = nn.TransformerEncoderLayer(d, cfg.sasrec_heads, dim_feedforward=d,
                                           dropout=cfg.sasrec_dropout, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.sasrec_blocks,
                                            enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.sasrec_dropout)
        nn.init.normal_(self.items.weight, std=0.02)

    def table(self) -> torch.Tensor:
        t = self.items.weight
        if self.content is not None:
            t = t + self.content(self.features)
        return t

    def forward(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states (B, L, d), item table (n + 1, d)) for left-padded `seq`."""
        table = self.table()
        length = seq.shape[1]
        x = table[seq] * math.sqrt(self.d) + self.positions.weight[-length:]
        x = self.drop(x) * (seq > 0).unsqueeze(-1)
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=seq.device,
                                                                dtype=torch.bool)
        return self.norm(self.blocks(x, mask=causal, is_causal=True)), table


def member_seed(seed: int, k: int) -> int:
    """Member `k`'s seed: member 0 keeps `seed` (a one-member fit is as before); the
    others draw from a seed sequence keyed by (seed, k), so no two evaluation seeds share
    an initialisation (with `seed + k`, member 1 of seed 42 started as member 0 of seed
    43, and the spread over seeds understated a fresh draw's)."""
    if k == 0:
        return seed
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


class SASRec(_Base):
    """Next-item transformer trained with full-softmax cross-entropy over the catalogue,
    early-stopped on NDCG@10 of the tuning items; a refit warm-starts from the tuned
    model for a share of its best epoch count."""

    name = "sasrec"

    def _net(self, n_items: int) -> _SASRecNet:
        content = None
        if self.cfg.sasrec_content:
            content = torch.from_numpy(np.stack(
                [self.a.index.vector(i) for i in self.a.index.ids[:n_items]]))
        return _SASRecNet(n_items, self.cfg, content)

    def _sequences(self, histories: dict[str, list[tuple[str, float]]]) -> list[list[int]]:
        return [[self.col[i] + 1 for i, _ in h if i in self.col] for h in histories.values()]

    def _windows(self, seqs: list[list[int]]) -> torch.Tensor:
        """Each sequence cut from its end into windows of max_len + 1 items (inputs and
        next-item targets), left-padded: every interaction is a target once."""
        span = self.cfg.sasrec_max_len + 1
        rows = []
        for seq in seqs:
            end = len(seq)
            while end > 1:
                part = seq[max(0, end - span):end]
                rows.append([0] * (span - len(part)) + part)
                end -= span - 1
        return torch.tensor(rows, dtype=torch.long)

    def _crops(self, seqs: list[list[int]], gen: torch.Generator) -> torch.Tensor:
        """One crop per long enough sequence, drawn anew each epoch: its first
        `sasrec_crop_keep` items, then `sasrec_crop` items from a random later point. The
        model learns to predict from a short history with a gap before its latest items,
        which is what a cold user's history looks like, and gets more late-sequence
        targets (leave-last-out, plain ids, seeds 42-44: 0.1115 with crops against
        0.0995 for SASRec-CE-200, eval/offline.py)."""
        keep, tail = self.cfg.sasrec_crop_keep, self.cfg.sasrec_crop
        span = self.cfg.sasrec_max_len + 1
        rows = []
        for seq in seqs:
            if len(seq) < keep + tail + 2:
                continue
            cut = int(torch.randint(keep + 1, len(seq) - tail + 1, (1,), generator=gen))
            part = (seq[:keep] + seq[cut:cut + tail])[-span:]
            rows.append([0] * (span - len(part)) + part)
        return torch.tensor(rows, dtype=torch.long).reshape(-1, span)

    def fit(self, train: pd.DataFrame, tune: pd.DataFrame | None, *,
            warm: CandidateSource | None = None, progress: bool = False) -> dict:
        """Member 0 is early-stopped on `tune`; the others train for its best epoch count
        (no checks: their curves would stop near it anyway). A refit warm-starts each
        member from the same member of `warm`."""
        start = time.perf_counter()
        histories = histories_of(train)
        seqs = self._sequences(histories)
        windows = self._windows(seqs)
        if len(windows) < 2:
            raise SourceUnavailable("sasrec: fewer than two sequences to learn from")
        self.nets, reports = [], []
        for k in range(self.cfg.sasrec_members):
            if isinstance(warm, SASRec):
                start_from, epochs = warm.nets[k], max(1, round(
                    warm.best_epoch * self.cfg.sasrec_refit_share))
            else:
                start_from = None
                epochs = self.cfg.sasrec_epochs if k == 0 else self.best_epoch
            reports.append(self._fit_member(k, histories, seqs, windows, start_from, epochs,
                                            tune if k == 0 and warm is None else None,
                                            progress))
            if k == 0:
                self.best_epoch = reports[0]["best_epoch"]
        return {**reports[0], "members": reports[1:],
                "seconds": round(time.perf_counter() - start, 1)}

    def _fit_member(self, k: int, histories: dict, seqs: list[list[int]],
                    windows: torch.Tensor, start_from: _SASRecNet | None, epochs: int,
                    tune: pd.DataFrame | None, progress: bool) -> dict:
        """Train member `k` (seeded by `member_seed`) and append it to `self.nets`; with
        `tune`, keep its best state on the tuning items."""
        seed = member_seed(self.cfg.seed, k)
        torch.manual_seed(seed)
        net = self._net(self.n_items)
        if start_from is not None:
            net.load_state_dict(start_from.state_dict())
        # Trained on a GPU when there is one (an H100 fit the evaluation's SASRec
        # baselines in 13-62 s each, three at once; two CPU cores take 6-47 min), served
        # from the CPU like a loaded model.
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        net.to(device)
        self.nets.append(net)  # tuning_ndcg scores the members so far
        opt = torch.optim.Adam(net.parameters(), lr=self.cfg.sasrec_lr)
        gen = torch.Generator().manual_seed(seed)
        best, best_state, stale, best_epoch = -1.0, None, 0, epochs
        curve = []
        bar = tqdm(range(1, epochs + 1), desc=f"fit sasrec {k + 1}/{self.cfg.sasrec_members}",
                   unit="epoch", disable=not progress, leave=False)
        for epoch in bar:
            net.train()
            rows = windows
            if self.cfg.sasrec_crop:
                rows = torch.cat([windows, self._crops(seqs, gen)])
            for idx in torch.randperm(len(rows), generator=gen).split(self.cfg.sasrec_batch):
                seq = rows[idx].to(device)
                hidden, table = net(seq[:, :-1])
                # The catalogue-wide logits only where there is a target: a third of the
                # positions are left padding, and the softmax over ~1,700 items is most
                # of an epoch's work (the loss is the same as with ignore_index).
                target = seq[:, 1:]
                real = target > 0
                logits = hidden[real] @ table.T
                logits[:, 0] = -1e9  # padding is never a target
                loss = nn.functional.cross_entropy(logits, target[real])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if tune is None or epoch % self.cfg.sasrec_eval_every:
                continue
            score = tuning_ndcg(self, histories, tune, self.col)
            curve.append(round(score, 4))
            bar.set_postfix(tune_ndcg=f"{score:.4f}")
            if score > best + 1e-4:
                best, stale, best_epoch = score, 0, epoch
                best_state = {n: v.clone() for n, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= self.cfg.sasrec_patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.cpu().eval()
        return {"epochs_run": epoch, "best_epoch": best_epoch, "tuning_curve": curve,
                "windows": len(windows), "device": device.type}

    @torch.no_grad()
    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        """The members' mean log-probability of each item coming next (one member: its
        logits, which rank the same)."""
        n = self.nets[0].items.num_embeddings - 1
        span = self.cfg.sasrec_max_len
        seqs = []
        for q in queries:
            seq = [self.col[i] + 1 for i, _ in q.history
                   if i in self.col and self.col[i] < n][-span:]
            seqs.append([0] * (span - len(seq)) + seq)
        out = np.full((len(queries), n), -np.inf, dtype=np.float32)
        has = np.array([any(s) for s in seqs], dtype=bool)
        if has.any():
            seq = torch.tensor([s for s, h in zip(seqs, has) if h], dtype=torch.long)
            parts = []
            for chunk in seq.split(512):
                total = 0.0
                for net in self.nets:
                    net.eval()
                    device = next(net.parameters()).device  # the GPU while fitting
                    hidden, table = net(chunk.to(device))
                    logits = (hidden[:, -1] @ table[1:].T).cpu()
                    total = total + (logits if len(self.nets) == 1
                                     else torch.log_softmax(logits, -1))
                parts.append((total / len(self.nets)).numpy())
            out[has] = np.concatenate(parts)
        return self._pad(out)

    def save(self, folder: Path) -> None:
        torch.save([net.state_dict() for net in self.nets], folder / "sasrec.pt")
        (folder / "sasrec.json").write_text(json.dumps(
            {"n_items": self.nets[0].items.num_embeddings - 1, "best_epoch": self.best_epoch}))

    def load(self, folder: Path) -> None:
        meta = json.loads((folder / "sasrec.json").read_text())
        states = torch.load(folder / "sasrec.pt", weights_only=True)
        if isinstance(states, dict):  # saved before members: one net
            states = [states]
        if len(states) != self.cfg.sasrec_members:
            raise ValueError(f"{len(states)} SASRec members saved, "
                             f"{self.cfg.sasrec_members} configured")
        self.nets = []
        for state in states:
            net = self._net(meta["n_items"])
            net.load_state_dict(state)
            self.nets.append(net.eval())
        self.best_epoch = meta["best_epoch"]


# --------------------------------------------------------------------------- content


class Faiss(_Base):
    """The user's fused vector (recency- and rating-weighted history; a free text joins
    as a text-only vector) against every item in the FAISS index."""

    name = "faiss"

    def fit(self, train: pd.DataFrame, tune: pd.DataFrame | None, *,
            warm: CandidateSource | None = None, progress: bool = False) -> dict:
        return {}

    def query_vector(self, q: Query) -> np.ndarray:
        index = self.a.index
        parts, weights = [], []
        known = [(i, r) for i, r in q.history if i in index]
        if known:
            vecs = np.stack([index.vector(i) for i, _ in known])
            parts.append(profile_vector(vecs, [r for _, r in known],
                                        self.a.embed.history_half_life))
            weights.append(1.0)
        if q.text is not None:
            parts.append(fuse(q.text, np.zeros(self.a.kg.dim, np.float32)))
            weights.append(0.5 if known else 1.0)
        if not parts:
            return np.zeros(index.dim, dtype=np.float32)
        return sum(w * p for w, p in zip(weights, parts)).astype(np.float32)

    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        q = np.stack([self.query_vector(x) for x in queries])
        out = self.a.index.dense_scores(q)
        out[~q.any(1)] = -np.inf  # nothing to compare with
        return out


class KGPath(_Base):
    """Paths (history item)-[r]->(entity)<-[r']-(candidate), each weighted
    1/log2(1 + entity degree), entities above `max_entity_degree` items skipped; KG
    entities from a taste profile count as one-hop paths."""

    name = "kg_path"

    def fit(self, train: pd.DataFrame, tune: pd.DataFrame | None, *,
            warm: CandidateSource | None = None, progress: bool = False) -> dict:
        self._links()
        return {}

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.extra: list[tuple[str, str]] = []
        """(item, entity) links of items added after the build (not in the dataset)."""

    def add_item(self, item_id: str, entity_ids: Sequence[str]) -> None:
        super().add_item(item_id, entity_ids)
        self.extra += [(item_id, e) for e in entity_ids]
        self._links()

    def _links(self) -> None:
        # As in the graph: an entity's degree counts its item links (one per relation),
        # and an item linked to an entity by two relations makes two paths through it.
        t = self.a.ds.triples[["item_id", "relation", "entity_id"]]
        t = pd.concat([t, pd.DataFrame([(i, "added", e) for i, e in self.extra],
                                       columns=["item_id", "relation", "entity_id"])])
        t = t[t.item_id.isin(self.col)].drop_duplicates()
        degree = t.groupby("entity_id").item_id.size()
        keep = degree[degree <= self.retrieval.max_entity_degree]
        self.entity_col = {e: c for c, e in enumerate(keep.index)}
        t = t[t.entity_id.isin(self.entity_col)]
        weight = 1.0 / np.log2(1.0 + keep.to_numpy(dtype=np.float64))
        links = sp.csr_matrix((np.ones(len(t), np.float32),
                               (t.item_id.map(self.col).to_numpy(),
                                t.entity_id.map(self.entity_col).to_numpy())),
                              shape=(self.n_items, len(keep)))
        self.item_entity = links
        self.weighted_t = (links @ sp.diags(weight.astype(np.float32))).T.tocsr()

    def load(self, folder: Path) -> None:
        self._links()

    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        x = self.history_matrix([q.history for q in queries])
        ent = x @ self.item_entity  # paths through each entity
        seeds = [[self.entity_col[e] for e in q.entities if e in self.entity_col]
                 for q in queries]
        if any(seeds):
            extra = sp.lil_matrix(ent.shape, dtype=np.float32)
            for r, cols in enumerate(seeds):
                for c in cols:
                    extra[r, c] = 1.0
            ent = ent + extra.tocsr()
        out = np.asarray((ent @ self.weighted_t).todense(), dtype=np.float32)
        out[np.asarray(ent.sum(1)).ravel() == 0] = -np.inf
        return out


class Markov(_Base):
    """What followed the history's latest item in the training sequences: a first-order
    Markov chain whose transitions count the next `window` items, the one `k` steps on
    weighted 1/k (the window chosen on the tuning items), with popularity breaking ties.

    SASRec reads the whole history; this reads only its last step, which is what a short
    history has to go on: on loo-cold it finds the 283 cold users' test items at NDCG@10
    0.067 alone against 0.044 for the SASRec pair (seeds 42-44), all users 0.080
    against 0.094."""

    name = "markov"

    def fit(self, train: pd.DataFrame, tune: pd.DataFrame | None, *,
            warm: CandidateSource | None = None, progress: bool = False) -> dict:
        start = time.perf_counter()
        histories = histories_of(train)
        seqs = [np.array([self.col[i] for i, _ in h if i in self.col], dtype=np.int64)
                for h in histories.values()]
        self.counts = np.bincount(np.concatenate(seqs or [np.zeros(0, np.int64)]),
                                  minlength=self.n_items).astype(np.float32)
        if not self.counts.any():
            raise SourceUnavailable("markov: no interactions to fit on")
        grid = self._grid(self.cfg.markov_window,
                          warm.window if isinstance(warm, Markov) else None, tune)
        tried = {}
        for window in grid:
            self._count(seqs, window)
            if len(grid) > 1:
                tried[window] = tuning_ndcg(self, histories, tune, self.col)
        if tried and self.window != max(tried, key=tried.get):
            self._count(seqs, max(tried, key=tried.get))
        return {"window": self.window,
                "tuning_ndcg@10": {str(k): round(v, 4) for k, v in tried.items()},
                "seconds": round(time.perf_counter() - start, 1)}

    def _count(self, seqs: list[np.ndarray], window: int) -> None:
        rows, cols, weights = [], [], []
        for seq in seqs:
            for k in range(1, min(window, len(seq) - 1) + 1):
                rows.append(seq[:-k])
                cols.append(seq[k:])
                weights.append(np.full(len(seq) - k, 1.0 / k, dtype=np.float32))
        n = self.n_items
        self.window = int(window)
        self.t = sp.csr_matrix((np.concatenate(weights or [np.zeros(0, np.float32)]),
                                (np.concatenate(rows or [np.zeros(0, np.int64)]),
                                 np.concatenate(cols or [np.zeros(0, np.int64)]))),
                               shape=(n, n), dtype=np.float32)

    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        fitted = self.t.shape[0]
        # Ties (items never seen after the last one) in popularity order, below any
        # transition: a transition weighs at least 1/window.
        out = np.tile(self.counts / (self.counts.max() * 2 * self.window), (len(queries), 1))
        for r, q in enumerate(queries):
            last = next((self.col[i] for i, _ in reversed(q.history)
                         if self.col.get(i, fitted) < fitted), None)
            if last is None:  # no known item: nothing to follow
                out[r] = -np.inf
            else:
                out[r] += self.t[last].toarray()[0]
        return self._pad(out)

    def save(self, folder: Path) -> None:
        sp.save_npz(folder / "markov.npz", self.t)
        np.save(folder / "markov_counts.npy", self.counts)
        (folder / "markov.json").write_text(json.dumps({"window": self.window}))

    def load(self, folder: Path) -> None:
        self.t = sp.load_npz(folder / "markov.npz").tocsr()
        self.counts = np.load(folder / "markov_counts.npy")
        self.window = json.loads((folder / "markov.json").read_text())["window"]


class Popular(_Base):
    """Interactions per item in the training data (log-scaled)."""

    name = "popular"

    def fit(self, train: pd.DataFrame, tune: pd.DataFrame | None, *,
            warm: CandidateSource | None = None, progress: bool = False) -> dict:
        counts = train.item_id.value_counts()
        self.counts = np.array([counts.get(i, 0) for i in self.a.index.ids], dtype=np.float32)
        return {}

    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        return np.tile(self._pad(np.log1p(self.counts)[None, :]), (len(queries), 1))

    def save(self, folder: Path) -> None:
        np.save(folder / "popular.npy", self.counts)

    def load(self, folder: Path) -> None:
        self.counts = np.load(folder / "popular.npy")


SOURCES: dict[str, type[_Base]] = {s.name: s for s in (EASE, IALS, SASRec, Markov, Faiss,
                                                         KGPath, Popular)}


def make_source(name: str, artifacts: Artifacts, settings: SourceSettings,
                retrieval: RetrievalSettings) -> CandidateSource:
    try:
        cls = SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown candidate source {name!r}; valid: "
                         f"{', '.join(SOURCES)}") from None
    return cls(artifacts, settings, retrieval)


def fit_sources(artifacts: Artifacts, settings: SourceSettings, retrieval: RetrievalSettings,
                train: pd.DataFrame, tune: pd.DataFrame | None, *,
                warm: dict[str, CandidateSource] | None = None, progress: bool = False
                ) -> tuple[dict[str, CandidateSource], dict[str, dict]]:
    """Fit every enabled source; one that cannot fit is left out and its reason kept in
    the report (`{"unavailable": "..."}`)."""
    sources, report = {}, {}
    for name in settings.enabled:
        source = make_source(name, artifacts, settings, retrieval)
        try:
            report[name] = source.fit(train, tune, warm=(warm or {}).get(name),
                                      progress=progress)
        except SourceUnavailable as exc:
            report[name] = {"unavailable": str(exc)}
            continue
        sources[name] = source
    return sources, report


def save_sources(sources: dict[str, CandidateSource], report: dict, folder: Path,
                 fingerprint: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for source in sources.values():
        source.save(folder)
    (folder / "sources.json").write_text(json.dumps(
        {"fingerprint": fingerprint, "fitted": list(sources), "report": report}, indent=1))


def load_sources(artifacts: Artifacts, settings: SourceSettings, retrieval: RetrievalSettings,
                 folder: Path, fingerprint: str) -> tuple[dict[str, CandidateSource], dict]:
    """The fitted sources saved in `folder`; `StaleArtifact` when missing or stale."""
    fix = f"rebuild with `{artifacts.rebuild}`"
    try:
        meta = json.loads((folder / "sources.json").read_text())
    except (OSError, ValueError) as exc:
        raise StaleArtifact(f"no fitted sources in {folder} ({exc}); {fix}") from None
    if meta["fingerprint"] != fingerprint:
        raise StaleArtifact(f"the sources in {folder} were fit for another build; {fix}")
    sources = {}
    for name in meta["fitted"]:
        source = make_source(name, artifacts, settings, retrieval)
        try:
            source.load(folder)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise StaleArtifact(f"source {name!r} in {folder} is missing or corrupt "
                                f"({exc}); {fix}") from None
        sources[name] = source
    return sources, meta["report"]
