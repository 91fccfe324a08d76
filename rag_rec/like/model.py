"""The P(like) head's network: `LikeNet`, biases + feature MLP + factorization.

In: user rows and candidate item rows (B,), their standardised features
(B, len(FEATURES)) and each pair's history vector (B, dim), the user's history summed
through `history_term` over sqrt(its length), or None for the bias-only model.
Out: one raw logit per pair. Row 0 of every table is "unknown" and stays zero.
"""

from __future__ import annotations

import torch
from torch import nn

from rag_rec.settings import LikeSettings


class LikeNet(nn.Module):
    """logit = b0 + b_user + b_item + MLP(features) + q_item · (p_user + z), where
    z = |H|^-1/2 Σ_j (y_j + (r_j - μ) x_j) over the history H (see the package docstring):
    q is `item_factors`, p `user_factors`, y `implicit_item_factors` (that the user
    rated j at all, as in SVD++) and x `rating_item_factors` (how far above or below the
    mean they rated it, as in asymmetric SVD). `terms="bias"` keeps the biases only."""

    def __init__(self, n_users: int, n_items: int, n_features: int, cfg: LikeSettings):
        super().__init__()
        self.full = cfg.terms == "full"
        self.b0 = nn.Parameter(torch.zeros(()))
        self.b_user = nn.Embedding(n_users + 1, 1, padding_idx=0)
        self.b_item = nn.Embedding(n_items + 1, 1, padding_idx=0)
        for table in (self.b_user, self.b_item):
            nn.init.zeros_(table.weight)
        if self.full:
            self.mlp = nn.Sequential(nn.Linear(n_features, 32), nn.ReLU(), nn.Linear(32, 1))
            self.item_factors = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
            self.user_factors = nn.Embedding(n_users + 1, cfg.dim, padding_idx=0)
            self.implicit_item_factors = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
            self.rating_item_factors = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)
            for table in (self.item_factors, self.user_factors, self.implicit_item_factors,
                          self.rating_item_factors):
                nn.init.normal_(table.weight, std=0.01)
                with torch.no_grad():
                    table.weight[0] = 0

    def history_term(self, items: torch.Tensor, centred: torch.Tensor) -> torch.Tensor:
        """y_j + c_j x_j of each rating in a flat history (its item rows, centred
        ratings c_j), to be summed into z."""
        return (self.implicit_item_factors(items)
                + centred[:, None] * self.rating_item_factors(items))

    def forward(self, user: torch.Tensor, item: torch.Tensor, feats: torch.Tensor,
                z: torch.Tensor | None) -> torch.Tensor:
        out = self.b0 + self.b_user(user)[:, 0] + self.b_item(item)[:, 0]
        if self.full:
            out = out + self.mlp(feats)[:, 0] + (
                self.item_factors(item) * (self.user_factors(user) + z)).sum(-1)
        return out
