"""Live writes over HTTP: writes accepted per second (interactions, items) and the time
from an accepted interaction to its effect on that user's next recommendation.

    uv run --extra cpu python -m eval.bench_live [--interactions 1000] [--items 100]
                                                 [--trials 120] [--neo4j 300] [--served]

Runs on the tiny catalogue (tests/data/tiny: 40 films, 60 users), built here in a
temporary home with short training, served by the real HTTP app (uvicorn on loopback,
one worker, the token set) over the in-memory graph: no MovieLens build and no Neo4j
are needed, so Neo4j's own write time (one transaction per write) is not in these
figures. Every accepted write is fsync'd to the journal, as in serving. `--neo4j N`
adds what the HTTP figures leave out: N write transactions (record_interaction for a
scratch user over the dataset's items, then upsert_item) and the history read that the
next recommendation makes, against the running Neo4j holding the served data (the
scratch user and items are deleted after). `--served` also measures the effect end to
end on the served build of the configured data (ML-100K by default: `rag-rec build`)
with the running Neo4j behind the same HTTP app: `--trials` scratch users, each given
a real user's latest 20 interactions, then one write and the next answer each; they
are deleted from the graph after, and the journal goes to a temporary home. Prints a
table and writes eval/results/live.json.

Effect: for each trial a user's current top item is recorded as an interaction, then
the user's next recommendation is asked for; the effect is there when that item has
left the list (it is history now) and the history's newest entry is it. The time to
effect is from the write's 200 to the end of that next answer (the write is
synchronous: the graph, journal and memory hold it before the 200).
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import uvicorn

from eval.common import latency_summary, print_table, write_results
from rag_rec import like
from rag_rec.api.http import create_app
from rag_rec.build import build, load_ranker
from rag_rec.memory_graph import InMemoryGraph
from rag_rec.recommender import Recommender
from rag_rec.settings import PROJECT_ROOT, Settings

TINY = PROJECT_ROOT / "tests" / "data" / "tiny"
TOKEN = "bench-live-token"


def tiny_settings(home: Path) -> Settings:
    """The test suite's tiny settings (tests/conftest.py), with a token for writes."""
    return Settings(home=home, data={"source": TINY, "kg_dir": TINY / "kg"},
                    embed={"kg_epochs": 3, "kg_eval_triples": 50},
                    sources={"sasrec": {"epochs": 2, "members": 1}},
                    scorer={"epochs": 2}, like={"epochs": 2},
                    api={"token": TOKEN, "use_llm": False})


class Served:
    """The HTTP app on a free loopback port, in a thread of this process."""

    def __init__(self, settings: Settings, rec: Recommender):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = uvicorn.Config(create_app(settings, make_recommender=lambda _: rec),
                                host="127.0.0.1", port=port, log_config=None,
                                access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                   headers={"Authorization": f"Bearer {TOKEN}"})

    def call(self, method: str, path: str, body: dict) -> dict:
        r = self.client.request(method, path, json=body)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)


def throughput(served: Served, calls: list[tuple[str, str, dict]], clients: int
               ) -> tuple[float, list[float]]:
    """Writes per second with `clients` concurrent connections, and each call's time."""
    latencies: list[float] = []
    chunks = [calls[c::clients] for c in range(clients)]

    def run(chunk: list[tuple[str, str, dict]]) -> None:
        with httpx.Client(base_url=served.client.base_url, headers=served.client.headers,
                          timeout=60) as client:
            for method, path, body in chunk:
                t0 = time.perf_counter()
                client.request(method, path, json=body).raise_for_status()
                latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(chunk,)) for chunk in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(calls) / (time.perf_counter() - t0), latencies


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--interactions", type=int, default=1000)
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--trials", type=int, default=120)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--neo4j", type=int, default=0,
                    help="also time N write transactions on the running Neo4j (0: skip)")
    ap.add_argument("--served", action="store_true",
                    help="also time the effect on the served build with the running Neo4j")
    args = ap.parse_args(argv)
    argv = argv if argv is not None else __import__("sys").argv[1:]
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-live-") as home:
        settings = tiny_settings(Path(home))
        t0 = time.perf_counter()
        artifacts = build(settings, None, progress=False, ingest=False)
        build_s = time.perf_counter() - t0
        graph = InMemoryGraph(artifacts.ds)
        rec = Recommender(settings, artifacts, load_ranker(settings, artifacts),
                          like.load_built(artifacts), connect_graph=lambda: graph,
                          llm=None, llm_error="benchmark: no LLM")
        rec.warm_up()
        served = Served(settings, rec)
        ds = artifacts.ds
        size = {"items": len(ds.items), "users": len(ds.users),
                "interactions": len(ds.interactions)}
        try:
            figures = measure(served, rec, artifacts, rng, args)
        finally:
            served.stop()
            rec.close()
    figures = {"dataset": "tiny (tests/data/tiny)", "dataset_size": size,
               "graph": "in-memory (rag_rec/memory_graph.py): Neo4j's write transaction "
                        "is not in these figures (`neo4j` and `served` have it)",
               "transport": "HTTP/1.1 on loopback, uvicorn one worker, keep-alive clients; "
                            "journal fsync'd per write",
               "tiny_build_s": round(build_s, 1),
               "command": "python -m eval.bench_live " + " ".join(argv or []), **figures}
    if args.neo4j:
        figures["neo4j"] = neo4j_writes(args.neo4j)
    if args.served:
        figures["served"] = served_effect(args.trials)
    path = write_results("live", figures)
    rows = [{"measure": k, **{m: v for m, v in figures[k].items()}}
            for k in ("interactions", "interactions_concurrent", "items")]
    print_table("live writes accepted over HTTP", rows)
    e = figures["effect"]
    print_table("time from an accepted interaction to its effect", [
        {"measure": name, **e[name]} for name in ("write", "next_recommendation",
                                                   "write_plus_next")])
    if "neo4j" in figures:
        print_table("Neo4j: one write transaction, and the history read after it", [
            {"measure": name, **figures["neo4j"][name]}
            for name in ("record_interaction", "user_history", "upsert_item")])
    if "served" in figures:
        e = figures["served"]
        print_table(f"the same on {e['graph']}", [
            {"measure": name, **e[name]} for name in ("write", "next_recommendation",
                                                       "write_plus_next")])
    print(f"effect visible in {e['visible']}/{e['trials']} trials; goal p95 <= 100 ms: "
          f"{'met' if e['next_recommendation']['p95_ms'] <= 100 else 'missed'}; "
          f"wrote {path}")
    return 0


def measure(served: Served, rec: Recommender, artifacts, rng: np.random.Generator,
            args: argparse.Namespace) -> dict:
    items = list(artifacts.items)
    served.call("POST", "/v1/recommendations", {"user_id": "1", "k": 10, "explain": False})
    figures: dict = {}
    # Interactions: new users (created by their first write), random catalogue items.
    calls = [("POST", "/v1/interactions", {"user_id": f"bench-{n % 200}",
                                           "item_id": items[int(rng.integers(len(items)))],
                                           "rating": float(rng.integers(1, 6)),
                                           "timestamp": 1_900_000_000 + n})
             for n in range(args.interactions)]
    half = len(calls) // 2
    for name, part, clients in (("interactions", calls[:half], 1),
                                ("interactions_concurrent", calls[half:], args.clients)):
        rate, lat = throughput(served, part, clients)
        figures[name] = {"writes_per_s": round(rate, 1), "clients": clients,
                         **latency_summary(lat)}
    item_calls = [("PUT", f"/v1/items/bench-item-{n}", {
        "title": f"Bench Film {n}", "year": 1990 + n % 10,
        "text": f"A {['comedy', 'thriller', 'space adventure', 'drama'][n % 4]} "
                f"about {['friends', 'a heist', 'explorers', 'a family'][n % 4]}, number {n}.",
        "categories": [["Comedy"], ["Thriller"], ["Sci-Fi"], ["Drama"]][n % 4]})
        for n in range(args.items)]
    rate, lat = throughput(served, item_calls, 1)
    figures["items"] = {"writes_per_s": round(rate, 1), "clients": 1, **latency_summary(lat)}
    figures["effect"] = effect(served, rec, args.trials)
    figures["writes_since_build"] = rec.write_status().writes_since_build
    return figures


def neo4j_writes(n: int) -> dict:
    """`n` record_interaction transactions for a scratch user (each followed by the
    history read the next recommendation makes) and `n // 10` upsert_item ones, on the
    graph the settings point at; what they wrote is deleted after."""
    from rag_rec.graph import GraphClient
    from rag_rec.settings import get_settings

    settings = get_settings()
    user, write_s, read_s, item_s = "bench-live-scratch", [], [], []
    with GraphClient(settings.graph, settings.home, autostart=False) as graph:
        meta = graph.meta()
        items = [f"{i}" for i in range(1, n + 1)]  # MovieLens ids; others are skipped
        try:
            for n_done, item in enumerate(items):
                t0 = time.perf_counter()
                rows = graph.write("record_interaction", user_id=user, item_id=item,
                                   rating=4.0, timestamp=None, now=1_900_000_000 + n_done)
                t1 = time.perf_counter()
                graph.user_history(user, limit=100_000)
                t2 = time.perf_counter()
                if rows:
                    write_s.append(t1 - t0)
                    read_s.append(t2 - t1)
            for k in range(max(1, n // 10)):
                t0 = time.perf_counter()
                graph.write("upsert_item", item={
                    "id": f"bench-live-item-{k}", "title": f"Bench {k}", "year": 1995,
                    "genres": ["Drama"], "abstract": "A bench item."},
                    links=[{"type": "HAS_GENRE", "entity_id": "genre:Drama"}], entities=[])
                item_s.append(time.perf_counter() - t0)
        finally:
            graph.query("delete_user", user_id=user)
            for k in range(max(1, n // 10)):
                graph.query("delete_item", item_id=f"bench-live-item-{k}")
    return {"graph": f"Neo4j at {graph.uri} holding {meta.get('dataset')} "
                     f"({meta.get('split')})",
            "record_interaction": latency_summary(write_s),
            "user_history": latency_summary(read_s),
            "user_history_note": "the scratch user's history grows to n items",
            "upsert_item": latency_summary(item_s)}


SEEDED_HISTORY = 20
"""Interactions each `--served` scratch user starts with: a real user's latest."""


def served_effect(trials: int) -> dict:
    """`effect` on the served build and the running Neo4j (see the module docstring)."""
    from pydantic import SecretStr

    from rag_rec.artifacts import load_artifacts
    from rag_rec.graph import GraphClient
    from rag_rec.settings import get_settings

    base = get_settings()
    artifacts = load_artifacts(base)
    ds = artifacts.ds
    sizes = ds.interactions["user_id"].value_counts()
    sources = [u for u in ds.user_ids if sizes.get(u, 0) >= SEEDED_HISTORY][:trials]
    scratch = [f"bench-live-served-{n}" for n in range(len(sources))]
    with tempfile.TemporaryDirectory(prefix="bench-live-") as home:
        settings = base.model_copy(update={"home": Path(home), "api": base.api.model_copy(
            update={"token": SecretStr(TOKEN), "use_llm": False})})
        rec = Recommender(settings, artifacts, load_ranker(base, artifacts),
                          like.load_built(artifacts),
                          connect_graph=lambda: GraphClient(base.graph, base.home,
                                                            autostart=False),
                          llm=None, llm_error="benchmark: no LLM")
        served, uri = None, rec.graph.uri
        try:
            for user, source in zip(scratch, sources):
                for past in ds.history(source)[-SEEDED_HISTORY:]:
                    rec.record_interaction(user, past.item_id, past.rating, past.timestamp)
            rec.warm_up()
            served = Served(settings, rec)
            figures = effect(served, rec, len(scratch), scratch)
        finally:
            if served is not None:
                served.stop()  # the app's shutdown closes the recommender
            rec.close()
            with GraphClient(base.graph, base.home, autostart=False) as graph:
                for user in scratch:
                    graph.query("delete_user", user_id=user)
    return {"graph": f"Neo4j at {uri} holding {ds.name} (the served build)",
            "users": f"{len(scratch)} scratch users, each seeded with a real user's "
                     f"latest {SEEDED_HISTORY} interactions, deleted after",
            **figures}


def effect(served: Served, rec: Recommender, trials: int,
           users: list[str] | None = None) -> dict:
    users = users or list(rec.artifacts.ds.users.index)
    write_s, next_s, visible = [], [], 0
    for n in range(trials):
        user = users[n % len(users)]
        body = {"user_id": user, "k": 10, "explain": False}
        before = [r["item"]["id"] for r in served.call("POST", "/v1/recommendations",
                                                       body)["items"]]
        if not before:
            continue
        t0 = time.perf_counter()
        served.call("POST", "/v1/interactions", {"user_id": user, "item_id": before[0],
                                                 "rating": 5})
        t1 = time.perf_counter()
        after = [r["item"]["id"] for r in served.call("POST", "/v1/recommendations",
                                                      body)["items"]]
        t2 = time.perf_counter()
        newest = rec.graph.user_history(user, limit=1)[0]["item_id"]
        visible += before[0] not in after and newest == before[0]
        write_s.append(t1 - t0)
        next_s.append(t2 - t1)
    return {"trials": len(next_s), "visible": visible,
            "write": latency_summary(write_s),
            "next_recommendation": latency_summary(next_s),
            "write_plus_next": latency_summary([a + b for a, b in zip(write_s, next_s)])}


if __name__ == "__main__":
    raise SystemExit(main())
