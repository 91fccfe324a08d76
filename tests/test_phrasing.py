"""Phrasing, templates and the claim checker on hand-made facts: no Neo4j, no vLLM, no
build (the same checks against the real graph: tests/test_explain.py)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from rag_rec.explain import (
    attribute,
    check_claims,
    evidence_in_words,
    fact_in_words,
    select_evidence,
    template_options,
)
from rag_rec.models import Explanation, Fact, Item

ALIEN = Item(id="1", title="Alien (1979)", year=1979, genres=("Horror", "Sci-Fi"))
BLADE_RUNNER = Item(id="2", title="Blade Runner (1982)", year=1982, genres=("Sci-Fi",))
SUSPECTS = Item(id="3", title="Usual Suspects, The (1995)", year=1995, genres=("Crime",))
HISTORY = [(BLADE_RUNNER, 5.0), (SUSPECTS, 4.0)]
PHRASING = tomllib.loads(
    (Path(__file__).parents[1] / "rag_rec/explain/phrasing.toml").read_text(encoding="utf-8"))


def _fact(relation: str, entity: str, history: Item = BLADE_RUNNER,
          history_relation: str | None = None, degree: int = 3) -> Fact:
    return Fact(candidate_id=ALIEN.id, candidate_title=ALIEN.title, relation=relation,
                entity_id=f"e:{entity}", entity_name=entity,
                history_relation=history_relation or relation, history_item_id=history.id,
                history_title=history.title, entity_kind="dbpedia", entity_degree=degree)


DIRECTOR = _fact("directed_by", "Ridley Scott (director)")
CAMERA = _fact("cinematography_by", "Derek Vanlint")


def test_a_phrased_relation_reads_as_its_table_says() -> None:
    table = PHRASING["relation"]["directed_by"]
    assert attribute(DIRECTOR) == table["attribute"].format(entity="Ridley Scott")
    assert attribute(DIRECTOR) == "directed by Ridley Scott"
    assert fact_in_words(DIRECTOR) == (
        f"Alien {table['plain_verb']} Ridley Scott, who also {table['history_verb']} "
        "Blade Runner.")
    # Another part in the history film: its own verb, and "which" for a company.
    studio = _fact("directed_by", "Ridley Scott", history_relation="produced_by")
    assert fact_in_words(studio) == "Alien is directed by Ridley Scott, who also produced Blade Runner."
    distributor = _fact("distributed_by", "20th Century Fox", history=SUSPECTS)
    assert fact_in_words(distributor) == ("Alien is distributed by 20th Century Fox, which also "
                                          "distributed The Usual Suspects.")


def test_genres_and_categories_read_as_words() -> None:
    genre = _fact("has_genre", "Sci-Fi", degree=300)
    assert attribute(genre) == "a science-fiction film"
    assert attribute(_fact("has_genre", "Horror")) == "a horror film"
    assert fact_in_words(genre) == "Alien and Blade Runner are both Sci-Fi films."
    assert attribute(_fact("subject", "Films directed by Ridley Scott")) == \
        "directed by Ridley Scott"
    assert attribute(_fact("subject", "Space adventure films")) == \
        "one of the space adventure films"
    assert attribute(_fact("subject", "Nostromo in fiction")) == \
        "listed under “Nostromo in fiction”"


def test_an_unphrased_relation_gets_the_readable_default() -> None:
    assert "edited_by" not in PHRASING["relation"]
    edited = _fact("edited_by", "Terry Rawlings")
    # Read from the relation's name (issue 31): never `edited_by`, never a vague "linked".
    assert attribute(edited) == "edited by Terry Rawlings"
    assert fact_in_words(edited) == "Alien and Blade Runner are both edited by Terry Rawlings."
    # Unphrased in the history film only: the path still reads, without a made-up verb.
    assert fact_in_words(_fact("starring", "Sigourney Weaver", history_relation="voice_of")) \
        == "Alien and Blade Runner share Sigourney Weaver (starring)."


def test_plain_words_reach_the_data_model_and_its_json() -> None:
    [evidence] = select_evidence([DIRECTOR], {BLADE_RUNNER.id: 5.0})
    assert DIRECTOR.plain == "Alien is directed by Ridley Scott, who also directed Blade Runner."
    assert evidence.plain == evidence_in_words(evidence) == (
        f"{DIRECTOR.plain} (Blade Runner: you rated it 5 stars.)")
    explanation = Explanation(text="x", evidence=(evidence,), source="template")
    dumped = explanation.model_dump(mode="json")
    assert dumped["facts_in_words"] == [evidence.plain]
    assert dumped["evidence"][0]["fact"]["plain"] == DIRECTOR.plain
    assert Explanation.model_validate_json(explanation.model_dump_json()) == explanation


def test_the_data_model_imports_nothing_from_the_explainer() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, rag_rec.models; "
         "print(sorted(m for m in sys.modules if m.startswith('rag_rec.explain')))"],
        capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_template_states_the_strongest_paths() -> None:
    evidence = select_evidence([DIRECTOR, CAMERA], {BLADE_RUNNER.id: 5.0})
    assert [path.fact for path in evidence] == [DIRECTOR, CAMERA]
    options = template_options(ALIEN, evidence, HISTORY)
    assert options[0].text == ("Directed by Ridley Scott, like Blade Runner, which you rated "
                               "5 stars.")
    assert options[0].evidence == (evidence[0],)


def test_the_claim_checker_accepts_a_sentence_citing_only_the_given_facts() -> None:
    text = "Directed by Ridley Scott, like Blade Runner, which you rated 5 stars."
    assert check_claims(text, ALIEN, [DIRECTOR], HISTORY) == []
    assert check_claims("Ridley Scott directed Blade Runner too; you rated it 5 stars.",
                        ALIEN, [DIRECTOR], HISTORY) == []


def test_the_claim_checker_rejects_an_entity_not_among_the_facts() -> None:
    problems = check_claims("Directed by Ridley Scott and starring Sigourney Weaver, like "
                            "Blade Runner, which you rated 5 stars.", ALIEN, [DIRECTOR], HISTORY)
    assert "unsupported name “Sigourney”" in problems
    assert "unsupported name “Weaver”" in problems


def test_the_claim_checker_rejects_a_relation_not_among_the_facts() -> None:
    # Derek Vanlint shot Alien; calling him its director is a claim no cited fact makes.
    problems = check_claims("Directed by Derek Vanlint, like Blade Runner, which you rated "
                            "5 stars.", ALIEN, [CAMERA], HISTORY)
    assert problems == ["“Directed” is not what Derek Vanlint did according to the cited facts"]
    # The right relation for the same entity passes.
    assert check_claims("Shot by cinematographer Derek Vanlint, like Blade Runner, which you "
                        "rated 5 stars.", ALIEN, [CAMERA], HISTORY) == []


def test_the_claim_checker_rejects_a_wrong_rating_and_a_film_not_linked() -> None:
    assert check_claims("Directed by Ridley Scott, like Blade Runner, which you rated 4 stars.",
                        ALIEN, [DIRECTOR], HISTORY) == [
        "rating 4 is not the user's rating of Blade Runner"]
    assert check_claims("Directed by Ridley Scott, like The Usual Suspects, which you rated "
                        "4 stars.", ALIEN, [DIRECTOR], HISTORY) == [
        "no cited fact links Ridley Scott to The Usual Suspects"]
