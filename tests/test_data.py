"""The dataset loader on the real MovieLens-100K + DBpedia data and on small slices of it
written in the other MovieLens formats."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import rag_rec.data.splits as splits_module
from rag_rec.artifacts import build_facts
from rag_rec.steps import step_keys
from rag_rec.data import Dataset, kfold_split, leave_last_out_split, load_dataset, make_split
from rag_rec.errors import DataError, UnknownItem, UnknownUser
from rag_rec.settings import DataSettings, Settings


def test_real_dataset_counts(dataset: Dataset) -> None:
    stats = dataset.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)
    assert stats["items_with_dbpedia"] == 1411
    dbpedia = dataset.triples[~dataset.triples["relation"].isin(
        ["has_genre", "released_in_decade"])]
    assert len(dbpedia) == 36805  # the count the data README gives
    assert 0.93 < stats["sparsity"] < 0.94


def test_items_without_dbpedia_are_first_class(dataset: Dataset) -> None:
    alien = dataset.item("183")
    assert alien.title == "Alien" and alien.year == 1979 and alien.abstract is None
    relations = set(dataset.triples[dataset.triples["item_id"] == "183"]["relation"])
    assert relations == {"has_genre", "released_in_decade"}
    # Every item has at least one KG relation.
    assert set(dataset.triples["item_id"]) == set(dataset.items.index)


def test_readable_entities(dataset: Dataset) -> None:
    scott = dataset.entity("http://dbpedia.org/resource/Ridley_Scott")
    assert scott.name == "Ridley Scott"
    directed = dataset.triples[(dataset.triples["relation"] == "directed_by")
                               & (dataset.triples["entity_id"] == scott.id)]
    assert {"89", "326", "924"} <= set(directed["item_id"])


def test_recbole_quirks_are_repaired(dataset: Dataset) -> None:
    land = dataset.item("1412")  # year column "V", real year left in the title
    assert land.year == 1995 and not land.title.endswith("(1995)")


def test_unknown_ids(dataset: Dataset) -> None:
    with pytest.raises(UnknownUser):
        dataset.user("no-such-user")
    with pytest.raises(UnknownItem):
        dataset.item("99999")


def test_kfold_split_is_deterministic_and_partitions(dataset: Dataset) -> None:
    folds = [kfold_split(dataset, k) for k in range(5)]
    test_keys = [set(zip(f.test.user_id, f.test.item_id)) for f in folds]
    assert sum(len(k) for k in test_keys) == len(dataset.interactions)
    assert set.union(*test_keys) == set(zip(dataset.interactions.user_id,
                                            dataset.interactions.item_id))
    for f in folds:  # 80/20 within every user
        share = f.test.groupby("user_id").size() / dataset.interactions.groupby("user_id").size()
        assert share.between(0.15, 0.25).all()
        # One validation item per user: their latest non-test interaction.
        assert len(f.valid) == f.valid.user_id.nunique() == 943
        assert len(f.train) + len(f.valid) + len(f.test) == len(dataset.interactions)
        last_train = f.train.groupby("user_id").timestamp.max()
        assert (f.valid.set_index("user_id").timestamp >= last_train.reindex(
            f.valid.user_id)).all()
    again = kfold_split(dataset, 0)
    pd.testing.assert_frame_equal(again.test, folds[0].test)
    other_seed = kfold_split(dataset, 0, seed=7)
    assert not other_seed.test.equals(folds[0].test)


def test_cold_user_split_cuts_a_slice_of_users_to_five(
        dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    loo, cold = make_split(dataset, "loo"), make_split(dataset, "loo-cold")
    users = cold.info["cold_users"]
    assert len(users) == 283 and cold.info == make_split(dataset, "loo-cold").info
    sizes = cold.train.groupby("user_id").size()
    assert (sizes.reindex(users) == 5).all()
    warm = sizes.drop(users)
    assert warm.equals(loo.train.groupby("user_id").size().drop(users))
    # The kept interactions are each cold user's oldest, and test/valid are loo's.
    first = loo.train.groupby("user_id").head(5)
    kept = cold.train[cold.train.user_id.isin(users)]
    assert set(zip(kept.user_id, kept.item_id)) == set(
        zip(*first[first.user_id.isin(users)][["user_id", "item_id"]].T.values))
    assert cold.test.equals(loo.test) and cold.valid.equals(loo.valid)
    # Each draw takes its cold users from those no earlier draw made cold.
    monkeypatch.setattr(splits_module, "COLD_DRAW", 0)
    first = make_split(dataset, "loo-cold").info["cold_users"]
    assert len(first) == 283 and not set(first) & set(users)


@pytest.mark.parametrize("knob,value", [("COLD_SHARE", 0.1), ("COLD_DRAW", 0)])
def test_a_build_on_another_cold_slice_has_another_folder(
        settings: Settings, dataset: Dataset, monkeypatch: pytest.MonkeyPatch, knob: str,
        value: float) -> None:
    # A build keyed by the split's name alone would serve one cold slice's KG vectors and
    # sources to another.
    splits = {name: make_split(dataset, name) for name in ("loo", "loo-cold")}

    def first_key(name: str) -> str:
        return step_keys(settings, build_facts(settings, dataset, splits[name]))["kg"]

    before = {name: first_key(name) for name in splits}
    monkeypatch.setattr(splits_module, knob, value)
    assert first_key("loo") == before["loo"]
    assert first_key("loo-cold") != before["loo-cold"]


def test_leave_last_out_split(dataset: Dataset) -> None:
    split = leave_last_out_split(dataset)
    assert len(split.test) == len(split.valid) == 943
    last = dataset.interactions.sort_values(["timestamp", "item_id"]).groupby("user_id").tail(1)
    merged = split.test.merge(last, on="user_id", suffixes=("", "_last"))
    assert (merged.timestamp == merged.timestamp_last).all()
    train_max = split.train.groupby("user_id").timestamp.max()
    assert (split.valid.set_index("user_id").timestamp >= train_max).all()
    assert len(split.train) + 2 * 943 == len(dataset.interactions)


def test_make_split_rejects_unknown_names(dataset: Dataset) -> None:
    with pytest.raises(ValueError, match="valid: loo"):
        make_split(dataset, "kfold9")


# ------------------------------------------------------------------ other formats

def _slice(dataset: Dataset, n_users: int = 10):
    users = sorted(dataset.interactions.user_id.unique(), key=int)[:n_users]
    inter = dataset.interactions[dataset.interactions.user_id.isin(users)]
    items = dataset.items.loc[sorted(inter.item_id.unique(), key=int)]
    return inter, items, dataset.users.loc[users]


def _write_ml100k(folder: Path, dataset: Dataset) -> None:
    inter, items, users = _slice(dataset)
    genres = dataset.genres
    (folder / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(genres)))
    (folder / "u.data").write_text("".join(
        f"{u}\t{i}\t{int(r)}\t{t}\n" for u, i, r, t in inter.itertuples(index=False)))
    (folder / "u.item").write_text("".join(
        f"{iid}|{r.title} ({r.year})|01-Jan-{r.year}||http://x|"
        + "|".join("1" if g in r.genres else "0" for g in genres) + "\n"
        for iid, r in items.iterrows()), encoding="latin-1")
    (folder / "u.user").write_text("".join(
        f"{uid}|{r.age}|{r.gender}|{r.occupation}|00000\n" for uid, r in users.iterrows()))


def _write_ml1m(folder: Path, dataset: Dataset) -> None:
    inter, items, users = _slice(dataset)
    (folder / "ratings.dat").write_text("".join(
        f"{u}::{i}::{int(r)}::{t}\n" for u, i, r, t in inter.itertuples(index=False)))
    (folder / "movies.dat").write_text("".join(
        f"{iid}::{r.title} ({r.year})::{'|'.join(r.genres)}\n" for iid, r in items.iterrows()),
        encoding="latin-1")
    (folder / "users.dat").write_text("".join(
        f"{uid}::{r.gender}::{r.age}::{r.occupation}::00000\n" for uid, r in users.iterrows()))


def _write_latest(folder: Path, dataset: Dataset) -> None:
    inter, items, _ = _slice(dataset)
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{i},{r},{t}\n" for u, i, r, t in inter.itertuples(index=False)))
    (folder / "movies.csv").write_text("movieId,title,genres\n" + "".join(
        f'{iid},"{r.title} ({r.year})",{"|".join(r.genres)}\n' for iid, r in items.iterrows()))


@pytest.mark.parametrize("writer,name", [(_write_ml100k, "ml-100k"), (_write_ml1m, "ml-1m"),
                                         (_write_latest, "ml-latest")])
def test_other_movielens_formats(tmp_path: Path, dataset: Dataset, writer, name,
                                 caplog: pytest.LogCaptureFixture) -> None:
    writer(tmp_path, dataset)
    with caplog.at_level("WARNING", logger="rag_rec"):
        ds = load_dataset(DataSettings(source=tmp_path, kg_dir=tmp_path / "none"), tmp_path)
    # A KG folder that is given applies to whatever release is read, and is said missing.
    assert "no DBpedia KG at" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="rag_rec"):
        default = load_dataset(DataSettings(source=tmp_path), tmp_path)
    # Unset, the shipped MovieLens-100K map joins the default source only, never a
    # folder by its dataset's name (another release's ids would get the wrong films).
    assert ("no DBpedia KG at" in caplog.text) is False
    assert default.stats()["items_with_dbpedia"] == 0
    inter, items, _ = _slice(dataset)
    assert ds.name == name
    assert len(ds.interactions) == len(inter)
    assert set(ds.items.index) == set(items.index)
    first = items.index[0]
    assert ds.item(first).title == items.loc[first, "title"]
    assert ds.item(first).genres == items.loc[first, "genres"]
    # Genre and decade relations exist for every item even without a DBpedia KG.
    assert set(ds.triples.item_id) == set(ds.items.index)


def test_bad_row_names_file_and_line(tmp_path: Path, dataset: Dataset) -> None:
    _write_ml1m(tmp_path, dataset)
    lines = (tmp_path / "ratings.dat").read_text().splitlines()
    lines[6] = "1::2::five::881250949"
    (tmp_path / "ratings.dat").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"ratings\.dat:7: bad rating 'five'"):
        load_dataset(DataSettings(source=tmp_path), tmp_path)
    lines[6] = "1::2"
    (tmp_path / "ratings.dat").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"ratings\.dat:7: expected 4 fields"):
        load_dataset(DataSettings(source=tmp_path), tmp_path)


def test_missing_files(tmp_path: Path, dataset: Dataset) -> None:
    with pytest.raises(DataError, match="no dataset files"):
        load_dataset(DataSettings(source=tmp_path), tmp_path)
    _write_ml1m(tmp_path, dataset)
    (tmp_path / "movies.dat").unlink()
    with pytest.raises(DataError, match=r"movies\.dat: file not found"):
        load_dataset(DataSettings(source=tmp_path), tmp_path)


# ------------------------------------------------------------------ planted faults
# Each case plants one fault in real files (a 10-user slice in the MovieLens format that
# reads it) and expects `file:line: reason` naming the exact line.

def _plant(folder: Path, name: str, line: int | None, text: str | bytes) -> None:
    """Replace line `line` (1-based) of `name` with `text`, or the whole file if None."""
    path = folder / name
    if line is None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return
    lines = path.read_bytes().splitlines()
    lines[line - 1] = text if isinstance(text, bytes) else text.encode()
    path.write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.parametrize("writer,name,line,text,expected", [
    (_write_latest, "ratings.csv", 3, b"1,2,4.0,88125\xff0949",
     r"ratings\.csv:3: not valid utf-8: byte 0xff at column 14"),
    (_write_ml100k, "u.data", 5, b"1\t\xe9\t3\t881250949", r"u\.data:5: not valid utf-8"),
    (_write_latest, "ratings.csv", None, "userId,movieId,rating,timestamp\n",
     r"ratings\.csv:1: no ratings: the file is empty or holds only a header"),
    (_write_ml1m, "ratings.dat", 4, "1::2::99::881250949",
     r"ratings\.dat:4: rating 99 is outside this dataset's scale 1-5"),
    (_write_ml1m, "ratings.dat", 6, "1::2::-1::881250949",
     r"ratings\.dat:6: rating -1 is outside this dataset's scale 1-5"),
    (_write_latest, "ratings.csv", 2, "1,2,0.25,881250949",
     r"ratings\.csv:2: rating 0\.25 is outside this dataset's scale 0\.5-5"),
    (_write_ml100k, "u.data", 7, "\t2\t3\t881250949", r"u\.data:7: empty user id"),
    (_write_latest, "ratings.csv", 4, "1, ,3.0,881250949", r"ratings\.csv:4: empty item id"),
])
def test_planted_faults_name_file_and_line(tmp_path: Path, dataset: Dataset, writer, name,
                                           line, text, expected) -> None:
    writer(tmp_path, dataset)
    _plant(tmp_path, name, line, text)
    with pytest.raises(DataError, match=expected):
        load_dataset(DataSettings(source=tmp_path, kg_dir=tmp_path / "none"), tmp_path)


def test_repeats_and_unknown_items_name_both_lines(tmp_path: Path, dataset: Dataset) -> None:
    _write_ml1m(tmp_path, dataset)
    settings = DataSettings(source=tmp_path, kg_dir=tmp_path / "none")
    ratings = (tmp_path / "ratings.dat").read_text().splitlines()
    user, item = ratings[2].split("::")[:2]
    _plant(tmp_path, "ratings.dat", 9, f"{user}::{item}::4::881250949")
    with pytest.raises(DataError, match=rf"ratings\.dat:9: user '{user}' rated item '{item}' "
                                        r"again \(first at line 3\)"):
        load_dataset(settings, tmp_path)
    _plant(tmp_path, "ratings.dat", 9, "1::99999::4::881250949")
    with pytest.raises(DataError, match=r"ratings\.dat:9: item id '99999' is not in movies\.dat"):
        load_dataset(settings, tmp_path)
    (tmp_path / "ratings.dat").write_text("\n".join(ratings) + "\n")
    movies = (tmp_path / "movies.dat").read_text(encoding="latin-1").splitlines()
    _plant(tmp_path, "movies.dat", 5, movies[1].encode("latin-1"))
    with pytest.raises(DataError, match=r"movies\.dat:5: item id '\d+' is listed again "
                                        r"\(first at line 2\)"):
        load_dataset(settings, tmp_path)
