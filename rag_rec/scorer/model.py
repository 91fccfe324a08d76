"""The scorer's model: `AttentionScorer`, target attention over a user's history.

In: candidate feature rows (B,), history feature rows (B, max_history) newest first (0:
padding), the user's KG vector (B, kg_dim) and the side features (B, len(schema)), all
tensors built by `features.Featurizer`. Out: one raw logit per candidate (`forward`), or
the attention weights over the history (`attention`, which explanations read).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rag_rec.settings import ScorerSettings


class AttentionScorer(nn.Module):
    """`n_side`: the width of the side features, `len(FeatureSchema)`."""

    def __init__(self, item_features: torch.Tensor, user_kg_dim: int, n_side: int,
                 cfg: ScorerSettings):
        super().__init__()
        self.cfg = cfg
        # Row 0 is padding; content features are fixed, ids are learned.
        self.register_buffer("features", item_features)
        self.ids = nn.Embedding(len(item_features), cfg.id_dim, padding_idx=0)
        self.project = nn.Linear(item_features.shape[1] + cfg.id_dim, cfg.d)
        self.positions = nn.Embedding(cfg.max_history, cfg.d)
        self.user = nn.Linear(user_kg_dim, cfg.d)
        self.mlp = nn.Sequential(
            nn.Linear(4 * cfg.d + n_side, 128), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(128, 1))
        # The sources' signals also enter linearly: the scorer starts from a blend of
        # them and the MLP learns the interactions on top.
        self.skip = nn.Linear(n_side, 1, bias=False)

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        ids = self.ids(items)
        if self.training and self.cfg.id_dropout > 0:
            keep = torch.rand(ids.shape[:-1] + (1,), device=ids.device) >= self.cfg.id_dropout
            ids = ids * keep
        # project([content ⊕ id]) split in two: the content part is projected once per
        # catalogue item, not once per (sample, history position): ~10x less work.
        content_dim = self.features.shape[1]
        weight = self.project.weight
        content = self.features @ weight[:, :content_dim].T + self.project.bias
        return content[items] + ids @ weight[:, content_dim:].T

    def attention(self, cand: torch.Tensor, hist: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(candidate vectors, history vectors, attention weights (B, L)): which history
        items each candidate's score looked at (explanations read the weights)."""
        candidate = self.embed(cand)                                # (B, d)
        mask = hist > 0                                             # (B, L)
        history = self.embed(hist) + self.positions.weight[None, :hist.shape[1]]
        scores = (history @ candidate.unsqueeze(-1)).squeeze(-1) / math.sqrt(self.cfg.d)
        scores = scores.masked_fill(~mask, -1e9)
        return candidate, history, torch.softmax(scores, dim=-1) * mask.any(-1, keepdim=True)

    def forward(self, cand: torch.Tensor, hist: torch.Tensor, user_kg: torch.Tensor,
                side: torch.Tensor) -> torch.Tensor:
        candidate, history, weights = self.attention(cand, hist)
        attended = (weights.unsqueeze(-1) * history).sum(1)
        joint = torch.cat([candidate, attended, candidate * attended, self.user(user_kg), side],
                          dim=-1)
        return self.mlp(joint).squeeze(-1) + self.skip(side).squeeze(-1)
