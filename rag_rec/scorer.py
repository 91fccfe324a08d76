"""The attention scorer: a calibrated probability that a user likes a candidate.

Model (torch): target attention over the user's history. Every item is represented as
[text embedding ⊕ PyKEEN embedding ⊕ learned id embedding] projected to `d`; the id part
is dropped at random in training (and is zero for items added after training), so cold
items are scored from content alone. The candidate attends to the last `max_history`
history items (scaled dot product, padding masked, a learned recency-position embedding
added, since order matters); [candidate, attended history, their product, user KG
embedding, side features (popularity, fused-space similarity)] go through an MLP to a
logit.

Training: BCE on observed positives (each user's later train interactions, each with the
history before it) against sampled negatives (random, and hard ones from the user's
nearest items in the fused space), Adam with weight decay and dropout, early stopping on
validation AUC, fixed seed, a progress bar. Calibration: one temperature fitted on the
validation logits (LBFGS on BCE; ECE over 15 equal-mass bins and Brier reported before and
after), then Platt scaling on retrieval's candidate lists (`calibrate_on_candidates`, run by
the build), whose base rate is far below the sampled validation's. The checkpoint carries
its config, both calibrations and the build's fingerprint.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm import tqdm

from rag_rec.build import Artifacts
from rag_rec.embed import profile_vector, user_node
from rag_rec.errors import StaleArtifact
from rag_rec.retrieve import CandidateGenerator
from rag_rec.settings import ScorerSettings


class AttentionScorer(nn.Module):
    N_SIDE = 2  # popularity, fused-space similarity

    def __init__(self, item_features: torch.Tensor, user_kg_dim: int, cfg: ScorerSettings):
        super().__init__()
        self.cfg = cfg
        # Row 0 is padding; content features are fixed, ids are learned.
        self.register_buffer("features", item_features)
        self.ids = nn.Embedding(len(item_features), cfg.id_dim, padding_idx=0)
        self.project = nn.Linear(item_features.shape[1] + cfg.id_dim, cfg.d)
        self.positions = nn.Embedding(cfg.max_history, cfg.d)
        self.user = nn.Linear(user_kg_dim, cfg.d)
        self.mlp = nn.Sequential(
            nn.Linear(4 * cfg.d + self.N_SIDE, 128), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(128, 1))

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        ids = self.ids(items)
        if self.training and self.cfg.id_dropout > 0:
            keep = torch.rand(ids.shape[:-1] + (1,), device=ids.device) >= self.cfg.id_dropout
            ids = ids * keep
        # project([content ⊕ id]) split in two: the content part is projected once per
        # catalogue item, not once per (sample, history position): ~10x less work.
        f = self.features.shape[1]
        w = self.project.weight
        content = self.features @ w[:, :f].T + self.project.bias
        return content[items] + ids @ w[:, f:].T

    def forward(self, cand: torch.Tensor, hist: torch.Tensor, user_kg: torch.Tensor,
                side: torch.Tensor) -> torch.Tensor:
        c = self.embed(cand)                                        # (B, d)
        mask = hist > 0                                             # (B, L)
        h = self.embed(hist) + self.positions.weight[None, :hist.shape[1]]
        scores = (h @ c.unsqueeze(-1)).squeeze(-1) / math.sqrt(self.cfg.d)
        scores = scores.masked_fill(~mask, -1e9)
        attn = torch.softmax(scores, dim=-1) * mask.any(-1, keepdim=True)
        a = (attn.unsqueeze(-1) * h).sum(1)
        x = torch.cat([c, a, c * a, self.user(user_kg), side], dim=-1)
        return self.mlp(x).squeeze(-1)


# --------------------------------------------------------------------------- features


class Featurizer:
    """Turns (history, candidates) into the scorer's tensors, from one build's artifacts."""

    def __init__(self, artifacts: Artifacts, cfg: ScorerSettings):
        self.a = artifacts
        self.cfg = cfg
        self.item_ids = list(artifacts.index.ids)
        self.row = {i: r + 1 for r, i in enumerate(self.item_ids)}  # 0 = padding
        dim = artifacts.index.dim
        # Ablations zero one half of the fused [text ⊕ KG] vectors (and the user's KG
        # vector with the KG half), everywhere the scorer reads them.
        text_dim = dim - artifacts.kg.dim
        self.mask = np.ones(dim, dtype=np.float32)
        self.mask[:text_dim] = float(cfg.use_text)
        self.mask[text_dim:] = float(cfg.use_kg)
        feats = np.zeros((len(self.item_ids) + 1, dim), dtype=np.float32)
        for item_id, r in self.row.items():
            feats[r] = artifacts.index.vector(item_id) * self.mask
        self.features = torch.from_numpy(feats)
        pop = np.array([artifacts.popularity.get(i, 0) for i in self.item_ids], dtype=np.float32)
        self.log_pop = np.log1p(pop) / max(1.0, float(np.log1p(pop).max()))

    def user_kg(self, user_id: str | None) -> np.ndarray:
        vec = self.a.kg.of(user_node(user_id)) if user_id and self.cfg.use_kg else None
        return vec if vec is not None else np.zeros(self.a.kg.dim, dtype=np.float32)

    def _known(self, history: list[tuple[str, float]]) -> list[tuple[str, float]]:
        return [(i, r) for i, r in history if i in self.row][-self.cfg.max_history:]

    def query(self, history: list[tuple[str, float]]) -> np.ndarray:
        """The user's vector in the fused space (as retrieval builds it)."""
        known = self._known(history)
        if not known:
            return np.zeros(self.features.shape[1], dtype=np.float32)
        return profile_vector(self.features[[self.row[i] for i, _ in known]].numpy(),
                              [r for _, r in known], self.a.embed.history_half_life)

    def batch(self, history: list[tuple[str, float]], user_id: str | None,
              candidates: list[str]) -> tuple[torch.Tensor, ...]:
        """Tensors for one user's history (oldest first) against `candidates`."""
        known = self._known(history)
        rows = [self.row[i] for i, _ in reversed(known)]  # newest first: position 0
        hist = torch.zeros(len(candidates), self.cfg.max_history, dtype=torch.long)
        if rows:
            hist[:, :len(rows)] = torch.tensor(rows)
        query = self.query(history)
        cand_rows = [self.row.get(i, 0) for i in candidates]
        cand_vecs = np.stack([self.a.index.vector(i) for i in candidates]) * self.mask
        sim = cand_vecs @ query
        pop = np.array([self.log_pop[r - 1] if r else 0.0 for r in cand_rows], dtype=np.float32)
        side = torch.from_numpy(np.stack([pop, sim], axis=1).astype(np.float32))
        user = torch.from_numpy(np.tile(self.user_kg(user_id), (len(candidates), 1)))
        return torch.tensor(cand_rows), hist, user, side


# --------------------------------------------------------------------------- calibration


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error over `bins` equal-mass bins."""
    order = np.argsort(probs)
    total = 0.0
    for part in np.array_split(order, bins):
        if len(part):
            total += len(part) * abs(probs[part].mean() - labels[part].mean())
    return float(total / len(probs))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((probs - labels) ** 2))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising BCE of sigmoid(logit / T) on validation data."""
    log_t = torch.zeros(1, requires_grad=True)
    x = torch.from_numpy(logits.astype(np.float32))
    y = torch.from_numpy(labels.astype(np.float32))
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(x / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Platt scaling (a, b): P(label) = sigmoid(a * logit + b), by logistic regression."""
    fit = LogisticRegression(C=1e6).fit(logits.reshape(-1, 1), labels)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def reliability_diagram(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path,
                        bins: int = 15) -> None:
    """Predicted vs observed frequency per equal-mass bin, on linear axes and on log axes
    (candidate lists have base rates near 0.004, invisible on the linear panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
    for ax, log in zip(axes, (False, True)):
        low = 1e-4 if log else 0.0
        ax.plot([low, 1], [low, 1], "k:", label="perfect")
        for name, (probs, labels) in curves.items():
            parts = np.array_split(np.argsort(probs, kind="stable"), bins)
            ax.plot([probs[p].mean() for p in parts], [labels[p].mean() for p in parts],
                    "o-", label=f"{name} (ECE {ece(probs, labels, bins):.3f})")
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel("predicted probability" + (" (log)" if log else ""))
        ax.set_ylabel("observed frequency" + (" (log)" if log else ""))
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- training


@dataclass
class Samples:
    cand: torch.Tensor
    hist: torch.Tensor
    user: torch.Tensor
    side: torch.Tensor
    label: torch.Tensor

    def __len__(self) -> int:
        return len(self.label)

    @classmethod
    def concat(cls, parts: list[Samples]) -> Samples:
        return cls(*(torch.cat([getattr(p, f) for p in parts])
                     for f in ("cand", "hist", "user", "side", "label")))


def _user_samples(feat: Featurizer, user_id: str, history: list[tuple[str, float]],
                  targets: list[tuple[int, str]], seen: set[str], cfg: ScorerSettings,
                  rng: np.random.Generator) -> Samples:
    """For each (cut, positive item): the history before `cut` against the positive and
    `cfg.negatives` negatives (hard ones from the user's nearest items, then random)."""
    hard = [i for i, _ in feat.a.index.search(feat.query(history), 100, exclude=[seen])[0]]
    pool = [i for i in feat.item_ids if i not in seen]
    n_hard = int(round(cfg.negatives * cfg.hard_share))
    parts = []
    for cut, positive in targets:
        negatives = list(rng.choice(hard, n_hard, replace=False)) if len(hard) >= n_hard else []
        negatives += list(rng.choice(pool, cfg.negatives - len(negatives), replace=False))
        cand, hist, user, side = feat.batch(history[:cut], user_id, [positive, *negatives])
        label = torch.zeros(len(cand))
        label[0] = 1.0
        parts.append(Samples(cand, hist, user, side, label))
    return Samples.concat(parts)


def make_samples(feat: Featurizer, cfg: ScorerSettings, *, seed: int,
                 users: set[str] | None = None) -> tuple[Samples, Samples]:
    """(train, valid) samples from the build's split: train positives are each user's last
    `positives_per_user` train interactions, the validation positive is their validation
    item (for a build without a split: each user's last interaction is held out)."""
    rng = np.random.default_rng(seed)
    split = feat.a.split
    inter = split.train if split is not None else feat.a.ds.interactions
    inter = inter.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    valid_item = (dict(zip(split.valid.user_id, split.valid.item_id)) if split is not None
                  and len(split.valid) else {})
    train_parts, valid_parts = [], []
    for user_id, rows in tqdm(inter.groupby("user_id", sort=True), desc="scorer samples",
                              unit="user"):
        if users is not None and user_id not in users:
            continue
        seq = list(zip(rows.item_id, rows.rating.astype(float)))
        if user_id not in valid_item:  # hold out the last interaction ourselves
            if len(seq) < 3:
                continue
            valid_item[user_id] = seq[-1][0]
            seq = seq[:-1]
        seen = {i for i, _ in seq} | {valid_item[user_id]}
        cuts = range(max(1, len(seq) - cfg.positives_per_user), len(seq))
        train_parts.append(_user_samples(feat, user_id, seq, [(t, seq[t][0]) for t in cuts],
                                         seen, cfg, rng))
        valid_parts.append(_user_samples(feat, user_id, seq, [(len(seq), valid_item[user_id])],
                                         seen, cfg, rng))
    return Samples.concat(train_parts), Samples.concat(valid_parts)


@torch.no_grad()
def predict(model: AttentionScorer, s: Samples, batch: int = 4096) -> np.ndarray:
    model.eval()
    out = [model(s.cand[i:i + batch], s.hist[i:i + batch], s.user[i:i + batch],
                 s.side[i:i + batch]) for i in range(0, len(s), batch)]
    return torch.cat(out).numpy()


@dataclass
class TrainReport:
    epochs: int
    seconds: float
    valid_auc: float
    temperature: float
    ece_before: float
    ece_after: float
    brier_before: float
    brier_after: float
    train_samples: int
    valid_samples: int


def train(feat: Featurizer, cfg: ScorerSettings, *, progress: bool = True,
          users: set[str] | None = None
          ) -> tuple[AttentionScorer, float, TrainReport, tuple[np.ndarray, np.ndarray]]:
    """Train with BCE and early stopping on validation AUC, then fit the temperature
    (on all users, or `users`). Returns (model, temperature, report, (validation logits,
    labels))."""
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    train_s, valid_s = make_samples(feat, cfg, seed=cfg.seed, users=users)
    model = AttentionScorer(feat.features, feat.a.kg.dim, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    best_auc, best_state, stale, epochs = -1.0, None, 0, 0
    gen = torch.Generator().manual_seed(cfg.seed)
    bar = tqdm(range(cfg.epochs), desc="train scorer", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(train_s), generator=gen)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            logits = model(train_s.cand[idx], train_s.hist[idx], train_s.user[idx],
                           train_s.side[idx])
            loss = loss_fn(logits, train_s.label[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        epochs = epoch + 1
        auc = roc_auc_score(valid_s.label.numpy(), predict(model, valid_s))
        bar.set_postfix(valid_auc=f"{auc:.4f}")
        if auc > best_auc + 1e-4:
            best_auc, stale = auc, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    model.load_state_dict(best_state)
    logits = predict(model, valid_s)
    labels = valid_s.label.numpy()
    temperature = fit_temperature(logits, labels)
    before, after = sigmoid(logits), sigmoid(logits / temperature)
    report = TrainReport(
        epochs=epochs, seconds=round(time.perf_counter() - start, 1),
        valid_auc=round(float(best_auc), 4), temperature=round(temperature, 4),
        ece_before=round(ece(before, labels), 4), ece_after=round(ece(after, labels), 4),
        brier_before=round(brier(before, labels), 4), brier_after=round(brier(after, labels), 4),
        train_samples=len(train_s), valid_samples=len(valid_s))
    return model, temperature, report, (logits, labels)


# --------------------------------------------------------------------------- serving


class Scorer:
    """A trained scorer for one build: calibrated probabilities for candidates."""

    def __init__(self, feat: Featurizer, model: AttentionScorer, temperature: float,
                 report: dict, platt: tuple[float, float] | None = None):
        self.feat = feat
        self.model = model.eval()
        self.temperature = temperature
        self.report = report
        self.platt = platt
        """(a, b): log-odds a * logit + b, fitted on the candidates retrieval returns (see
        `calibrate_on_candidates`); None until the build has fitted it."""

    @torch.no_grad()
    def logits(self, history: list[tuple[str, float]], user_id: str | None,
               candidates: list[str], *, on_candidates: bool = True) -> np.ndarray:
        """Calibrated log-odds per candidate: the temperature applied, then (when fitted
        and `on_candidates`) the Platt scaling to retrieval's candidate lists. Finite by
        construction: a NaN (e.g. from a corrupt vector) becomes the lowest score."""
        if not candidates:
            return np.zeros(0, dtype=np.float32)
        z = self.model(*self.feat.batch(history, user_id, candidates)).numpy() / self.temperature
        if on_candidates and self.platt is not None:
            z = self.platt[0] * z + self.platt[1]
        return np.nan_to_num(z, nan=-30.0, posinf=30.0, neginf=-30.0)

    def probabilities(self, history: list[tuple[str, float]], user_id: str | None,
                      candidates: list[str]) -> np.ndarray:
        """Calibrated P(like) per candidate, in [0, 1]."""
        return sigmoid(self.logits(history, user_id, candidates))

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), folder / "model.pt")
        (folder / "scorer.json").write_text(json.dumps({
            "config": self.model.cfg.model_dump(), "temperature": self.temperature,
            "platt": self.platt,
            "fingerprint": self.feat.a.folder.name, "items": self.feat.item_ids,
            "report": self.report}, indent=1))

    @classmethod
    def fit(cls, artifacts: Artifacts, cfg: ScorerSettings, *, progress: bool = True) -> Scorer:
        """Train, calibrate and save to `scorer_dir`, with a reliability diagram
        (before/after calibration, validation) beside the checkpoint."""
        feat = Featurizer(artifacts, cfg)
        model, temperature, report, (logits, labels) = train(feat, cfg, progress=progress)
        scorer = cls(feat, model, temperature, vars(report))
        folder = scorer_dir(artifacts, cfg)
        scorer.save(folder)
        reliability_diagram({"before calibration": (sigmoid(logits), labels),
                             "after calibration": (sigmoid(logits / temperature), labels)},
                            folder / "reliability.png")
        return scorer

    @classmethod
    def load(cls, folder: Path, artifacts: Artifacts,
             expected: ScorerSettings | None = None) -> Scorer:
        """The checkpoint in `folder`; `StaleArtifact` (naming the command that fixes it)
        when it is missing, corrupt, from another build, or trained with settings other
        than `expected`."""
        fix = f"rebuild with `rag-rec build{' --split ' + artifacts.split_name if artifacts.split else ''}`"
        try:
            meta = json.loads((folder / "scorer.json").read_text())
            state = torch.load(folder / "model.pt", weights_only=True)
        except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            raise StaleArtifact(f"scorer checkpoint in {folder} is missing or corrupt "
                                f"({exc}); {fix}") from None
        if meta["fingerprint"] != artifacts.folder.name or meta["items"] != artifacts.index.ids[
                :len(meta["items"])]:
            raise StaleArtifact(f"scorer checkpoint in {folder} does not match the current "
                                f"data and embeddings; {fix}")
        cfg = ScorerSettings(**meta["config"])
        if expected is not None and cfg != expected:
            raise StaleArtifact(f"scorer checkpoint in {folder} was trained with other "
                                f"scorer settings; {fix}")
        feat = Featurizer(artifacts, cfg)
        model = AttentionScorer(feat.features, artifacts.kg.dim, cfg)
        # Items added since training join with their content and a zero id embedding.
        ids = torch.zeros(len(feat.features), cfg.id_dim)
        ids[:state["ids.weight"].shape[0]] = state["ids.weight"]
        state.update({"ids.weight": ids, "features": feat.features})
        model.load_state_dict(state)
        platt = tuple(meta["platt"]) if meta.get("platt") else None
        return cls(feat, model, meta["temperature"], meta["report"], platt)

    def calibrate_on_candidates(self, retriever: CandidateGenerator,
                                held_out: dict[str, str], *, progress: bool = True) -> dict:
        """Fit the Platt scaling on what serving ranks: each user's retrieval candidates,
        labelled by whether they are the user's held-out item (which the graph must not
        hold). The temperature alone is fitted on sampled negatives (1 positive : 4), whose
        base rate is far above a candidate list's; this maps the scores onto the latter."""
        logits, labels = [], []
        for user_id, item_id in tqdm(held_out.items(), desc="calibrate on candidates",
                                     unit="user", disable=not progress):
            r = retriever.for_user(user_id)
            ids = [c.item.id for c in r.candidates]
            logits.append(self.logits(r.history, user_id, ids, on_candidates=False))
            labels.append(np.array([i == item_id for i in ids], dtype=np.float32))
        x, y = np.concatenate(logits), np.concatenate(labels)
        self.platt = fit_platt(x, y)
        after = sigmoid(self.platt[0] * x + self.platt[1])
        figures = {"candidate_pairs": len(y), "candidate_base_rate": round(float(y.mean()), 5),
                   "candidate_ece_temperature": round(ece(sigmoid(x), y), 4),
                   "candidate_ece_platt": round(ece(after, y), 4),
                   "platt": [round(v, 4) for v in self.platt]}
        self.report.update(figures)
        return figures


def scorer_dir(artifacts: Artifacts, cfg: ScorerSettings) -> Path:
    """Where a build keeps the scorer trained with `cfg`: one folder per settings, so
    ablations, the test suite's small scorer and the served one live side by side."""
    return artifacts.folder / f"scorer-{cfg.fingerprint()}"


def load_or_fit(artifacts: Artifacts, cfg: ScorerSettings, *, progress: bool = True) -> Scorer:
    """The build's scorer for `cfg`, trained first if there is none (or a stale one)."""
    try:
        return Scorer.load(scorer_dir(artifacts, cfg), artifacts, cfg)
    except StaleArtifact:
        return Scorer.fit(artifacts, cfg, progress=progress)
