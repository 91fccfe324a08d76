"""The Neo4j knowledge graph: ingest and named queries (the bundled server: graph_server).

Schema (constraints in `graph/queries/schema.cypher`):

    (:User {id, age, gender, occupation})-[:RATED {rating, timestamp}]->(:Item)
    (:Item {id, title, year, genres, abstract, popularity, hidden})-[:DIRECTED_BY|STARRING|...]->(:Entity {id, name, kind, degree})
    (:Entity)-[:BASED_IN|...]->(:Entity)   (entity-to-entity facts of triples.csv)
    (:Meta {key: 'ingest', dataset, fingerprint, split, complete})

Every query lives in `graph/queries/NAME.cypher` and runs with parameters only
(`GraphClient.query(NAME, **params)`); nothing is built from input strings.

With no `NEO4J_URI`, `GraphClient` starts the bundled Neo4j (`rag_rec.graph_server`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import neo4j
import pandas as pd
from neo4j.exceptions import AuthError, ServiceUnavailable, SessionExpired
from tqdm import tqdm

from rag_rec.data import Dataset, Split
from rag_rec.data.meta import rating_marks
from rag_rec.errors import GraphUnavailable
from rag_rec.graph_server import BundledNeo4j
from rag_rec.models import Fact
from rag_rec.settings import PROJECT_ROOT, GraphSettings

QUERY_DIR = PROJECT_ROOT / "graph" / "queries"


def _load_queries() -> dict[str, str]:
    return {p.stem: p.read_text() for p in sorted(QUERY_DIR.glob("*.cypher"))}


QUERIES = _load_queries()

_WRITE_CLAUSE = re.compile(r"\b(CREATE|MERGE|SET|DELETE|REMOVE|DROP|FOREACH|LOAD\s+CSV)\b"
                           r"|\bIN\s+TRANSACTIONS\b", re.IGNORECASE)


def _writes(text: str) -> bool:
    code = "\n".join(line.split("//", 1)[0] for line in text.splitlines())
    return _WRITE_CLAUSE.search(code) is not None


WRITE_QUERIES = frozenset(name for name, text in QUERIES.items() if _writes(text))
"""Named queries holding a write clause; every other one runs in a read transaction, so
the server refuses a write from a reading path even if one slips into its Cypher."""


# --------------------------------------------------------------------------- server


class Graph(Protocol):
    """What the recommender reads from and writes to the graph (`GraphClient`; tests
    pass an in-memory fake)."""

    def meta(self) -> dict[str, Any]: ...

    def ingest_problem(self, meta: dict[str, Any] | None = None) -> str | None: ...

    def holds(self, ds: Any, split_name: str, meta: dict[str, Any] | None = None
              ) -> str | None: ...

    def user_history(self, user_id: str, limit: int = 1000) -> list[dict[str, Any]]: ...

    def candidate_facts(self, item_ids: Sequence[str], history: dict[str, float | None],
                        per_candidate: int = 30, *, scale: tuple[float, float] | None = None
                        ) -> dict[str, list[Fact]]: ...

    def item_facts(self, item_id: str) -> list[dict[str, Any]]: ...

    def write(self, name: str, **params: Any) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- client


@dataclass(frozen=True)
class IngestReport:
    users: int
    items: int
    entities: int
    triples: int
    interactions: int
    seconds: dict[str, float]


class GraphClient:
    """A Bolt connection to the graph plus the named queries and the ingest."""

    def __init__(self, settings: GraphSettings, home: Path, *, autostart: bool = True):
        self.settings = settings
        self.server = None if settings.uri else BundledNeo4j(settings, home)
        if self.server is not None:
            if autostart and self.server.pid() is None:
                self.server.start()
            self.uri, password = self.server.uri, self.server.password()
        else:
            self.uri = settings.uri
            password = settings.password.get_secret_value() if settings.password else ""
        self.driver = neo4j.GraphDatabase.driver(
            self.uri, auth=(settings.user, password), connection_timeout=10.0,
            connection_acquisition_timeout=30.0, max_transaction_retry_time=5.0,
        )
        try:
            self.driver.verify_connectivity()
        except (ServiceUnavailable, AuthError, OSError, ValueError) as exc:
            self.driver.close()
            hint = ("start the bundled server with `rag-rec graph start`" if self.server
                    else "check NEO4J_URI/NEO4J_USER/NEO4J_PASSWORD, or unset NEO4J_URI to "
                    "use the bundled server (`rag-rec graph start`)")
            reason = " ".join(str(exc).split())
            raise GraphUnavailable(
                f"Neo4j is not reachable at {self.uri} ({reason}); {hint}") from None

    def close(self) -> None:
        self.driver.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries

    def query(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """Run the named query of graph/queries with `params`; rows as dicts."""
        try:
            text = QUERIES[name]
        except KeyError:
            raise ValueError(f"unknown query {name!r}; valid: {', '.join(QUERIES)}") from None
        routing = (neo4j.RoutingControl.WRITE if name in WRITE_QUERIES
                   else neo4j.RoutingControl.READ)
        try:
            records, _, _ = self.driver.execute_query(
                neo4j.Query(text, timeout=self.settings.query_timeout_s), params,
                database_="neo4j", routing_=routing,
            )
        except (ServiceUnavailable, SessionExpired) as exc:
            raise GraphUnavailable(f"Neo4j at {self.uri} went away: {exc}") from None
        return [r.data() for r in records]

    def _run_autocommit(self, name: str, **params: Any) -> None:
        # `CALL { } IN TRANSACTIONS` needs an implicit (auto-commit) transaction.
        with self.driver.session(database="neo4j") as session:
            session.run(neo4j.Query(QUERIES[name]), params).consume()

    def counts(self) -> dict[str, int]:
        return self.query("counts")[0]

    def meta(self) -> dict[str, Any]:
        """The last ingest's bookkeeping: dataset, fingerprint, split, complete."""
        rows = self.query("get_meta", key="ingest")
        return rows[0]["meta"] if rows else {}

    def ingest_problem(self, meta: dict[str, Any] | None = None) -> str | None:
        """Why answers from this graph would be partial, or None when its last ingest
        finished (`meta`: `self.meta()` already read). An ingest marks itself incomplete
        first and complete last, so a killed one shows here until it is rerun."""
        meta = self.meta() if meta is None else meta
        if not meta:
            return "the graph holds no ingest yet: run `rag-rec graph ingest` or `rag-rec build`"
        if not meta.get("complete"):
            return (f"the graph's last ingest (split {meta.get('split', '?')!s}) did not "
                    "finish, so it holds part of the data: rerun `rag-rec graph ingest` "
                    "(or `rag-rec build`), which completes it")
        return None

    def user_history(self, user_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        return self.query("user_history", user_id=user_id, limit=limit)

    def candidate_facts(self, item_ids: Sequence[str], history: dict[str, float | None],
                        per_candidate: int = 30, per_entity: int = 3, *,
                        scale: tuple[float, float] | None = None) -> dict[str, list[Fact]]:
        """KG paths linking each candidate to the history items (id -> rating; None or
        missing ratings count as liked), with entity kind/degree and the rating, for
        the explainer to choose from. Paths through items rated below the middle of the
        rating `scale` (default 1-5: 3 stars) are not returned; see
        graph/queries/candidate_facts.cypher for the order and caps."""
        ratings = {i: float(r) for i, r in history.items() if r is not None}
        min_rating, liked_rating, top_rating = rating_marks(scale)
        rows = self.query("candidate_facts", item_ids=list(item_ids),
                          history_item_ids=list(history), ratings=ratings,
                          min_rating=min_rating, liked_rating=liked_rating,
                          top_rating=top_rating, per_candidate=per_candidate,
                          per_entity=per_entity)
        facts: dict[str, list[Fact]] = {i: [] for i in item_ids}
        for row in rows:
            facts[row["candidate_id"]].append(Fact(**row))
        return facts

    def item_facts(self, item_id: str) -> list[dict[str, Any]]:
        """An item and its KG neighbours, one row per fact (no rows: unknown item)."""
        return self.query("item_facts", item_id=item_id)

    def write(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """Run one of the live-write queries (record_interaction, upsert_item,
        hide_item) in a single transaction: it commits whole or not at all, and a
        connection lost on the way raises `GraphUnavailable` (rag_rec/live/)."""
        if name not in WRITE_QUERIES:
            raise ValueError(f"{name!r} is not a write query; valid: "
                             f"{', '.join(sorted(WRITE_QUERIES))}")
        try:
            return self.query(name, **params)
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError) as exc:
            # A failed transaction commits nothing: the write can be retried whole.
            reason = " ".join(str(exc).split())[:300]
            raise GraphUnavailable(f"the write {name!r} failed in Neo4j at {self.uri} "
                                   f"({reason}); nothing was written, retry it") from None

    # -- ingest

    def holds(self, ds: Dataset, split_name: str,
              meta: dict[str, Any] | None = None) -> str | None:
        """None when the graph holds a complete ingest of `ds` for `split_name` ("full":
        all interactions); otherwise what is wrong, in words (one meta read)."""
        meta = self.meta() if meta is None else meta
        problem = self.ingest_problem(meta)
        if problem is not None:
            return problem
        if meta.get("fingerprint") != ds.fingerprint:
            return "it holds other data"
        if meta.get("split") != split_name:
            return f"it holds split {meta.get('split')!r}, the build is {split_name!r}"
        return None

    def ensure_holds(self, ds: Dataset, split: Split | None, *, progress: bool = True) -> None:
        """Ingest `ds` (train of `split`) unless the graph already holds exactly that."""
        if self.holds(ds, split.name if split is not None else "full") is not None:
            self.ingest(ds, split, progress=progress)

    def ensure_schema(self) -> None:
        for statement in filter(str.strip, QUERIES["schema"].split(";")):
            lines = [ln for ln in statement.splitlines() if not ln.strip().startswith("//")]
            self.driver.execute_query("\n".join(lines), database_="neo4j")

    def ingest(self, ds: Dataset, split: Split | None = None, *, with_valid: bool = False,
               progress: bool = True) -> IngestReport:
        """Load `ds` into the graph with batched `UNWIND ... MERGE`.

        Idempotent: a second run leaves identical counts, and an interrupted run is
        completed by running it again. With `split`, only its train interactions enter
        the graph (held-out items must not leak into retrieval); switching split first
        removes the interactions of the previous one. `with_valid` adds the split's
        validation interactions too (test time of an evaluation: they are history then).
        """
        import time

        self.ensure_schema()
        split_name = split.name if split is not None else "full"
        if split is not None and with_valid:
            split_name += "+valid"
        previous = self.meta()
        same = (previous.get("split") == split_name
                and previous.get("fingerprint") == ds.fingerprint)
        if previous and previous.get("fingerprint") != ds.fingerprint:
            # Other data (another dataset, or facts the link check now drops): MERGE
            # would keep every node and fact the new data no longer has.
            self._run_autocommit("clear_graph")
        elif previous and not same:
            self._run_autocommit("clear_interactions")
        # A rerun over a complete ingest of the same data only MERGEs what is there, so
        # the graph stays complete throughout (a service keeps answering); anything
        # else is incomplete until its last step.
        if not (same and previous.get("complete")):
            self.query("set_meta", key="ingest", props={
                "dataset": ds.name, "fingerprint": ds.fingerprint, "split": split_name,
                "complete": False})

        interactions = split.train if split is not None else ds.interactions
        if split is not None and with_valid:
            interactions = pd.concat([interactions, split.valid], ignore_index=True)
        users = ds.users.reindex(sorted(set(ds.interactions["user_id"])))
        items = ds.items
        stages: list[tuple[str, str, list[dict[str, Any]]]] = [
            ("users", "ingest_users", [
                {"id": uid, "age": _opt_int(r.age), "gender": _opt(r.gender),
                 "occupation": _opt(r.occupation)} for uid, r in users.iterrows()]),
            ("items", "ingest_items", [
                {"id": iid, "title": r.title, "year": _opt_int(r.year),
                 "genres": list(r.genres), "abstract": r.abstract}
                for iid, r in items.iterrows()]),
            ("entities", "ingest_entities", [
                {"id": eid, "name": r["name"], "kind": r["kind"]}
                for eid, r in ds.entities.iterrows()]),
            ("triples", "ingest_triples", [
                {"item_id": i, "type": rel.upper(), "entity_id": e}
                for i, rel, e in ds.triples.itertuples(index=False)]),
            ("entity facts", "ingest_entity_triples", [
                {"head_id": h, "type": rel.upper(), "tail_id": t}
                for h, rel, t in ds.entity_triples.itertuples(index=False)]),
            ("interactions", "ingest_interactions", [
                {"user_id": u, "item_id": i, "rating": float(r), "timestamp": int(t)}
                for u, i, r, t in interactions[["user_id", "item_id", "rating",
                                                "timestamp"]].itertuples(index=False)]),
        ]
        seconds: dict[str, float] = {}
        for label, query, rows in stages:
            start = time.perf_counter()
            with tqdm(total=len(rows), desc=f"ingest {label}", unit="row",
                      disable=not progress) as bar:
                for batch in _batches(rows, self.settings.batch_size):
                    self.query(query, rows=batch)
                    bar.update(len(batch))
            seconds[label] = time.perf_counter() - start
        start = time.perf_counter()
        self.query("update_degrees")
        seconds["degrees"] = time.perf_counter() - start
        self.query("set_meta", key="ingest", props={"complete": True})
        return IngestReport(users=len(stages[0][2]), items=len(items),
                            entities=len(ds.entities), triples=len(ds.triples),
                            interactions=len(interactions), seconds=seconds)


def _batches(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _opt(value: object) -> object:
    return None if value is None or pd.isna(value) else value


def _opt_int(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)
