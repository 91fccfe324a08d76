"""The MCP server over real stdio with malformed and hostile input (issue 13):
every request gets an answer (a JSON-RPC error, or a tool error carrying the HTTP API's
typed message), and nothing hangs the client."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from rag_rec.settings import PROJECT_ROOT


class StdioPeer:
    """`python -m rag_rec.api.mcp` spoken to line by line, every read bounded."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rag_rec.api.mcp"], cwd=PROJECT_ROOT,
            env={**os.environ, "RAG_REC_LLM_URL": "http://127.0.0.1:9/v1"},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def send(self, raw: bytes | str | dict) -> None:
        if isinstance(raw, dict):
            raw = json.dumps(raw)  # ensure_ascii: "\ud800" goes out as its JSON escape
        self.proc.stdin.write((raw.encode() if isinstance(raw, str) else raw) + b"\n")
        self.proc.stdin.flush()

    def reply(self, timeout_s: float = 120) -> dict:
        try:
            line = self.lines.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"no reply within {timeout_s}s") from None
        return json.loads(line)

    def call(self, request_id: int, tool: str, arguments: dict) -> dict:
        self.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                   "params": {"name": tool, "arguments": arguments}})
        answer = self.reply()
        assert answer["id"] == request_id, answer
        return answer

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def peer(artifacts) -> Iterator[StdioPeer]:
    p = StdioPeer()
    p.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "probe", "version": "0"}}})
    assert p.reply()["id"] == 0
    p.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    yield p
    p.close()


@pytest.mark.parametrize("line,code", [
    (b'{"jsonrpc": "2.0", "id": 1, "method": ', -32700),
    (b"not json at all", -32700),
    (b"\xff\xfe garbage", -32700),
    (b"[1,2,3]", -32600),
    (b'{"jsonrpc": "2.0", "id": 7}', -32600),
    (b'"just a string"', -32600),
    (b"null", -32600),
])
def test_malformed_lines_get_jsonrpc_errors(peer: StdioPeer, line: bytes, code: int) -> None:
    peer.send(line)
    answer = peer.reply(timeout_s=30)
    assert answer["error"]["code"] == code, answer
    if code == -32600 and b'"id": 7' in line:
        assert answer["id"] == 7


def test_surrogate_argument_is_answered_not_hung(peer: StdioPeer) -> None:
    answer = peer.call(11, "recommend", {"user_id": "\ud800"})
    assert answer["error"]["code"] == -32602
    assert "params.arguments.user_id" in answer["error"]["message"]


@pytest.mark.parametrize("tool,arguments,message", [
    ("recommend", {"user_id": "42", "k": 0},
     "InvalidRequest: k: Input should be greater than or equal to 1"),
    ("recommend", {"user_id": "42", "k": 100000},
     "InvalidRequest: k: Input should be less than or equal to 100"),
    ("recommend", {}, "InvalidRequest: Value error, give user_id"),
    ("explain_item", {"item_id": "99999"}, "UnknownItem: unknown item id '99999'"),
    ("explain_item", {"item_id": "89", "user_id": "nobody"},
     "UnknownUser: unknown user id 'nobody'"),
    ("similar_items", {"item_id": "99999"}, "UnknownItem: unknown item id '99999'"),
    ("similar_items", {"item_id": "89", "k": 100000}, "less than or equal to 100"),
])
def test_tool_errors_carry_the_typed_message(peer: StdioPeer, tool: str, arguments: dict,
                                             message: str) -> None:
    answer = peer.call(20, tool, arguments)
    result = answer["result"]
    assert result["isError"] and message in result["content"][0]["text"], result


def test_still_serving_after_the_abuse(peer: StdioPeer) -> None:
    answer = peer.call(30, "similar_items", {"item_id": "89", "k": 2})
    assert not answer["result"].get("isError") and "Blade Runner" not in json.dumps(answer)
