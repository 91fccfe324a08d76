"""scripts/adapters/ml1m_implicit.py on a tiny folder shaped like CoLaKG's ML-1M copy: the
catalogue it writes is valid, keeps each user's movies once and borrows ML-100K's facts
only for movies both datasets hold."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from rag_rec.data.export import write_csv
from rag_rec.data.validate import validate

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "ml1m_adapter", ROOT / "scripts" / "adapters" / "ml1m_implicit.py")
ml1m = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ml1m)


def _lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def raw(tmp_path: Path) -> dict[str, Path]:
    """Users 10 and 20 (indices 0, 1), movies 1, 2, 3 (indices 0, 1, 2); user 10 lists
    movie 2 in both train and test. ML-100K holds movie 1 as its item 7 ("The Alpha",
    same year) and a different film of the same title ten years on."""
    colakg = tmp_path / "colakg"
    _lines(colakg / "user_map.txt", ["10 0", "20 1", "30 2"])
    _lines(colakg / "item_map.txt", ["1 0", "2 1", "3 2"])
    _lines(colakg / "train.txt", ["0 0 1", "1 1 2"])
    _lines(colakg / "test.txt", ["0 1 2", "1 0"])
    movies = tmp_path / "movies"
    _lines(movies / "movies.dat", ["1::Alpha, The (1995)::Drama", "2::Beta (1996)::Comedy",
                                   "3::Gamma::Horror|Thriller", "4::Delta (1990)::Drama"])
    _lines(movies / "users.dat", ["10::F::25::3::12345", "20::M::35::7::54321",
                                  "40::M::18::1::00000"])
    facts = tmp_path / "ml100k"
    write_csv(facts / "items.csv", ["item_id", "title", "year", "text"],
         [["7", "The Alpha", "1995", "Alpha is a 1995 drama."],
          ["8", "Beta", "2006", "Another Beta."]])
    write_csv(facts / "triples.csv", ["head", "relation", "tail", "tail_kind"],
         [["7", "directed_by", "Ann Director", "entity"], ["8", "starring", "Bo", "entity"]])
    return {"interactions": colakg, "movies": movies, "facts": facts,
            "out": tmp_path / "out"}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_catalogue_written_and_valid(raw):
    assert ml1m.main([f"--{name}={path}" for name, path in raw.items()]) == 0
    out = raw["out"]
    pairs = [(r["user_id"], r["item_id"]) for r in _rows(out / "interactions.csv")]
    # Train then test order per user; user 10's movie 2 (train and test) kept once.
    assert pairs == [("10", "1"), ("10", "2"), ("10", "3"), ("20", "2"), ("20", "3"),
                     ("20", "1")]
    items = {r["item_id"]: r for r in _rows(out / "items.csv")}
    assert items["1"]["title"] == "Alpha, The" and items["1"]["year"] == "1995"
    assert items["3"]["year"] == "" and items["3"]["categories"] == "Horror|Thriller"
    assert "4" not in items  # nobody rated it
    # Only the same title in the same year borrows ML-100K's text and facts.
    assert items["1"]["text"] == "Alpha is a 1995 drama." and items["2"]["text"] == ""
    assert [(r["head"], r["tail"]) for r in _rows(out / "triples.csv")] == [
        ("1", "Ann Director")]
    assert {r["user_id"] for r in _rows(out / "users.csv")} == {"10", "20"}
    report = validate(out)
    assert report.ok, report.problems
    assert report.stats["interactions"] == 6


def test_latin1_movies_dat_is_read(raw):
    """GroupLens' own movies.dat is Latin-1, not UTF-8."""
    (raw["movies"] / "movies.dat").write_bytes(
        "1::Café, The (1995)::Drama\n2::Beta (1996)::Comedy\n3::Gamma::Horror\n"
        .encode("latin-1"))
    ml1m.main([f"--{name}={path}" for name, path in raw.items()])
    assert _rows(raw["out"] / "items.csv")[0]["title"] == "Café, The"


def test_movie_missing_from_movies_dat_is_refused(raw):
    _lines(raw["movies"] / "movies.dat", ["1::Alpha, The (1995)::Drama"])
    with pytest.raises(SystemExit, match="2 movies of the interactions are not in"):
        ml1m.main([f"--{name}={path}" for name, path in raw.items()])
