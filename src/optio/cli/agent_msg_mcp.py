"""A stdio MCP server offering the inter-agent verbs (peers, send, broadcast, inbox) as tools.

A vendor CLI that speaks MCP (Claude Code, Codex, ...) can then call its peers as tools instead of
shelling out to ``optio agent-msg``. It is a small JSON-RPC 2.0 loop over newline-delimited stdio, as
the MCP specification's stdio transport defines (``initialize``, ``notifications/initialized``,
``ping``, ``tools/list``, ``tools/call``). The official SDK's current major version pulls in its own
HTTP stack for what is here four tools over stdin/stdout, so this stays on the standard library plus
the CLI's HTTP client. Tool failures are results with ``isError`` (the model sees them); protocol
mistakes are JSON-RPC errors.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import IO, Any

from optio.cli.agent_msg import AgentMsgClient
from optio.cli.client import ApiError

PROTOCOL_VERSIONS = ("2025-06-18", "2025-03-26", "2024-11-05")
SERVER_INFO = {"name": "optio-agent-msg", "version": "1"}

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602

TOOLS: list[dict[str, Any]] = [
    {"name": "peers", "description": "List the other persistent agents of your workspace (slug, name, state).",
     "inputSchema": {"type": "object", "properties": {}, "additionalProperties": False}},
    {"name": "send", "description": "Send a text message to one peer agent by slug; it wakes to read it.",
     "inputSchema": {"type": "object", "properties": {
         "slug": {"type": "string", "description": "The peer's slug"},
         "text": {"type": "string", "description": "The message"}},
         "required": ["slug", "text"], "additionalProperties": False}},
    {"name": "broadcast", "description": "Send a text message to every peer agent of your workspace.",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string", "description": "The message"}},
                     "required": ["text"], "additionalProperties": False}},
    {"name": "inbox", "description": "Read your own inbox, oldest first (pending=true: only unprocessed).",
     "inputSchema": {"type": "object", "properties": {"pending": {"type": "boolean"}},
                     "additionalProperties": False}},
]


class _BadParams(ValueError):
    pass


def _text(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise _BadParams(f"argument {name!r} must be a non-empty string")
    return value


class AgentMsgServer:
    """Answers one JSON-RPC message at a time; `client_factory` is called lazily so `initialize` needs no env."""

    def __init__(self, client_factory: Callable[[], AgentMsgClient] = AgentMsgClient.from_env) -> None:
        self._client_factory = client_factory
        self._client: AgentMsgClient | None = None

    def _agent(self) -> AgentMsgClient:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _call_tool(self, name: str, args: dict[str, Any]) -> Any:
        if name == "peers":
            return {"peers": self._agent().peers()}
        if name == "send":
            return self._agent().send(_text(args, "slug"), _text(args, "text"))
        if name == "broadcast":
            return self._agent().broadcast(_text(args, "text"))
        if name == "inbox":
            return {"messages": self._agent().inbox(bool(args.get("pending", False)))}
        raise _BadParams(f"unknown tool {name!r}")

    def handle(self, message: Any) -> dict[str, Any] | None:
        """The response to one message, or None for a notification (which gets no answer)."""
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or not isinstance(
                message.get("method"), str):
            return _error(message.get("id") if isinstance(message, dict) else None, INVALID_REQUEST,
                          "not a JSON-RPC 2.0 request")
        method, params = message["method"], message.get("params") or {}
        if "id" not in message:
            return None  # notifications/initialized, notifications/cancelled, ...
        msg_id = message["id"]
        if not isinstance(params, dict):
            return _error(msg_id, INVALID_PARAMS, "params must be an object")
        if method == "initialize":
            asked = params.get("protocolVersion")
            version = asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0]
            return _result(msg_id, {"protocolVersion": version, "capabilities": {"tools": {"listChanged": False}},
                                    "serverInfo": SERVER_INFO,
                                    "instructions": "Message the other persistent agents of your workspace."})
        if method == "ping":
            return _result(msg_id, {})
        if method == "tools/list":
            return _result(msg_id, {"tools": TOOLS})
        if method == "tools/call":
            name, args = params.get("name"), params.get("arguments") or {}
            if not isinstance(name, str) or not isinstance(args, dict):
                return _error(msg_id, INVALID_PARAMS, "tools/call needs a name and an arguments object")
            if name not in {tool["name"] for tool in TOOLS}:
                return _error(msg_id, INVALID_PARAMS, f"unknown tool {name!r}")
            try:
                out = self._call_tool(name, args)
            except _BadParams as exc:
                return _result(msg_id, _tool_error(str(exc)))
            except ApiError as exc:
                return _result(msg_id, _tool_error(exc.message))
            return _result(msg_id, {"content": [{"type": "text", "text": json.dumps(out)}],
                                    "structuredContent": out, "isError": False})
        return _error(msg_id, METHOD_NOT_FOUND, f"method {method!r} not found")

    def serve(self, stdin: IO[str], stdout: IO[str]) -> None:
        for line in stdin:
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                reply: dict[str, Any] | None = _error(None, PARSE_ERROR, "invalid JSON")
            else:
                reply = self.handle(message)
            if reply is not None:
                stdout.write(json.dumps(reply, separators=(",", ":")) + "\n")
                stdout.flush()


def _result(msg_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def _error(msg_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}


def _tool_error(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


def serve_stdio() -> None:
    """Run until stdin closes (the MCP client ends the session by closing it)."""
    AgentMsgServer().serve(sys.stdin, sys.stdout)
