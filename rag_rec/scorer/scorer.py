"""The served scorer: a trained model, its calibration and blend, saved and checked.

In: a `Featurizer`, a trained `AttentionScorer` with its calibration and `Blend`, and at
query time a history with its retrieval. Out: calibrated log-odds per candidate
(`logits`), attention weights over the history (`attention`), and a checkpoint folder
(model.pt, scorer.json with the feature schema, blend.json, reliability.png) that `load`
refuses with `StaleArtifact` when it does not belong to the current build, settings,
sources or feature schema.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from rag_rec.artifacts import Artifacts
from rag_rec.errors import StaleArtifact
from rag_rec.scorer.blend import SHORT_RULE, Blend
from rag_rec.scorer.calibration import reliability_diagram, sigmoid
from rag_rec.scorer.features import FeatureSchema, Featurizer
from rag_rec.scorer.model import AttentionScorer
from rag_rec.scorer.training import Lists, train
from rag_rec.settings import ScorerSettings
from rag_rec.steps import check_step

if TYPE_CHECKING:  # retrieve.py imports the feature schema from this package
    from rag_rec.retrieve import Retrieval


class Scorer:
    """A trained, calibrated scorer for one build's sources."""

    def __init__(self, feat: Featurizer, model: AttentionScorer, platt: tuple[float, float],
                 sources: list[str], union_weights: dict[str, float], report: dict,
                 blend: Blend | None = None):
        if tuple(sources) != feat.schema.sources:
            raise ValueError(f"the model reads the features of {sources}, the featurizer "
                             f"gives those of {list(feat.schema.sources)}")
        self.feat = feat
        self.model = model.eval()
        self.platt = platt
        """(scale, shift): calibrated log-odds = scale * raw logit + shift (fitted on
        held-out lists), until the blend, which recalibrates, is there."""
        self.sources = sources
        """The source names whose features the model reads, in order (`schema`'s)."""
        self.union_weights = union_weights
        """The fusion weights of the union it was trained on (serving uses the same)."""
        self.report = report
        self.blend = blend
        """Chosen after training, on the served sources' side (`Blend`); serving needs it."""

    @property
    def schema(self) -> FeatureSchema:
        """The side-feature columns the model reads, saved with the checkpoint."""
        return self.feat.schema

    @torch.no_grad()
    def logits(self, history: list[tuple[str, float]], user_id: str | None,
               retrieval: Retrieval) -> np.ndarray:
        """Calibrated log-odds per candidate of `retrieval`. Finite by construction: a NaN
        (e.g. from a corrupt vector) becomes the lowest score."""
        if not retrieval.items:
            return np.zeros(0, dtype=np.float32)
        cand, hist, user_kg, side = self.feat.batch(history, user_id, retrieval)
        raw = self.model(cand, hist, user_kg, side).numpy()
        if self.blend is not None:
            calibrated = self.blend.apply(raw, retrieval.features, self.sources,
                                          self.feat.trained[cand.numpy()], len(history))
        else:
            scale, shift = self.platt
            calibrated = scale * raw + shift
        return np.nan_to_num(calibrated, nan=-30.0, posinf=30.0, neginf=-30.0)

    @torch.no_grad()
    def attention(self, history: list[tuple[str, float]], items: list[str]
                  ) -> dict[str, dict[str, float]]:
        """Per item: history item id -> the attention weight its score gave that item."""
        rows = self.feat.history_rows(history)
        if not rows or not items:
            return {i: {} for i in items}
        by_row = {self.feat.row[i]: i for i, _ in history if i in self.feat.row}
        hist = torch.zeros(len(items), self.feat.cfg.max_history, dtype=torch.long)
        hist[:, :len(rows)] = torch.tensor(rows)
        cand = torch.tensor([self.feat.row.get(i, 0) for i in items])
        weights = self.model.attention(cand, hist)[2][:, :len(rows)].numpy()
        return {item: {by_row[row]: float(weight) for row, weight in zip(rows, item_weights)}
                for item, item_weights in zip(items, weights)}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), folder / "model.pt")
        (folder / "scorer.json").write_text(json.dumps({
            "config": self.model.cfg.model_dump(), "platt": list(self.platt),
            "sources": self.sources, "union_weights": self.union_weights,
            "schema": list(self.schema.names), "items": self.feat.item_ids,
            "report": self.report}, indent=1))
        # A retrained model makes the former blend meaningless: it goes with it.
        blend = folder / "blend.json"
        if self.blend is None:
            blend.unlink(missing_ok=True)
        else:
            blend.write_text(json.dumps(asdict(self.blend), indent=1))

    @classmethod
    def fit(cls, feat: Featurizer, lists: Lists, sources: list[str],
            union_weights: dict[str, float], folder: Path, *, union: dict | None = None,
            progress: bool = True) -> Scorer:
        """Train, calibrate and save to `folder`, with a reliability diagram of the
        held-out lists (raw vs calibrated) beside the checkpoint. `union`: how the union's
        weights were chosen (`retrieve.union_weights`), kept in the report."""
        model, report, (logits, labels) = train(feat, lists, sources, feat.cfg,
                                                progress=progress)
        scorer = cls(feat, model, report.platt, sources, union_weights,
                     vars(report) | ({"union": union} if union else {}))
        scorer.save(folder)
        scale, shift = report.platt
        reliability_diagram({"raw": (sigmoid(logits), labels),
                             "calibrated": (sigmoid(scale * logits + shift), labels)},
                            folder / "reliability.png")
        return scorer

    @classmethod
    def load(cls, folder: Path, artifacts: Artifacts, cfg: ScorerSettings,
             sources: list[str]) -> Scorer:
        """The checkpoint in `folder`; `StaleArtifact` (naming the command that fixes it)
        when it is missing, corrupt, recorded under another key than this build's scorer
        step (other data, settings or sources), or trained on other feature columns than
        this version's (`FeatureSchema`)."""
        fix = f"rebuild with `{artifacts.rebuild}`"
        check_step(folder, artifacts.key("scorer"), artifacts.rebuild)
        try:
            meta = json.loads((folder / "scorer.json").read_text())
            state = torch.load(folder / "model.pt", weights_only=True)
        except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            raise StaleArtifact(f"scorer checkpoint in {folder} is missing or corrupt "
                                f"({exc}); {fix}") from None
        if meta["items"] != artifacts.index.ids[:len(meta["items"])]:
            raise StaleArtifact(f"scorer checkpoint in {folder} does not match the index's "
                                f"items; {fix}")
        # A code change to the features (retrieve.py, the schema) changes no setting:
        # such a checkpoint would read its columns as other ones, or fail at its first
        # query.
        if "schema" not in meta:
            raise StaleArtifact(f"scorer checkpoint in {folder} was saved before feature "
                                f"schemas, so which column is which is unknown; {fix}")
        feat = Featurizer(artifacts, cfg, sources)
        difference = feat.schema.difference(meta["schema"])
        if difference:
            raise StaleArtifact(f"scorer checkpoint in {folder} was trained on other feature "
                                f"columns than this version gives ({difference}); {fix}")
        model = AttentionScorer(feat.features, artifacts.kg.dim, len(feat.schema), cfg)
        # Items added since training join with their content and a zero id embedding.
        ids = torch.zeros(len(feat.features), cfg.id_dim)
        ids[:state["ids.weight"].shape[0]] = state["ids.weight"]
        state.update({"ids.weight": ids, "features": feat.features})
        model.load_state_dict(state)
        try:
            saved = json.loads((folder / "blend.json").read_text())
            # One fit before the simulated short lists (a `short_weight`) or by another
            # rule for them: refit it.
            blend = Blend(**saved) if saved.get("short_rule") == SHORT_RULE else None
        except FileNotFoundError:
            blend = None  # the build's next step fits it (`load_ranker` insists on it)
        except (OSError, ValueError, TypeError) as exc:
            raise StaleArtifact(f"the blend in {folder} is corrupt ({exc}); {fix}") from None
        chosen_on = artifacts.validation_kind
        if blend is not None and (blend.short_history != cfg.blend_short_history
                                  or blend.chosen_on != chosen_on):
            # Chosen with another threshold or on other items: the build refits the blend
            # only.
            blend = None
        unknown = ({blend.source, *(blend.short_weights or {})} - set(meta["sources"])
                   if blend is not None else set())
        if unknown:
            raise StaleArtifact(f"the blend in {folder} reads a source the scorer does not "
                                f"({', '.join(sorted(unknown))}); {fix}")
        return cls(feat, model, tuple(meta["platt"]), meta["sources"], meta["union_weights"],
                   meta["report"], blend)
