"""Splits and format detection on a small synthetic ml-100k-format folder written here:
no MovieLens download, no Neo4j, no vLLM, no build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag_rec.data import (
    READERS,
    SPLITS,
    Dataset,
    SplitProtocol,
    cold_user_split,
    detect,
    kfold_split,
    leave_last_out_split,
    load_dataset,
    make_split,
    split_protocol,
)
from rag_rec.errors import DataError
from rag_rec.settings import DataSettings

GENRES = ["Action", "Comedy", "Drama"]
N_USERS, N_ITEMS = 12, 40


def _write_ml100k(folder: Path) -> None:
    """Users rate between 8 and 30 of 40 invented films at shuffled, distinct times, so
    the latest item is neither the highest id nor the last line of the file."""
    rng = np.random.default_rng(0)
    (folder / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)))
    (folder / "u.item").write_text("".join(
        f"{i}|Invented Film {i} ({1950 + i})|01-Jan-{1950 + i}||http://example.invalid|"
        + "|".join("1" if i % len(GENRES) == k else "0" for k in range(len(GENRES))) + "\n"
        for i in range(1, N_ITEMS + 1)))
    rows = []
    for u in range(1, N_USERS + 1):
        items = rng.choice(np.arange(1, N_ITEMS + 1), 8 + 2 * u, replace=False)
        times = 880_000_000 + rng.permutation(len(items)) * 1000 + u
        rows += [f"{u}\t{i}\t{rng.integers(1, 6)}\t{t}\n" for i, t in zip(items, times)]
    rng.shuffle(rows)
    (folder / "u.data").write_text("".join(rows))
    (folder / "u.user").write_text("".join(
        f"{u}|{20 + u}|{'MF'[u % 2]}|other|00000\n" for u in range(1, N_USERS + 1)))


@pytest.fixture
def tiny(tmp_path: Path) -> Dataset:
    _write_ml100k(tmp_path)
    return load_dataset(DataSettings(source=tmp_path, kg_dir=tmp_path / "no-kg"), tmp_path)


def _keys(frame) -> set[tuple[str, str]]:
    return set(zip(frame.user_id, frame.item_id))


def test_the_synthetic_folder_reads_as_ml100k(tiny: Dataset) -> None:
    assert tiny.name == "ml-100k"
    assert len(tiny.interactions) == sum(8 + 2 * u for u in range(1, N_USERS + 1))
    assert len(tiny.items) == N_ITEMS and tiny.item("7").year == 1957


def test_each_split_function_sets_its_protocol(tiny: Dataset) -> None:
    assert kfold_split(tiny, 0).protocol is SplitProtocol.KFOLD
    assert leave_last_out_split(tiny).protocol is SplitProtocol.LEAVE_LAST_OUT
    assert cold_user_split(tiny, share=0.25).protocol is SplitProtocol.COLD
    # A name's protocol is known without cutting the split, and agrees with it.
    for name in SPLITS:
        assert make_split(tiny, name).protocol is split_protocol(name)
    assert split_protocol("kfold3") is SplitProtocol.KFOLD
    with pytest.raises(ValueError, match="valid: loo, loo-cold, kfold0"):
        split_protocol("kfold5")


def test_leave_last_out_holds_out_each_users_latest_item(tiny: Dataset) -> None:
    split = leave_last_out_split(tiny)
    inter = tiny.interactions.sort_values(["user_id", "timestamp"])
    latest = inter.groupby("user_id").tail(1)
    second = inter.groupby("user_id").nth(-2)
    assert _keys(split.test) == _keys(latest)
    assert _keys(split.valid) == _keys(second)
    assert len(split.test) == len(split.valid) == N_USERS
    assert _keys(split.train) == _keys(tiny.interactions) - _keys(latest) - _keys(second)


def test_kfold_folds_are_disjoint_and_cover_every_rating(tiny: Dataset) -> None:
    folds = [kfold_split(tiny, k) for k in range(5)]
    tests = [_keys(f.test) for f in folds]
    for a in range(5):
        for b in range(a + 1, 5):
            assert not tests[a] & tests[b], (a, b)
    assert set.union(*tests) == _keys(tiny.interactions)
    assert sum(map(len, tests)) == len(tiny.interactions)
    for f in folds:  # within a fold, train, valid and test partition the ratings
        parts = [_keys(f.train), _keys(f.valid), _keys(f.test)]
        assert sum(map(len, parts)) == len(tiny.interactions)
        assert set.union(*parts) == _keys(tiny.interactions)


@pytest.mark.parametrize("keep", [2, 5])
def test_cold_users_keep_the_configured_number_of_oldest_train_items(
        tiny: Dataset, keep: int) -> None:
    base, cold = leave_last_out_split(tiny), cold_user_split(tiny, share=0.25, keep=keep)
    users = cold.info["cold_users"]
    assert len(users) == 3  # a quarter of 12
    sizes = cold.train.groupby("user_id").size()
    assert (sizes.reindex(users) == keep).all()
    oldest = base.train.sort_values("timestamp").groupby("user_id").head(keep)
    assert _keys(cold.train[cold.train.user_id.isin(users)]) == _keys(
        oldest[oldest.user_id.isin(users)])
    warm = base.train[~base.train.user_id.isin(users)]
    assert _keys(cold.train[~cold.train.user_id.isin(users)]) == _keys(warm)
    assert _keys(cold.test) == _keys(base.test)


@pytest.mark.parametrize("files,fmt,name", [
    (["u.data"], "ml-100k", "ml-100k"),
    (["ratings.dat"], "ml-1m", "ml-1m"),
    (["ratings.csv"], "ml-latest", "ml-latest"),
    (["ml-tiny.inter"], "recbole", "ml-tiny"),
    # RecBole's files win over the others: the wheel's folder is read as atomic files.
    (["ml-tiny.inter", "u.data", "ratings.csv"], "recbole", "ml-tiny"),
])
def test_the_registry_detects_the_format(tmp_path: Path, files: list[str], fmt: str,
                                         name: str) -> None:
    for f in files:
        (tmp_path / f).write_text("")
    source = detect(tmp_path)
    assert (source.format, source.name) == (fmt, name)
    assert source.files[0] == tmp_path / files[0]


def test_an_unknown_folder_names_the_formats(tmp_path: Path) -> None:
    (tmp_path / "ratings.json").write_text("{}")
    with pytest.raises(DataError, match="no dataset files") as err:
        detect(tmp_path)
    for fmt in ("generic", "recbole", "ml-100k", "ml-1m", "ml-latest"):
        assert fmt in str(err.value)
    assert set(READERS) == {"generic", "recbole", "ml-100k", "ml-1m", "ml-latest"}
