"""The entity-link check (rag_rec/data/links.py): the known wrong joins are dropped with
their facts and abstract, the right ones kept through MovieLens' spellings (articles
last, number words, alternative titles), and the count reaches `Dataset.stats()`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from rag_rec.data import load_dataset
from rag_rec.data.links import check_links, fold, score_link
from rag_rec.settings import DataSettings

TINY = Path(__file__).parent / "data" / "tiny"
MIN = DataSettings().link_min_score
R = "http://dbpedia.org/resource/"


@pytest.mark.parametrize("title,year,label,abstract", [
    ("Ghost", 1990, "Ghost_Dad", "Ghost Dad is a 1990 American fantasy comedy film."),
    ("Shadow, The", 1994, "The_Shadow_of_Hate",
     "The Shadow of Hate is a 1995 American short documentary film."),
    ("Dead Man", 1995, "Dead_Man_Walking_(film)", "Dead Man Walking is a 1995 American film."),
    ("Quest, The", 1996, "The_Conquest_(1996_film)",
     "Honfoglalás (AKA: The Conquest) is a 1996 film."),
    ("Toy Story", 1975, "Toy_Story", "Toy Story is a 1995 American computer-animated film."),
])
def test_known_wrong_links_score_under_the_threshold(title, year, label, abstract) -> None:
    assert score_link("1", title, year, R + label, abstract).score < MIN


@pytest.mark.parametrize("title,year,label,abstract", [
    ("Twelve Monkeys", 1995, "12_Monkeys", "12 Monkeys is a 1995 American film."),
    ("Postino, Il", 1994, "Il_Postino:_The_Postman", "Il Postino: The Postman is a 1994 film."),
    ("Usual Suspects, The", 1995, "The_Usual_Suspects", "The Usual Suspects is a 1995 film."),
    ("C'est arrivé près de chez vous", 1992, "Man_Bites_Dog_(film)",
     "Man Bites Dog (French: C'est arrivé près de chez vous, It Happened in Your "
     "Neighborhood) is a 1992 Belgian black comedy."),
    ("Sunset Blvd.", 1950, "Sunset_Boulevard_(film)",
     "Sunset Boulevard (stylized onscreen as SUNSET BLVD.) is a 1950 American film noir."),
    ("Jungle2Jungle", 1997, "Jungle_2_Jungle", "Jungle 2 Jungle is a 1997 comedy film."),
    ("Richard III", 1995, "Richard_III_(1995_film)", None),
])
def test_right_links_keep_a_full_score(title, year, label, abstract) -> None:
    assert score_link("1", title, year, R + label, abstract).score >= MIN


def test_the_year_adjusts_the_score() -> None:
    def score(year: int | None) -> float:
        return score_link("1", "Ghost", year, R + "Ghost_Dad", "Ghost Dad is a 1990 film.").score
    assert score(1990) - score(None) == pytest.approx(10)
    assert score(1991) - score(None) == pytest.approx(5)
    assert score(1970) - score(None) == pytest.approx(-25)


def test_fold_reads_titles_as_movielens_writes_them() -> None:
    assert fold("The Usual Suspects") == fold("Usual Suspects") == "usual suspects"
    assert fold("Angels & Insects") == "angels and insects"
    assert fold("Twelve Monkeys") == "12 monkeys"
    assert fold("Léon") == "leon"


def _kg(tmp_path: Path) -> tuple[pd.DataFrame, dict, list]:
    (tmp_path / "map.csv").write_text(
        f"item_id::string,URI::string\n1,{R}Ghost_Dad\n2,{R}Toy_Story\n3,\n")
    items = pd.DataFrame({"title": ["Ghost", "Toy Story", "Heat"], "year": [1990, 1995, 1995]},
                         index=pd.Index(["1", "2", "3"], name="item_id"))
    abstracts = {"1": "Ghost Dad is a 1990 film.", "2": "Toy Story is a 1995 film.",
                 "3": "Heat is a 1995 film."}
    triples = [("1", "starring", R + "Bill_Cosby"), ("2", "starring", R + "Tom_Hanks"),
               ("3", "starring", R + "Al_Pacino")]
    return items, abstracts, triples


def test_check_links_drops_a_doubtful_link_with_its_facts_and_abstract(tmp_path) -> None:
    items, abstracts, triples = _kg(tmp_path)
    kept_abstracts, kept_triples, dropped = check_links(items, abstracts, triples,
                                                        kg_dir=tmp_path, min_score=MIN)
    assert [d.item_id for d in dropped] == ["1"] and dropped[0].label == "Ghost Dad"
    assert set(kept_abstracts) == {"2", "3"}  # 3 has no resource in the map: nothing to judge
    assert [t[0] for t in kept_triples] == ["2", "3"]
    everything = check_links(items, abstracts, triples, kg_dir=tmp_path, min_score=0)
    assert everything == (abstracts, triples, [])


def test_without_a_map_nothing_is_checked(tmp_path, caplog) -> None:
    items, abstracts, triples = _kg(tmp_path)
    (tmp_path / "map.csv").unlink()
    assert check_links(items, abstracts, triples, kg_dir=tmp_path, min_score=MIN) == (
        abstracts, triples, [])
    assert "not checked" in caplog.text


def test_the_dataset_counts_doubtful_links_and_drops_their_entities(tmp_path) -> None:
    kg = tmp_path / "kg"
    kg.mkdir()
    # Item 1 (Toy Story) joined to another film: its facts and abstract must go.
    enriched = (TINY / "kg" / "enriched.csv").read_text()
    assert '1,"Toy Story is a 1995' in enriched
    (kg / "enriched.csv").write_text(enriched.replace('1,"Toy Story is a 1995',
                                                      '1,"Toy Soldiers is a 1991'))
    rows = (TINY / "kg" / "map.csv").read_text().replace("/Toy_Story\n", "/Toy_Soldiers\n")
    (kg / "map.csv").write_text(rows)
    good = load_dataset(DataSettings(source=TINY, kg_dir=TINY / "kg"), tmp_path)
    bad = load_dataset(DataSettings(source=TINY, kg_dir=kg), tmp_path)
    assert good.stats()["doubtful_links"] == 0 and bad.stats()["doubtful_links"] == 1
    assert bad.items.at["1", "abstract"] is None and good.items.at["1", "abstract"]
    gone = good.triples[good.triples.item_id == "1"]
    dbpedia = gone[gone.entity_id.str.startswith("http")]
    assert len(dbpedia) and not (bad.triples.item_id.eq("1")
                                 & bad.triples.entity_id.str.startswith("http")).any()
    assert set(bad.entities.index) <= set(bad.triples.entity_id)
    assert set(bad.triples.relation) >= {"has_genre"}  # genre and decade stay
