"""`optio agent-msg mcp` speaks MCP over stdio: the handshake, the tool list and errors, from a real process.

Tool calls that reach a real server are in tests/e2e/test_agent_team.py; here the process runs without
a turn's environment, so a tool call must come back as a tool error the model can read, not a crash.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from optio.cli.agent_msg import API_URL_ENV, TOKEN_ENV


@pytest.fixture
def server() -> Any:
    env = {k: v for k, v in os.environ.items() if k not in (API_URL_ENV, TOKEN_ENV)}
    proc = subprocess.Popen([sys.executable, "-m", "optio.cli.main", "agent-msg", "mcp"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def rpc(proc: subprocess.Popen[str], message: dict[str, Any] | str) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else "no answer"
    return dict(json.loads(line))


def test_handshake_tools_and_errors_over_stdio(server: subprocess.Popen[str]) -> None:
    init = rpc(server, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}})
    assert init["id"] == 1
    assert init["result"]["protocolVersion"] == "2025-06-18"
    assert init["result"]["capabilities"]["tools"] == {"listChanged": False}
    assert init["result"]["serverInfo"]["name"] == "optio-agent-msg"
    # A notification gets no answer: the next line read is the ping's.
    assert server.stdin is not None
    server.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
    assert rpc(server, {"jsonrpc": "2.0", "id": "p", "method": "ping"}) == {"jsonrpc": "2.0", "id": "p",
                                                                            "result": {}}
    tools = rpc(server, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})["result"]["tools"]
    assert [t["name"] for t in tools] == ["peers", "send", "broadcast", "inbox"]
    send = next(t for t in tools if t["name"] == "send")
    assert send["inputSchema"]["required"] == ["slug", "text"]

    outside = rpc(server, {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                           "params": {"name": "peers", "arguments": {}}})["result"]
    assert outside["isError"] is True and TOKEN_ENV in outside["content"][0]["text"]
    missing = rpc(server, {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                           "params": {"name": "send", "arguments": {"slug": "x"}}})["result"]
    assert missing["isError"] is True
    assert rpc(server, {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                        "params": {"name": "nope", "arguments": {}}})["error"]["code"] == -32602
    assert rpc(server, {"jsonrpc": "2.0", "id": 6, "method": "resources/list"})["error"]["code"] == -32601
    assert rpc(server, "{not json")["error"]["code"] == -32700
    assert rpc(server, {"id": 7, "method": "ping"})["error"]["code"] == -32600

    server.stdin.close()  # the client ends the session by closing stdin
    assert server.wait(10) == 0


def test_an_older_protocol_version_is_answered_in_kind(server: subprocess.Popen[str]) -> None:
    init = rpc(server, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "old", "version": "0"}}})
    assert init["result"]["protocolVersion"] == "2024-11-05"
    unknown = rpc(server, {"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"protocolVersion": "1999"}})
    assert unknown["result"]["protocolVersion"] == "2025-06-18"
