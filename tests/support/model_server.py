"""A local model server that speaks the vendors' HTTP API shapes and replays a scripted conversation.

Vendor model APIs cannot be reached from tests, so the real vendor CLIs are pointed at this server
through their base-URL settings. It implements the parts of the wire protocols the CLIs use:

* Anthropic Messages API: ``POST /v1/messages`` (SSE streaming and plain JSON, text, thinking and
  ``tool_use`` blocks with ``input_json_delta``), ``POST /v1/messages/count_tokens``.
* OpenAI-compatible API: ``POST /v1/responses`` (SSE streaming and plain JSON, ``function_call`` items),
  ``POST /v1/chat/completions`` (streaming chunks and plain JSON, ``tool_calls``), ``GET /v1/models``.
* Gemini API: ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` (SSE ``GenerateContentResponse``
  chunks with ``text`` and ``functionCall`` parts) and ``:generateContent`` (plain JSON).

Which scripted turn answers a request is derived from the conversation the client sends: the number
of assistant turns already in it. Requests that offer no tools (title generation and similar side
calls) get a short text answer and do not consume the script. Every request is recorded, and the
server can be told to fail the next N model calls with 429 (with ``retry-after``) or 401.
Unknown paths are logged and answered with a 404 JSON error.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.http_listener import never_blocks_in_accept

log = logging.getLogger(__name__)

_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):024d}"


@dataclass(frozen=True)
class ToolCall:
    """A tool the scripted model asks the client to run, by the client's own tool name."""

    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Turn:
    """One scripted model response: optional thinking, optional text, then tool calls (if any)."""

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    thinking: str | None = None
    input_tokens: int = 1200
    output_tokens: int = 80
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class _Failure:
    status: int
    remaining: int
    retry_after: float | None


@dataclass
class ModelServer:
    """Threaded HTTP server on 127.0.0.1 with a random port; use as a context manager."""

    turns: Sequence[Turn]
    side_reply: str = "Scripted reply."
    requests: list[RecordedRequest] = field(default_factory=list)
    _failure: _Failure | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> ModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        server = self

        class Handler(_Handler):
            model_server = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        never_blocks_in_accept(self._httpd)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:4711`` (Anthropic clients append ``/v1/...``)."""
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_url(self) -> str:
        """Base URL for OpenAI-style clients, which expect the ``/v1`` prefix in the base."""
        return f"{self.url}/v1"

    # -- controls --------------------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``times`` model calls with ``status`` (429, 401, 500, ...)."""
        with self._lock:
            self._failure = _Failure(status=status, remaining=times, retry_after=retry_after)

    def model_requests(self) -> list[RecordedRequest]:
        """Recorded model calls (messages / responses / chat completions), in order."""
        model_paths = ("/v1/messages", "/v1/responses", "/v1/chat/completions")
        return [
            r for r in self.requests if r.path.split("?")[0] in model_paths or _gemini_call(r.path.split("?")[0])
        ]

    def _take_failure(self) -> _Failure | None:
        with self._lock:
            failure = self._failure
            if failure is None or failure.remaining <= 0:
                return None
            failure.remaining -= 1
            return failure

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def turn_for(self, assistant_turns: int) -> Turn:
        if assistant_turns < len(self.turns):
            return self.turns[assistant_turns]
        return Turn(text="Nothing more to do.")


# -- HTTP handler ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    model_server: ModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("model server: " + format, *args)

    def _read_body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _handle(self, method: str) -> None:
        body = self._read_body() if method == "POST" else None
        path = self.path.split("?")[0]
        self.model_server._record(
            RecordedRequest(
                method=method, path=self.path, headers={k.lower(): v for k, v in self.headers.items()}, body=body
            )
        )
        routes = {
            ("POST", "/v1/messages"): self._anthropic_messages,
            ("POST", "/v1/messages/count_tokens"): self._anthropic_count_tokens,
            ("POST", "/v1/responses"): self._openai_responses,
            ("POST", "/v1/chat/completions"): self._openai_chat,
            ("GET", "/v1/models"): self._openai_models,
        }
        route = routes.get((method, path))
        gemini = _gemini_call(path) if method == "POST" else None
        if gemini is not None:
            model, streaming = gemini
            self._gemini(body if isinstance(body, dict) else {}, model, streaming=streaming)
            return
        if route is None:
            log.info("model server: unknown %s %s", method, self.path)
            self._json(404, {"error": {"type": "not_found_error", "message": f"no route {method} {path}"}})
            return
        route(body if isinstance(body, dict) else {})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    # -- plumbing --------------------------------------------------------------------------------

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: Iterator[tuple[str | None, Any]]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        for name, data in events:
            chunk = "" if name is None else f"event: {name}\n"
            chunk += f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
            self.wfile.write(chunk.encode())
            self.wfile.flush()

    def _maybe_fail(self, flavour: str) -> bool:
        failure = self.model_server._take_failure()
        if failure is None:
            return False
        headers = {}
        if failure.retry_after is not None:
            headers["retry-after"] = f"{failure.retry_after:g}"
        kinds = {
            401: ("authentication_error", "invalid x-api-key", "invalid_api_key"),
            429: ("rate_limit_error", "Rate limited: too many requests", "rate_limit_exceeded"),
            529: ("overloaded_error", "Overloaded", "server_overloaded"),
        }
        a_type, message, o_code = kinds.get(failure.status, ("api_error", "Internal error", "server_error"))
        if flavour == "anthropic":
            payload: dict[str, Any] = {"type": "error", "error": {"type": a_type, "message": message}}
        elif flavour == "gemini":
            statuses = {401: "UNAUTHENTICATED", 429: "RESOURCE_EXHAUSTED", 529: "UNAVAILABLE"}
            if failure.status == 401:
                message = "API key not valid. Please pass a valid API key."
            payload = {
                "error": {"code": failure.status, "message": message,
                          "status": statuses.get(failure.status, "INTERNAL")}
            }
        else:
            o_type = "invalid_request_error" if failure.status == 401 else o_code
            if failure.status == 401:
                message = "Incorrect API key provided."
            payload = {"error": {"message": message, "type": o_type, "param": None, "code": o_code}}
        self._json(failure.status, payload, headers)
        return True

    # -- Anthropic Messages API ------------------------------------------------------------------

    def _anthropic_count_tokens(self, body: dict[str, Any]) -> None:
        self._json(200, {"input_tokens": 42})

    def _anthropic_messages(self, body: dict[str, Any]) -> None:
        if self._maybe_fail("anthropic"):
            return
        model = str(body.get("model") or "claude-sonnet-4-5")
        messages = body.get("messages") or []
        if body.get("tools"):
            turn = self.model_server.turn_for(sum(1 for m in messages if m.get("role") == "assistant"))
        else:
            turn = Turn(text=self.model_server.side_reply, input_tokens=50, output_tokens=5)
        content = _anthropic_content(turn)
        stop_reason = "tool_use" if turn.tool_calls else "end_turn"
        usage = {
            "input_tokens": turn.input_tokens,
            "cache_creation_input_tokens": turn.cache_creation_tokens,
            "cache_read_input_tokens": turn.cache_read_tokens,
            "output_tokens": turn.output_tokens,
        }
        message_id = _new_id("msg")
        if not body.get("stream"):
            self._json(
                200,
                {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop_reason,
                    "stop_sequence": None,
                    "usage": usage,
                },
            )
            return
        self._sse(_anthropic_stream(message_id, model, content, stop_reason, usage))

    # -- OpenAI Responses API --------------------------------------------------------------------

    def _openai_responses(self, body: dict[str, Any]) -> None:
        if self._maybe_fail("openai"):
            return
        model = str(body.get("model") or "gpt-5")
        items = body.get("input")
        items = items if isinstance(items, list) else []
        if body.get("tools"):
            turn = self.model_server.turn_for(_responses_assistant_turns(items))
        else:
            turn = Turn(text=self.model_server.side_reply, input_tokens=50, output_tokens=5)
        output = _responses_output(turn)
        response = {
            "id": _new_id("resp"),
            "object": "response",
            "created_at": int(time.time()),
            "model": model,
            "status": "completed",
            "output": output,
            "usage": {
                "input_tokens": turn.input_tokens + turn.cache_read_tokens,
                "input_tokens_details": {"cached_tokens": turn.cache_read_tokens},
                "output_tokens": turn.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": turn.input_tokens + turn.cache_read_tokens + turn.output_tokens,
            },
        }
        if not body.get("stream"):
            self._json(200, response)
            return
        self._sse(_responses_stream(response))

    # -- OpenAI Chat Completions API -------------------------------------------------------------

    def _openai_chat(self, body: dict[str, Any]) -> None:
        if self._maybe_fail("openai"):
            return
        model = str(body.get("model") or "gpt-4o")
        messages = body.get("messages") or []
        if body.get("tools"):
            turn = self.model_server.turn_for(sum(1 for m in messages if m.get("role") == "assistant"))
        else:
            turn = Turn(text=self.model_server.side_reply, input_tokens=50, output_tokens=5)
        completion_id = _new_id("chatcmpl")
        tool_calls = [
            {
                "id": _new_id("call"),
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.input)},
            }
            for call in turn.tool_calls
        ]
        finish = "tool_calls" if tool_calls else "stop"
        usage = {
            "prompt_tokens": turn.input_tokens + turn.cache_read_tokens,
            "completion_tokens": turn.output_tokens,
            "total_tokens": turn.input_tokens + turn.cache_read_tokens + turn.output_tokens,
            "prompt_tokens_details": {"cached_tokens": turn.cache_read_tokens},
        }
        created = int(time.time())
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": turn.text}
            if tool_calls:
                message["tool_calls"] = tool_calls
            self._json(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                },
            )
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self._sse(_chat_stream(completion_id, created, model, turn, tool_calls, finish, usage, include_usage))

    # -- Gemini API (generativelanguage) -----------------------------------------------------------

    def _gemini(self, body: dict[str, Any], model: str, *, streaming: bool) -> None:
        if self._maybe_fail("gemini"):
            return
        contents = body.get("contents") or []
        if body.get("tools"):
            turn = self.model_server.turn_for(sum(1 for c in contents if c.get("role") == "model"))
        else:
            turn = Turn(text=self.model_server.side_reply, input_tokens=50, output_tokens=5)
        parts: list[dict[str, Any]] = []
        if turn.thinking:
            parts.append({"text": turn.thinking, "thought": True})
        if turn.text:
            parts.append({"text": turn.text})
        for call in turn.tool_calls:
            parts.append({"functionCall": {"name": call.name, "args": call.input}})
        usage = {
            "promptTokenCount": turn.input_tokens + turn.cache_read_tokens,
            "candidatesTokenCount": turn.output_tokens,
            "totalTokenCount": turn.input_tokens + turn.cache_read_tokens + turn.output_tokens,
            "cachedContentTokenCount": turn.cache_read_tokens,
        }
        response_id = _new_id("gem")
        if not streaming:
            candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
            self._json(200, {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model,
                             "responseId": response_id})
            return
        self._sse(_gemini_stream(parts, usage, model, response_id))

    def _openai_models(self, body: dict[str, Any]) -> None:
        names = ["gpt-5", "gpt-5-codex", "gpt-4o", "gpt-4.1"]
        self._json(
            200,
            {
                "object": "list",
                "data": [{"id": n, "object": "model", "owned_by": "optio-test"} for n in names],
            },
        )


# -- wire-format builders -------------------------------------------------------------------------


def _gemini_call(path: str) -> tuple[str, bool] | None:
    """``(model, streaming)`` for a Gemini ``/v1beta/models/{model}:(stream)GenerateContent`` path."""
    prefix = "/v1beta/models/"
    if not path.startswith(prefix) or ":" not in path:
        return None
    model, _, method = path[len(prefix) :].partition(":")
    if method not in ("streamGenerateContent", "generateContent"):
        return None
    return model, method == "streamGenerateContent"


def _gemini_stream(
    parts: list[dict[str, Any]], usage: dict[str, int], model: str, response_id: str
) -> Iterator[tuple[str | None, Any]]:
    """Text arrives in chunks, each function call in one chunk, and the last chunk has the finish reason."""
    pieces: list[dict[str, Any]] = []
    for part in parts:
        if "text" in part:
            pieces += [{**part, "text": piece} for piece in _chunks(part["text"])]
        else:
            pieces.append(part)
    pieces = pieces or [{"text": ""}]
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [piece]}, "index": 0}
        chunk: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": response_id}
        if last:
            candidate["finishReason"] = "STOP"
            chunk["usageMetadata"] = usage
        yield None, chunk


def _anthropic_content(turn: Turn) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    if turn.thinking:
        content.append({"type": "thinking", "thinking": turn.thinking, "signature": "c2lnbmF0dXJl"})
    if turn.text:
        content.append({"type": "text", "text": turn.text})
    for call in turn.tool_calls:
        content.append({"type": "tool_use", "id": _new_id("toolu"), "name": call.name, "input": call.input})
    return content


def _chunks(text: str, size: int = 24) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _anthropic_stream(
    message_id: str, model: str, content: list[dict[str, Any]], stop_reason: str, usage: dict[str, int]
) -> Iterator[tuple[str | None, Any]]:
    start_usage = {**usage, "output_tokens": 1}
    yield (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        },
    )
    yield "ping", {"type": "ping"}
    for index, block in enumerate(content):
        kind = block["type"]
        if kind == "text":
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for piece in _chunks(block["text"]):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
        elif kind == "thinking":
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                },
            )
            for piece in _chunks(block["thinking"]):
                delta = {"type": "thinking_delta", "thinking": piece}
                yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
            delta = {"type": "signature_delta", "signature": block["signature"]}
            yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
            for piece in _chunks(json.dumps(block["input"])):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _responses_assistant_turns(items: list[Any]) -> int:
    """Counts model turns in a Responses ``input`` list: runs of model-side items."""
    turns = 0
    in_model_run = False
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        model_side = kind in ("function_call", "reasoning", "local_shell_call", "custom_tool_call") or (
            kind == "message" and item.get("role") == "assistant"
        )
        if model_side and not in_model_run:
            turns += 1
        in_model_run = model_side
    return turns


def _responses_output(turn: Turn) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = []
    if turn.thinking:
        output.append(
            {
                "type": "reasoning",
                "id": _new_id("rs"),
                "summary": [{"type": "summary_text", "text": turn.thinking}],
            }
        )
    if turn.text:
        output.append(
            {
                "type": "message",
                "id": _new_id("msg"),
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": turn.text, "annotations": []}],
            }
        )
    for call in turn.tool_calls:
        output.append(
            {
                "type": "function_call",
                "id": _new_id("fc"),
                "call_id": _new_id("call"),
                "name": call.name,
                "arguments": json.dumps(call.input),
                "status": "completed",
            }
        )
    return output


def _responses_stream(response: dict[str, Any]) -> Iterator[tuple[str | None, Any]]:
    seq = itertools.count()
    pending = {**response, "status": "in_progress", "output": [], "usage": None}
    yield "response.created", {"type": "response.created", "sequence_number": next(seq), "response": pending}
    yield (
        "response.in_progress",
        {"type": "response.in_progress", "sequence_number": next(seq), "response": pending},
    )
    for index, item in enumerate(response["output"]):
        if item["type"] == "message":
            added = {**item, "status": "in_progress", "content": []}
        elif item["type"] == "function_call":
            added = {**item, "status": "in_progress", "arguments": ""}
        else:
            added = {**item, "summary": []}
        yield (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "sequence_number": next(seq),
                "output_index": index,
                "item": added,
            },
        )
        if item["type"] == "message":
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": "", "annotations": []}
            yield (
                "response.content_part.added",
                {
                    "type": "response.content_part.added",
                    "sequence_number": next(seq),
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "part": part,
                },
            )
            for piece in _chunks(text):
                yield (
                    "response.output_text.delta",
                    {
                        "type": "response.output_text.delta",
                        "sequence_number": next(seq),
                        "item_id": item["id"],
                        "output_index": index,
                        "content_index": 0,
                        "delta": piece,
                    },
                )
            yield (
                "response.output_text.done",
                {
                    "type": "response.output_text.done",
                    "sequence_number": next(seq),
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "text": text,
                },
            )
            yield (
                "response.content_part.done",
                {
                    "type": "response.content_part.done",
                    "sequence_number": next(seq),
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "part": {**part, "text": text},
                },
            )
        elif item["type"] == "function_call":
            for piece in _chunks(item["arguments"]):
                yield (
                    "response.function_call_arguments.delta",
                    {
                        "type": "response.function_call_arguments.delta",
                        "sequence_number": next(seq),
                        "item_id": item["id"],
                        "output_index": index,
                        "delta": piece,
                    },
                )
            yield (
                "response.function_call_arguments.done",
                {
                    "type": "response.function_call_arguments.done",
                    "sequence_number": next(seq),
                    "item_id": item["id"],
                    "output_index": index,
                    "arguments": item["arguments"],
                },
            )
        yield (
            "response.output_item.done",
            {
                "type": "response.output_item.done",
                "sequence_number": next(seq),
                "output_index": index,
                "item": item,
            },
        )
    yield (
        "response.completed",
        {"type": "response.completed", "sequence_number": next(seq), "response": response},
    )


def _chat_stream(
    completion_id: str,
    created: int,
    model: str,
    turn: Turn,
    tool_calls: list[dict[str, Any]],
    finish: str,
    usage: dict[str, Any],
    include_usage: bool,
) -> Iterator[tuple[str | None, Any]]:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    yield None, chunk({"role": "assistant", "content": ""})
    if turn.text:
        for piece in _chunks(turn.text):
            yield None, chunk({"content": piece})
    for index, call in enumerate(tool_calls):
        head = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        yield None, chunk({"tool_calls": [head]})
        for piece in _chunks(call["function"]["arguments"]):
            yield None, chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield None, chunk({}, finish)
    if include_usage:
        yield (
            None,
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            },
        )
    yield None, "[DONE]"
