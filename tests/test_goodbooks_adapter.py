"""scripts/adapters/goodbooks.py on a tiny goodbooks-shaped fixture, and the committed
data/goodbooks folder against its README's checksums."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import re
from pathlib import Path

import pytest

from rag_rec.data.export import write_csv

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("goodbooks_adapter",
                                               ROOT / "scripts" / "adapters" / "goodbooks.py")
goodbooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(goodbooks)

BOOKS = [  # book_id, goodreads_book_id, authors, year, original_title, title, language
    (1, 101, "Ann Author, Ivan Illustrator", "2001.0", "", "Alpha (Series, #1)", "eng"),
    (2, 102, "Bo Writer", "-720.0", "Odusseia", "The Beta", "en-US"),
    (3, 103, "Cy Poet", "", "Gamma", "Gamma", "jpn"),
    (4, 104, "Di Rare", "1999.0", "", "Delta", ""),
]
TAGS = ["to-read", "memoir", "memoirs", "bio", "fiction", "japan", "owned", "fantasy"]


@pytest.fixture
def raw(tmp_path: Path) -> tuple[Path, list[Path]]:
    """Meta files and two slices: users 1-3 rate books 1-3 (user 1 in both slices, the
    shared rows agreeing), user 4 rates only book 4 and 1 (too few), book 4 is rated once."""
    meta = tmp_path / "meta"
    write_csv(meta / "books.csv", ["book_id", "goodreads_book_id", "authors",
                                "original_publication_year", "original_title", "title",
                                "language_code"], BOOKS)
    write_csv(meta / "tags.csv", ["tag_id", "tag_name"], list(enumerate(TAGS)))
    a, b = tmp_path / "a", tmp_path / "b"
    write_csv(a / "ratings.csv", ["user_id", "book_id", "rating"],
           [(1, 1, 5), (1, 2, 4), (2, 1, 3), (2, 2, 2), (2, 3, 5), (4, 4, 5), (4, 1, 4)])
    write_csv(b / "ratings.csv", ["user_id", "book_id", "rating"],
           [(1, 2, 4), (1, 3, 1), (3, 1, 4), (3, 2, 5), (3, 3, 3)])
    # Book 101: to-read dominates but is no genre; memoir variants sum to one genre.
    write_csv(a / "book_tags.csv", ["goodreads_book_id", "tag_id", "count"],
           [(101, 0, 9000), (101, 1, 30), (101, 2, 30), (101, 3, 30), (101, 4, 50),
            (101, 6, 800), (103, 4, 100), (103, 5, 40), (103, 7, 1)])
    write_csv(b / "book_tags.csv", ["goodreads_book_id", "tag_id", "count"],
           [(102, 4, 40), (102, 7, 500)])
    return meta, [a, b]


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(text.splitlines()))


def test_thresholds_repeat_until_both_hold(raw):
    meta, slices = raw
    files = goodbooks.convert(meta, slices, min_user=3, min_book=2)
    inter = _rows(files["interactions.csv"])
    # User 4 has 2 ratings: dropped, which leaves book 4 unrated: dropped too.
    assert {r["user_id"] for r in inter} == {"1", "2", "3"}
    assert {r["item_id"] for r in _rows(files["items.csv"])} == {"1", "2", "3"}
    # (1, 2) appears in both slices and is kept once; slice order is kept.
    assert [(r["user_id"], r["item_id"]) for r in inter][:3] == [("1", "1"), ("1", "2"),
                                                                  ("2", "1")]
    assert len(inter) == 9


def test_items_text_categories_and_years(raw):
    items = {r["item_id"]: r for r in _rows(goodbooks.convert(*raw, 3, 2)["items.csv"])}
    # Variant memoir shelves merge into one genre that outweighs fiction; reader shelves
    # ("to-read", "owned") never become genres.
    assert items["1"]["categories"] == "biography and memoir|fiction"
    assert items["1"]["year"] == "2001"
    assert items["1"]["text"].startswith("Alpha (Series, #1) by Ann Author, first published "
                                         "in 2001. Also credited: Ivan Illustrator.")
    # A year before 1000 is left out of the year column, said in the text instead.
    assert items["2"]["year"] == ""
    assert "first published around 720 BC" in items["2"]["text"]
    assert "Original title: Odusseia." in items["2"]["text"]
    assert items["2"]["categories"] == "fantasy|fiction"
    assert items["3"]["year"] == "" and "first published" not in items["3"]["text"]
    # A shelf under MIN_SHELVINGS does not count, however large its share.
    assert items["3"]["categories"] == "fiction"


def test_triples_first_author_themes_language(raw):
    triples = {(r["head"], r["relation"], r["tail"])
               for r in _rows(goodbooks.convert(*raw, 3, 2)["triples.csv"])}
    assert ("1", "written_by", "Ann Author") in triples
    assert not any(t == "Ivan Illustrator" for *_, t in triples)
    assert ("3", "tagged", "Japan") in triples
    assert ("1", "listed_in_language", "English") in triples
    assert ("2", "listed_in_language", "English") in triples
    assert ("3", "listed_in_language", "Japanese") in triples


def test_deterministic_and_written(raw, tmp_path):
    meta, slices = raw
    out1, out2 = tmp_path / "o1", tmp_path / "o2"
    for out in (out1, out2):
        assert goodbooks.main(["--meta", str(meta), "--slices", *map(str, slices),
                               "--out", str(out), "--min-user", "3", "--min-book", "2"]) == 0
    names = sorted(p.name for p in out1.iterdir())
    assert names == ["dataset.toml", "interactions.csv", "items.csv", "triples.csv"]
    for name in names:
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes()


def test_slices_that_disagree_are_refused(raw):
    meta, (a, b) = raw
    with (b / "ratings.csv").open("a") as f:
        f.write("2,1,5\n")  # slice a says 3
    with pytest.raises(SystemExit, match=r"ratings\.csv:7: user 2 rated book 1 5"):
        goodbooks.convert(meta, [a, b], 3, 2)


def test_unknown_book_is_refused(raw):
    meta, (a, b) = raw
    with (a / "ratings.csv").open("a") as f:
        f.write("1,99,5\n")
    with pytest.raises(SystemExit, match="book id 99"):
        goodbooks.convert(meta, [a, b], 3, 2)


def test_committed_folder_matches_its_readme():
    """Every file in data/goodbooks is listed in its README with its sha256."""
    folder = ROOT / "data" / "goodbooks"
    listed = dict(re.findall(r"`([\w.]+)`\s*\|\s*`?([0-9a-f]{64})`?",
                             (folder / "README.md").read_text()))
    files = {p.name for p in folder.iterdir() if p.name != "README.md"}
    assert set(listed) == files
    for name, digest in listed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
