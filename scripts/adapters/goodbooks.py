"""goodbooks-10k onto the generic catalogue format: the format's worked example.

goodbooks-10k (Zygmunt Zając, CC BY-SA 4.0, github.com/zygmuntz/goodbooks-10k) holds six
million 1-5 ratings of the 10,000 most rated Goodreads books, their metadata (authors,
first publication year, language) and readers' shelves (tags). Its full `ratings.csv` and
`book_tags.csv` are absent from the repository snapshots this project can read, so the
ratings and shelves come from public repositories that hold complete per-book slices of
those files (every rating of each book they keep; two such slices agree exactly on the
books they share), and the metadata and tag names from goodbooks-10k itself:

    python scripts/adapters/goodbooks.py --meta DIR --slices DIR [DIR ...] [--out data/goodbooks]

`--meta` is a folder with goodbooks-10k's `books.csv` and `tags.csv`; each `--slices`
folder holds a `ratings.csv` (user_id,book_id,rating) and a `book_tags.csv`
(goodreads_book_id,tag_id,count). The full files from goodbooks-10k's releases are such a
slice too (then the thresholds below give a much larger catalogue). Out, in `--out`:
`items.csv`, `interactions.csv`, `triples.csv` and `dataset.toml` (see the README's
"Your own catalogue" section and examples/catalogue/). The output is deterministic: the
same inputs give byte-identical files.

What it keeps and why:
- the ratings of the union of the slices, repeated (user, book) pairs once; then readers
  with at least `--min-user` ratings and books with at least `--min-book`, repeated until
  both hold (a reader with a handful of ratings gives the k-fold protocol nothing to test);
- row order as in the slices (goodbooks-10k's file is sorted by time, the slices keep its
  order) but no timestamp: none is published, so leave-last-out cannot be run honestly;
- an item's title is Goodreads' title (series in brackets), its year the first
  publication year (kept from 1000 on: earlier ones, the Odyssey's -720, are in the text
  instead, as a decade of "-720s" reads badly), its text a short description from title,
  authors, year and shelves;
- `categories`: the book's top genres among readers' shelves, variant shelf names merged
  (`GENRES`: "memoir", "memoirs", "bio" ... count as one genre); `tagged` triples: the
  themes and places readers shelve it under (`THEMES`); shelves about the reader rather
  than the book ("to-read", "owned", "kindle", "read-in-2015") are never used;
- `written_by`: the first listed author only: Goodreads lists illustrators, translators
  and foreword writers in the same field ("Anne Frank, Eleanor Roosevelt, ..."), so the
  others are named in the text, not stated as authors;
- `listed_in_language`: the language of the edition Goodreads lists (English variants
  merged), when known.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MIN_USER, MIN_BOOK = 20, 20
N_CATEGORIES, N_THEMES = 3, 4
GENRE_SHARE, THEME_SHARE = 0.04, 0.02
"""A genre (theme) is the book's when its shelves hold at least this share of the book's
content shelvings (those of any genre or theme below, among the 100 most used shelves per
book: shelves about the reader, "to-read" above all, would drown the rest) and at least
`MIN_SHELVINGS`."""
MIN_SHELVINGS = 10

GENRES: dict[str, tuple[str, ...]] = {
    "fiction": ("fiction", "novels", "novel", "general-fiction", "adult-fiction",
                "contemporary-fiction", "modern-fiction", "realistic-fiction"),
    "non-fiction": ("non-fiction", "nonfiction", "non-fic", "nonfic", "adult-non-fiction",
                    "adult-nonfiction"),
    "biography and memoir": (
        "biography", "memoir", "biography-memoir", "biographies", "biographies-memoirs",
        "memoirs", "memoir-biography", "autobiography", "bio", "biography-autobiography",
        "bio-memoir", "biographical", "autobiography-memoir", "auto-biography",
        "memoirs-biographies", "memoir-bio", "bios", "memoir-autobiography",
        "biography-and-memoir", "autobiographies", "biographies-and-memoirs",
        "biography-memoirs", "autobiography-biography", "memoirs-and-biographies",
        "bios-memoirs", "memior", "autobiographical"),
    "history": ("history", "historical-non-fiction", "historical-nonfiction"),
    "historical fiction": ("historical-fiction", "historical-novels"),
    "classics": ("classics", "classic", "classic-literature"),
    "literary fiction": ("literary-fiction", "literature", "literary"),
    "contemporary": ("contemporary",),
    "humor": ("humor", "humour", "funny", "comedy", "humorous"),
    "young adult": ("young-adult", "ya", "teen", "ya-fiction"),
    "fantasy": ("fantasy", "urban-fantasy", "high-fantasy", "epic-fantasy"),
    "science fiction": ("science-fiction", "sci-fi", "scifi", "sf"),
    "dystopia": ("dystopia", "dystopian"),
    "mystery": ("mystery", "mysteries", "mystery-thriller"),
    "thriller": ("thriller", "thrillers", "suspense"),
    "crime": ("crime", "crime-fiction"),
    "horror": ("horror",),
    "romance": ("romance", "love-story"),
    "chick lit": ("chick-lit", "chicklit"),
    "paranormal": ("paranormal", "supernatural", "vampires"),
    "poetry": ("poetry", "poems"),
    "short stories": ("short-stories", "short-story"),
    "essays": ("essays",),
    "plays": ("plays", "theatre", "theater", "shakespeare"),
    "philosophy": ("philosophy",),
    "psychology": ("psychology",),
    "self-help": ("self-help", "personal-development", "self-improvement"),
    "religion and spirituality": ("religion", "spirituality", "spiritual", "christian",
                                  "christianity", "faith", "religious"),
    "science": ("science", "popular-science", "pop-science"),
    "politics": ("politics", "political", "political-science"),
    "travel": ("travel", "travel-writing", "travelogue"),
    "business and economics": ("business", "economics", "finance"),
    "children's": ("children", "childrens", "children-s", "kids", "picture-books",
                   "childrens-books", "children-s-books", "middle-grade"),
    "graphic novels": ("graphic-novels", "graphic-novel", "comics", "manga", "comic"),
    "adventure": ("adventure",),
    "magical realism": ("magical-realism",),
    "mythology": ("mythology", "myths"),
    "true crime": ("true-crime",),
    "health": ("health", "nutrition", "fitness"),
    "cooking": ("cooking", "cookbooks", "food"),
}
THEMES: dict[str, tuple[str, ...]] = {
    "Asia": ("asia", "asian", "asian-literature", "asian-lit"),
    "Japan": ("japan", "japanese", "japanese-literature"),
    "China": ("china", "chinese"),
    "India": ("india", "indian", "indian-literature"),
    "the Middle East": ("middle-east", "middle-eastern"),
    "Africa": ("africa", "african", "african-literature"),
    "Europe": ("europe", "european"),
    "Britain": ("england", "british", "uk", "britain", "british-literature"),
    "the United States": ("usa", "america", "american-history"),
    "Russia": ("russia", "russian", "russian-literature"),
    "Afghanistan": ("afghanistan",),
    "Italy": ("italy", "italian"),
    "France": ("france", "french", "paris"),
    "Ireland": ("ireland", "irish"),
    "war": ("war", "military", "wwii", "world-war-ii", "ww2", "world-war-2", "wwi"),
    "the Holocaust": ("holocaust",),
    "coming of age": ("coming-of-age",),
    "family": ("family",),
    "friendship": ("friendship",),
    "mental health": ("mental-health", "mental-illness", "depression"),
    "survival": ("survival",),
    "feminism": ("feminism", "feminist"),
    "true stories": ("true-story", "true-stories"),
    "celebrities": ("celebrity", "celebrities", "hollywood"),
    "music": ("music", "musicians"),
    "sports": ("sports", "sport"),
    "magic": ("magic",),
    "animals": ("animals",),
    "race": ("race", "racism"),
}
LANGUAGES = {"eng": "English", "en-US": "English", "en-GB": "English", "en-CA": "English",
             "en": "English", "jpn": "Japanese", "ind": "Indonesian", "fre": "French",
             "tur": "Turkish", "ger": "German", "ara": "Arabic", "rum": "Romanian",
             "spa": "Spanish", "ita": "Italian", "por": "Portuguese", "nl": "Dutch",
             "swe": "Swedish", "rus": "Russian", "pol": "Polish", "dan": "Danish",
             "nor": "Norwegian", "fil": "Filipino", "vie": "Vietnamese", "per": "Persian",
             "msa": "Malay", "mul": None}
DATASET_TOML = """\
# goodbooks-10k (CC BY-SA 4.0), filtered: see README.md beside this file.
name = "goodbooks"
item_noun = "book"

[ratings]
scale = [1, 5]
like_threshold = 4

[relations.written_by]
phrase = "written by {tail}"

[relations.tagged]
phrase = "shelved by readers under {tail}"

[relations.listed_in_language]
phrase = "listed on Goodreads in {tail}"

[relations.has_category]
phrase = "shelved by readers as {tail}"
"""


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        raise SystemExit(f"{path}: not found")
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_slices(folders: list[Path]) -> tuple[list[tuple[int, int, int]], dict]:
    """Ratings in file order (each (user, book) once) and shelvings per goodreads id."""
    ratings: dict[tuple[int, int], int] = {}
    shelves: dict[int, dict[int, int]] = defaultdict(dict)
    for folder in folders:
        for n, r in enumerate(read_csv(folder / "ratings.csv"), start=2):
            key = (int(r["user_id"]), int(r["book_id"]))
            rating = int(r["rating"])
            if ratings.setdefault(key, rating) != rating:
                raise SystemExit(f"{folder / 'ratings.csv'}:{n}: user {key[0]} rated book "
                                 f"{key[1]} {rating}, another slice says {ratings[key]}")
        for r in read_csv(folder / "book_tags.csv"):
            shelves[int(r["goodreads_book_id"])][int(r["tag_id"])] = int(r["count"])
    return [(u, b, v) for (u, b), v in ratings.items()], shelves


def keep_dense(rows: list[tuple[int, int, int]], min_user: int, min_book: int
               ) -> list[tuple[int, int, int]]:
    """Drop readers under `min_user` ratings and books under `min_book` until both hold."""
    while True:
        users: dict[int, int] = defaultdict(int)
        books: dict[int, int] = defaultdict(int)
        for u, b, _ in rows:
            users[u] += 1
            books[b] += 1
        kept = [r for r in rows if users[r[0]] >= min_user and books[r[1]] >= min_book]
        if len(kept) == len(rows):
            return kept
        rows = kept


CONTENT = {tag for groups in (GENRES, THEMES) for tags in groups.values() for tag in tags}


def ranked_labels(counts: dict[int, int], names: dict[int, str],
                  groups: dict[str, tuple[str, ...]], share: float, limit: int) -> list[str]:
    """The groups whose shelves hold enough of a book's content shelvings, most shelved
    first (ties by name)."""
    member = {tag: label for label, tags in groups.items() for tag in tags}
    total = sum(c for t, c in counts.items() if names.get(t) in CONTENT) or 1
    score: dict[str, int] = defaultdict(int)
    for tag_id, count in counts.items():
        label = member.get(names.get(tag_id, ""))
        if label:
            score[label] += count
    kept = [(-s, label) for label, s in score.items()
            if s >= MIN_SHELVINGS and s / total >= share]
    return [label for _, label in sorted(kept)[:limit]]


def year_of(value: str) -> int | None:
    return int(float(value)) if value.strip() else None


def describe(book: dict[str, str], authors: list[str], year: int | None,
             genres: list[str], themes: list[str]) -> str:
    parts = [f"{book['title']} by {authors[0]}" if authors else book["title"]]
    if year is not None:
        parts[0] += (f", first published in {year}" if year >= 0
                     else f", first published around {-year} BC")
    parts[0] += "."
    if len(authors) > 1:
        parts.append(f"Also credited: {', '.join(authors[1:])}.")
    original = book.get("original_title", "").strip()
    if original and original != book["title"] and original not in book["title"]:
        parts.append(f"Original title: {original}.")
    if genres:
        parts.append(f"Readers shelve it as {_join(genres)}.")
    if themes:
        parts.append(f"Themes: {_join(themes)}.")
    return " ".join(parts)


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def convert(meta: Path, slices: list[Path], min_user: int = MIN_USER,
            min_book: int = MIN_BOOK) -> dict[str, str]:
    """The generic format's files, by name, as text."""
    books = {int(b["book_id"]): b for b in read_csv(meta / "books.csv")}
    tag_names = {int(t["tag_id"]): t["tag_name"] for t in read_csv(meta / "tags.csv")}
    rows, shelves = read_slices(slices)
    for u, b, _ in rows:
        if b not in books:
            raise SystemExit(f"ratings: book id {b} is not in {meta / 'books.csv'}")
    rows = keep_dense(rows, min_user, min_book)
    kept_books = sorted({b for _, b, _ in rows})

    items, triples = _table(["item_id", "title", "year", "text", "categories"]), _table(
        ["head", "relation", "tail"])
    for b in kept_books:
        book = books[b]
        counts = shelves.get(int(book["goodreads_book_id"]), {})
        genres = ranked_labels(counts, tag_names, GENRES, GENRE_SHARE, N_CATEGORIES)
        themes = ranked_labels(counts, tag_names, THEMES, THEME_SHARE, N_THEMES)
        authors = [a.strip() for a in book["authors"].split(",") if a.strip()]
        year = year_of(book["original_publication_year"])
        items.writerow([b, book["title"], year if year is not None and year >= 1000 else "",
                        describe(book, authors, year, genres, themes), "|".join(genres)])
        if authors:
            triples.writerow([b, "written_by", authors[0]])
        for theme in themes:
            triples.writerow([b, "tagged", theme])
        language = LANGUAGES.get(book["language_code"].strip())
        if language:
            triples.writerow([b, "listed_in_language", language])
    inter = _table(["user_id", "item_id", "rating"])
    for u, b, v in rows:
        inter.writerow([u, b, v])
    return {"items.csv": items.text(), "interactions.csv": inter.text(),
            "triples.csv": triples.text(), "dataset.toml": DATASET_TOML}


class _table:
    """A CSV being written to a string, "\\n" line ends whatever the platform."""

    def __init__(self, header: list[str]) -> None:
        self.buf = io.StringIO()
        self.out = csv.writer(self.buf, lineterminator="\n")
        self.out.writerow(header)

    def writerow(self, row: list) -> None:
        self.out.writerow(row)

    def text(self) -> str:
        return self.buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--meta", type=Path, required=True,
                    help="folder with goodbooks-10k's books.csv and tags.csv")
    ap.add_argument("--slices", type=Path, nargs="+", required=True,
                    help="folders each with a ratings.csv and a book_tags.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "goodbooks")
    ap.add_argument("--min-user", type=int, default=MIN_USER)
    ap.add_argument("--min-book", type=int, default=MIN_BOOK)
    args = ap.parse_args(argv)
    files = convert(args.meta, args.slices, args.min_user, args.min_book)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8")
    n = files["interactions.csv"].count("\n") - 1
    print(f"wrote {args.out}: {files['items.csv'].count(chr(10)) - 1} books, {n} ratings, "
          f"{files['triples.csv'].count(chr(10)) - 1} triples", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
