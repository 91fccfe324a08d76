"""SASRec (Kang & McAuley 2018): a next-item transformer, full-softmax cross-entropy.

In: a `Catalogue` (item order; its item vectors when `content` is on), `SASRecSettings`
and a seed, train interactions and tuning items (early stopping on their NDCG@10).
Out: scores (queries x catalogue), the members' mean next-item log-probability, `-inf`
for an unknown history or an item added after the fit; `sasrec.pt` (every member's
weights) and `sasrec.json` (catalogue size, best epoch) in a sources folder.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from rag_rec.settings import RetrievalSettings, SASRecSettings, SourceSettings
from rag_rec.sources.base import (BaseSource, CandidateSource, Catalogue, Query,
                                  SourceUnavailable, histories_of, tuning_ndcg)


class _SASRecNet(nn.Module):
    """Causal self-attention over the last `max_len` items (Kang & McAuley 2018), item
    table tied between input and output; optional content vectors added to the ids."""

    def __init__(self, n_items: int, settings: SASRecSettings, content: torch.Tensor | None):
        super().__init__()
        d = settings.d
        self.dim = d
        self.items = nn.Embedding(n_items + 1, d, padding_idx=0)  # row 0 = padding
        self.content = None
        if content is not None:
            self.register_buffer("features", torch.cat([torch.zeros(1, content.shape[1]),
                                                        content]))
            self.content = nn.Linear(content.shape[1], d, bias=False)
        self.positions = nn.Embedding(settings.max_len, d)
        layer = nn.TransformerEncoderLayer(d, settings.heads, dim_feedforward=d,
                                           dropout=settings.dropout, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, settings.blocks,
                                            enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(settings.dropout)
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
        x = table[seq] * math.sqrt(self.dim) + self.positions.weight[-length:]
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


class SASRec(BaseSource):
    """Next-item transformer trained with full-softmax cross-entropy over the catalogue,
    early-stopped on NDCG@10 of the tuning items; a refit warm-starts from the tuned
    model for a share of its best epoch count."""

    name = "sasrec"

    def __init__(self, catalogue: Catalogue, settings: SASRecSettings | None = None,
                 seed: int = SourceSettings.model_fields["seed"].default) -> None:
        super().__init__(catalogue)
        self.settings = settings or SASRecSettings()
        self.seed = seed

    @classmethod
    def from_settings(cls, catalogue: Catalogue, settings: SourceSettings,
                      retrieval: RetrievalSettings) -> SASRec:
        return cls(catalogue, settings.sasrec, settings.seed)

    def _net(self, n_items: int) -> _SASRecNet:
        content = None
        if self.settings.content:
            index = self.catalogue.require_index("sasrec with content inputs")
            content = torch.from_numpy(np.stack(
                [index.vector(i) for i in self.catalogue.item_ids[:n_items]]))
        return _SASRecNet(n_items, self.settings, content)

    def _sequences(self, histories: dict[str, list[tuple[str, float]]]) -> list[list[int]]:
        return [[self.column[i] + 1 for i, _ in h if i in self.column]
                for h in histories.values()]

    def _windows(self, seqs: list[list[int]]) -> torch.Tensor:
        """Each sequence cut from its end into windows of max_len + 1 items (inputs and
        next-item targets), left-padded: every interaction is a target once."""
        span = self.settings.max_len + 1
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
        `crop_keep` items, then `crop` items from a random later point. The
        model learns to predict from a short history with a gap before its latest items,
        which is what a cold user's history looks like, and gets more late-sequence
        targets (leave-last-out, plain ids, seeds 42-44: 0.1115 with crops against
        0.0995 for SASRec-CE-200, eval/offline.py)."""
        keep, tail = self.settings.crop_keep, self.settings.crop
        span = self.settings.max_len + 1
        rows = []
        for seq in seqs:
            if not self._croppable(seq):
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
        for k in range(self.settings.members):
            if isinstance(warm, SASRec):
                start_from, epochs = warm.nets[k], max(1, round(
                    warm.best_epoch * self.settings.refit_share))
            else:
                start_from = None
                epochs = self._epoch_cap(seqs, windows) if k == 0 else self.best_epoch
            reports.append(self._fit_member(k, histories, seqs, windows, start_from, epochs,
                                            tune if k == 0 and warm is None else None,
                                            progress))
            if k == 0:
                self.best_epoch = reports[0]["best_epoch"]
        return {**reports[0], "members": reports[1:],
                "seconds": round(time.perf_counter() - start, 1)}

    def _croppable(self, seq: list[int]) -> bool:
        """Long enough for a crop: its first items, a gap and a later stretch."""
        return len(seq) >= self.settings.crop_keep + self.settings.crop + 2

    def _epoch_cap(self, seqs: list[list[int]], windows: torch.Tensor) -> int:
        """`epochs`, or fewer where an epoch's steps would pass `max_steps` (a large
        catalogue's epochs are many times a small one's)."""
        crops = sum(map(self._croppable, seqs)) if self.settings.crop else 0
        steps = math.ceil((len(windows) + crops) / self.settings.batch)
        return max(1, min(self.settings.epochs, self.settings.max_steps // steps))

    def _fit_member(self, k: int, histories: dict, seqs: list[list[int]],
                    windows: torch.Tensor, start_from: _SASRecNet | None, epochs: int,
                    tune: pd.DataFrame | None, progress: bool) -> dict:
        """Train member `k` (seeded by `member_seed`) and append it to `self.nets`; with
        `tune`, keep its best state on the tuning items."""
        seed = member_seed(self.seed, k)
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
        opt = torch.optim.Adam(net.parameters(), lr=self.settings.lr)
        gen = torch.Generator().manual_seed(seed)
        best, best_state, stale, best_epoch = -1.0, None, 0, epochs
        curve = []
        bar = tqdm(range(1, epochs + 1), desc=f"fit sasrec {k + 1}/{self.settings.members}",
                   unit="epoch", disable=not progress, leave=False)
        for epoch in bar:
            net.train()
            rows = windows
            if self.settings.crop:
                rows = torch.cat([windows, self._crops(seqs, gen)])
            for idx in torch.randperm(len(rows), generator=gen).split(self.settings.batch):
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
            if tune is None or epoch % self.settings.eval_every:
                continue
            score = tuning_ndcg(self, histories, tune, self.column)
            curve.append(round(score, 4))
            bar.set_postfix(tune_ndcg=f"{score:.4f}")
            if score > best + 1e-4:
                best, stale, best_epoch = score, 0, epoch
                best_state = {n: v.clone() for n, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= self.settings.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.cpu().eval()
        return {"epochs_run": epoch, "epoch_cap": epochs, "best_epoch": best_epoch,
                "tuning_curve": curve,
                "windows": len(windows), "device": device.type}

    @torch.no_grad()
    def scores(self, queries: Sequence[Query]) -> np.ndarray:
        """The members' mean log-probability of each item coming next (one member: its
        logits, which rank the same)."""
        n = self.nets[0].items.num_embeddings - 1
        span = self.settings.max_len
        seqs = []
        for q in queries:
            seq = [self.column[i] + 1 for i, _ in q.history
                   if i in self.column and self.column[i] < n][-span:]
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
        if len(states) != self.settings.members:
            raise ValueError(f"{len(states)} SASRec members saved, "
                             f"{self.settings.members} configured")
        self.nets = []
        for state in states:
            net = self._net(meta["n_items"])
            net.load_state_dict(state)
            self.nets.append(net.eval())
        self.best_epoch = meta["best_epoch"]


# --------------------------------------------------------------------------- content
