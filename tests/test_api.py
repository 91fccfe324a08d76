"""The service over real HTTP (uvicorn subprocess), the MCP server over stdio, and the
LlamaIndex tool, all against the real Neo4j and vLLM."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rag_rec.models import Recommendations
from rag_rec.settings import PROJECT_ROOT

TOKEN = "test-token-3f9a2c"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, tmp: Path, **env: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"service-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rag_rec.cli", "serve", "--port", str(self.port)],
            env={**os.environ, "RAG_REC_API__TOKEN": TOKEN, **env}, cwd=PROJECT_ROOT,
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/openapi.json", timeout=2)
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.log.read_text())
                time.sleep(0.5)
        raise RuntimeError(f"service did not start:\n{self.log.read_text()}")

    def post(self, body, token: str | None = TOKEN, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        content = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return httpx.post(f"{self.url}/v1/recommendations", content=content, timeout=300,
                          headers={**headers, "content-type": "application/json"}, **kw)

    def get(self, path: str, token: str | None = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=120)

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        return self.log.read_text()


@pytest.fixture(scope="module")
def service(artifacts, llm, tmp_path_factory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("svc"))
    yield svc
    svc.stop()


@pytest.mark.llm
def test_recommendations_over_http(service: Service, dataset) -> None:
    r = service.post({"user_id": "42", "k": 3})
    assert r.status_code == 200, r.text
    result = Recommendations.model_validate(r.json())
    seen = set(dataset.interactions[dataset.interactions.user_id == "42"].item_id)
    assert len(result.items) == 3 and not seen & {i.item.id for i in result.items}
    assert all(i.explanation for i in result.items) and not result.degraded
    assert r.headers["x-request-id"]


def test_auth_is_required(service: Service) -> None:
    assert service.post({"user_id": "42"}, token=None).status_code == 401
    assert service.post({"user_id": "42"}, token="wrong").status_code == 401
    assert service.get("/v1/items/89", token=None).status_code == 401
    assert service.get("/healthz", token=None).status_code == 200


@pytest.mark.parametrize("body,fragment", [
    (b'{"user_id": "42", ', "JSON decode error"),
    ({"user_id": "42", "k": "ten"}, "valid integer"),
    ({"user_id": "42", "colour": "blue"}, "Extra inputs are not permitted"),
    ({"user_id": "42", "k": 1000}, "less than or equal to 100"),
    ({"user_id": "42", "k": 0}, "greater than or equal to 1"),
    ({}, "give user_id, liked_item_ids, text or a session_id"),
    ({"user_id": "42", "filters": {"genres": {"any": ["Polka"]}}}, "nearest"),
    ({"user_id": "42", "filters": {"years": {"start": 2000, "end": 1990}}},
     "years.start 2000 is after years.end 1990"),
    ({"liked_item_ids": ["1"] * 51}, "at most 50 items"),
])
def test_bad_requests_get_clear_4xx(service: Service, body, fragment: str) -> None:
    r = service.post(body)
    assert r.status_code == 422, r.text
    assert fragment in r.text


def test_oversized_body_is_refused(service: Service) -> None:
    r = service.post({"text": "x" * 20_000})
    assert r.status_code == 413 and "over" in r.json()["detail"]


def test_lookups_and_unknown_ids(service: Service) -> None:
    item = service.get("/v1/items/89").json()
    assert item["item"]["title"] == "Blade Runner"
    assert any(f["entity_name"] == "Ridley Scott" and f["relation"] == "directed_by"
               for f in item["facts"])
    history = service.get("/v1/users/42/history?limit=1000").json()
    assert len(history) == 183 and history[0]["timestamp"] >= history[-1]["timestamp"]
    assert len(service.get("/v1/users/42/history").json()) == 50  # the default page
    assert all(h["item"]["abstract"] is None for h in history)  # compact
    assert service.get("/v1/users/nobody/history").status_code == 404
    missing = service.get("/v1/items/99999")
    assert missing.status_code == 404 and "unknown item id" in missing.json()["detail"]


@pytest.mark.llm
def test_cold_start_over_http(service: Service) -> None:
    unknown = service.post({"user_id": "brand-new", "k": 2, "explain": False})
    assert unknown.status_code == 404 and unknown.json()["error"] == "UnknownUser"
    new = service.post({"liked_item_ids": ["89"], "text": "dark sci-fi", "k": 2})
    assert new.status_code == 200 and new.json()["cold_start"]
    both = service.post({"user_id": "42", "text": "tonight: a 1990s comedy, nothing with "
                                                  "Jim Carrey", "k": 5, "explain": False})
    body = both.json()
    assert both.status_code == 200 and body["user_id"] == "42"
    assert {"genres", "years", "people"} <= {c["kind"] for c in body["understood"]
                                              ["constraints"]}
    assert all("Comedy" in r["item"]["genres"] and 1990 <= r["item"]["year"] <= 1999
               for r in body["items"])
    # The Cable Guy stars Jim Carrey, which the graph cannot tell (no DBpedia facts): it
    # is left out, and the answer says why.
    assert "122" not in {r["item"]["id"] for r in body["items"]}
    assert any("does not know" in note for note in body["notes"])


def test_health_reports_dependencies(service: Service) -> None:
    health = service.get("/healthz").json()
    assert health["neo4j"] == "ok" and health["llm"] == "ok" and health["status"] == "ok"


def test_llm_down_is_200_degraded_and_neo4j_down_is_503(artifacts, tmp_path: Path) -> None:
    no_llm = Service(tmp_path, RAG_REC_LLM_URL="http://127.0.0.1:9/v1")
    try:
        r = no_llm.post({"user_id": "42", "k": 2})
        assert r.status_code == 200 and r.json()["degraded"]
        assert all(i["explanation"]["source"] == "template" for i in r.json()["items"])
        assert no_llm.get("/healthz").json()["status"] == "degraded"
    finally:
        no_llm.stop()
    no_graph = Service(tmp_path, NEO4J_URI="bolt://127.0.0.1:1", NEO4J_PASSWORD="x")
    try:
        r = no_graph.post({"user_id": "42"})
        assert r.status_code == 503 and "Neo4j is not reachable" in r.json()["detail"]
        assert no_graph.get("/healthz").status_code == 503
    finally:
        log = no_graph.stop()
    assert TOKEN not in log and "Bearer" not in log
    assert '"status": 503' in log  # structured JSON access log


def test_refuses_public_bind_without_token() -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAG_REC_API__TOKEN"}
    proc = subprocess.run([sys.executable, "-m", "rag_rec.cli", "serve", "--host", "0.0.0.0"],
                          env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "refusing to listen on 0.0.0.0" in proc.stderr


@pytest.mark.llm
def test_mcp_client_calls_the_tools(artifacts, llm) -> None:
    from mcp.client.client import Client
    from mcp.client.stdio import StdioServerParameters

    async def session():
        params = StdioServerParameters(command=sys.executable, args=["-m", "rag_rec.api.mcp"],
                                       env=dict(os.environ), cwd=str(PROJECT_ROOT))
        async with Client(params) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            rec = await client.call_tool("recommend", {
                "user_id": "42", "k": 2, "text": "a 1990s comedy, nothing with Jim Carrey",
                "session_id": "mcp-client"})
            again = await client.call_tool("recommend", {
                "user_id": "42", "k": 2, "text": "not that one", "session_id": "mcp-client"})
            similar = await client.call_tool("similar_items", {"item_id": "89", "k": 3})
            explained = await client.call_tool("explain_item", {"item_id": "326",
                                                                "user_id": "42"})
            return tools, rec, again, similar, explained

    tools, rec, again, similar, explained = asyncio.run(session())
    assert {"recommend", "search", "explain_item", "similar_items"} <= tools
    answer = json.loads(rec.content[0].text)
    assert not rec.is_error and len(answer["items"]) == 2 and len(rec.content) == 1
    assert rec.structured_content is None  # the answer once, as compact JSON text
    first = answer["items"][0]["item"]["id"]
    assert first not in {r["item"]["id"] for r in json.loads(again.content[0].text)["items"]}
    assert not similar.is_error and "Blade Runner" not in similar.content[0].text
    assert not explained.is_error and "Ridley Scott" in explained.content[0].text


@pytest.mark.llm
def test_llamaindex_tool_and_retriever(settings, artifacts, llm) -> None:
    from rag_rec.api.llamaindex import RecommendationRetriever, recommend_tool
    from rag_rec.recommender import Recommender

    with Recommender.from_settings(settings) as rec:
        tool = recommend_tool(rec)
        assert tool.metadata.name == "recommend_movies"
        schema = tool.metadata.get_parameters_dict()
        assert {"user_id", "liked_item_ids", "text", "k"} <= set(schema["properties"])
        output = tool.call(user_id="42", k=2)
        assert output.content.startswith("1. ") and "2. " in output.content
        nodes = RecommendationRetriever(rec, k=3).retrieve("user:42")
        assert len(nodes) == 3 and all(n.node.metadata["item_id"] for n in nodes)
