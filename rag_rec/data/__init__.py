"""Datasets: interactions + a readable knowledge graph, validated and split.

`generic` reads the generic catalogue format (docs/data-format.md: `interactions.csv`,
`items.csv`, optional `users.csv`, `triples.csv`, `dataset.toml`) with every problem
collected; `meta` holds what a dataset says about itself (`DatasetMeta`: item noun,
rating scale or none, like threshold, timestamps). The MovieLens family are adapters:
`readers` turns a MovieLens-family folder (ml-100k `u.*`, ml-1m `.dat`, latest CSV or
RecBole atomic files, detected by the files present) into rows; `kg` adds the DBpedia
facts of MovieLens-100K (`data/ml-100k-dbpedia/`) and the genre and decade relations
every item gets; `dataset` joins them into a `Dataset` with a fingerprint; `splits` cuts
typed `Split`s (`SplitProtocol`: k-fold, leave-last-out, cold).

The names other modules import from `rag_rec.data` are re-exported here. `COLD_SHARE` and
`COLD_DRAW` are copies of `rag_rec.data.splits`' values: change them there.
"""

from rag_rec.data.dataset import (
    RECBOLE_SHA256,
    RECBOLE_WHEEL,
    Dataset,
    load_dataset,
    movielens_100k_folder,
)
from rag_rec.data.meta import DatasetMeta
from rag_rec.data.kg import DBPEDIA_RELATIONS, DECADE_RELATION, GENRE_RELATION
from rag_rec.data.readers import READERS, RATING_SCALES, Source, detect
from rag_rec.data.splits import (
    COLD_DRAW,
    COLD_SHARE,
    SPLITS,
    Split,
    SplitProtocol,
    cold_user_split,
    kfold_split,
    latest_per_user,
    leave_last_out_split,
    make_split,
    split_protocol,
)

__all__ = [
    "COLD_DRAW", "COLD_SHARE", "DBPEDIA_RELATIONS", "DECADE_RELATION", "GENRE_RELATION",
    "DatasetMeta", "RATING_SCALES", "READERS", "RECBOLE_SHA256", "RECBOLE_WHEEL", "SPLITS", "Dataset",
    "Source", "Split", "SplitProtocol", "cold_user_split", "detect", "kfold_split",
    "latest_per_user", "leave_last_out_split", "load_dataset", "make_split",
    "movielens_100k_folder", "split_protocol",
]
