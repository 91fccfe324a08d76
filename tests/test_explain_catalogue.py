"""eval/explain_catalogue.py's own checks: the wrong item noun and the cited path lookup."""

from __future__ import annotations

from types import SimpleNamespace

from eval.explain_catalogue import path_exists, wrong_noun


def test_wrong_noun_reads_the_dataset_noun() -> None:
    assert wrong_noun("Angela's Ashes and Night are both non-fiction films.", "book")
    assert not wrong_noun("A non-fiction book, like Night, which you rated 5 stars.", "book")
    assert wrong_noun("Based on the book by Stephen King.", "movie")
    assert not wrong_noun("A product for the kitchen.", "product")  # no rule: never flagged


def test_a_cited_path_needs_both_facts_and_the_history_item() -> None:
    triples = {("1", "written_by", "e:a"), ("2", "written_by", "e:a")}
    fact = SimpleNamespace(candidate_id="1", relation="written_by", entity_id="e:a",
                           history_item_id="2", history_relation="written_by")
    assert path_exists(triples, {"2"}, fact)
    assert not path_exists(triples, {"3"}, fact)  # not in the user's history
    assert not path_exists(triples - {("2", "written_by", "e:a")}, {"2"}, fact)
