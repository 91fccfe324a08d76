"""The README's results table is generated from eval/results/offline_eval.json
(`python -m eval.report`): the committed block must be what the figures give now, so new
figures without a regenerated README fail here. No server, no build."""

from __future__ import annotations

import json

import pytest

from eval import report

FIGURES = {
    "measured_at": "2030-01-02T03:04:05",
    "kfold": {"folds": ["kfold0", "kfold1"],
              "systems": {"rag_rec": {"ndcg@10_mean": 0.5}, "EASE": {"ndcg@10_mean": 0.4}},
              "best_baseline": "EASE",
              "rag_rec_vs_best_pooled": {"diff": 0.1, "ci95": [0.05, 0.15], "ratio": 1.25}},
    "splits": {
        "kfold0": {"systems": {}},
        "loo-cold": {"systems": {"rag_rec": {"ndcg@10": 0.2, "seeds": 3, "cold_ndcg@10": 0.06},
                                 "SASRec": {"ndcg@10": 0.1, "cold_ndcg@10": 0.05},
                                 "Markov": {"ndcg@10": 0.09, "cold_ndcg@10": 0.03}},
                     "best_baseline": "SASRec",
                     "rag_rec_vs_best": {"diff": 0.1, "ci95": [-0.01, 0.2], "ratio": 2.0},
                     "cold_users": {"users": 7, "best_baseline": "Markov",
                                    "rag_rec_vs_best": {"diff": 0.03, "ci95": [0.01, 0.05],
                                                        "ratio": 2.0}}},
    },
}


def test_readme_block_matches_the_committed_figures():
    figures = json.loads(report.FIGURES.read_text())
    readme = report.README.read_text()
    assert readme == report.with_readme_table(readme, figures), (
        "README.md's results table is stale: run python -m eval.report")


def test_table_rows_come_from_the_figures():
    table = report.readme_table(FIGURES)
    assert "measured 2030-01-02" in table
    assert "| k-fold, 2 folds (mean; interval over their users pooled) | **0.5000** | EASE " \
           "0.4000 | +0.1000 (+0.0500 … +0.1500) | 1.250 |" in table
    assert ", 3 seeds: all users | **0.2000** | SASRec 0.1000 | +0.1000 (-0.0100 … +0.2000) " \
           "| 2.000 |" in table
    # The cold row compares cold users with the cold users' own best baseline.
    assert "| loo-cold: its 7 cold users only | **0.0600** | Markov 0.0300 | +0.0300" in table
    assert "kfold0 |" not in table  # folds are summarised in the k-fold row only


def test_other_datasets_are_indexed_beside_the_movielens_splits(tmp_path):
    """offline_eval.json's `other_datasets` comes from each dataset's own figures file,
    and the README's table gives each of its splits a row naming the dataset."""
    books = {"measured_at": "2030-02-03T00:00:00", "dataset": "books",
             "refused": {"loo": "no timestamps"},
             "splits": {"kfold0": {"systems": {"rag_rec": {"users": 1200.0, "ndcg@10": 0.37},
                                               "iALS": {"users": 1200.0, "ndcg@10": 0.34}},
                                   "best_baseline": "iALS",
                                   "rag_rec_vs_best": {"diff": 0.03, "ci95": [0.02, 0.04],
                                                       "ratio": 1.09}}}}
    (tmp_path / "offline_eval-books.json").write_text(json.dumps(books))
    (tmp_path / "offline_eval.json").write_text(json.dumps(FIGURES))  # not indexed itself

    index = report.other_datasets(tmp_path)

    assert list(index) == ["books"]
    assert index["books"]["refused"] == ["loo"]
    assert index["books"]["splits"]["kfold0"]["measured_at"] == "2030-02-03"
    table = report.readme_table(FIGURES | {"other_datasets": index})
    assert ("| books: k-fold, fold 0 only (1,200 users) | **0.3700** | iALS 0.3400 | "
            "+0.0300 (+0.0200 … +0.0400) | 1.090 |") in table
    text = report.report_text({"splits": {}, "other_datasets": index})
    assert "- **books** ([report](offline_eval-books.md)" in text
    assert "refused: loo" in text


def test_only_the_marked_block_is_replaced():
    readme = f"intro\n{report.START}\nold table\n{report.END}\nrest\n"
    new = report.with_readme_table(readme, FIGURES)
    assert new.startswith(f"intro\n{report.START}\nNDCG@10") and new.endswith(
        f"{report.END}\nrest\n")
    assert "old table" not in new
    assert report.with_readme_table(new, FIGURES) == new
    with pytest.raises(ValueError, match="markers"):
        report.with_readme_table("no markers here\n", FIGURES)


def test_check_fails_on_a_stale_readme(tmp_path, monkeypatch):
    figures = tmp_path / "offline_eval.json"
    figures.write_text(json.dumps(FIGURES))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{report.START}\nstale\n{report.END}\n")
    monkeypatch.setattr(report, "ROOT", tmp_path)
    monkeypatch.setattr(report, "FIGURES", figures)
    monkeypatch.setattr(report, "README", readme)
    monkeypatch.setattr(report, "REPORTS", tmp_path / "reports")
    monkeypatch.setattr(report, "report_text", lambda figures: "report\n")
    assert report.main(["--check"]) == 1
    assert report.main([]) == 0
    assert report.main(["--check"]) == 0
    assert "| **0.5000** |" in readme.read_text()
