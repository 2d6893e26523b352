"""The local model server speaks the wire shapes the vendor CLIs expect (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import json

import httpx
from tests.support.model_server import ModelServer, ToolCall, Turn

TOOLS = [{"name": "Write", "input_schema": {"type": "object"}}]


def sse_events(text: str) -> list[tuple[str | None, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        name = None
        data = ""
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        events.append((name, data))
    return events


def test_anthropic_streaming_replays_a_tool_call_then_text() -> None:
    turns = [
        Turn(text="Writing.", tool_calls=(ToolCall("Write", {"file_path": "a.txt", "content": "x"}),)),
        Turn(text="Done."),
    ]
    with ModelServer(turns) as server:
        body = {
            "model": "claude-sonnet-4-5",
            "stream": True,
            "tools": TOOLS,
            "messages": [{"role": "user", "content": "go"}],
        }
        first = httpx.post(f"{server.url}/v1/messages", json=body)
        events = sse_events(first.text)
        names = [n for n, _ in events]
        assert names[0] == "message_start" and names[-1] == "message_stop"
        starts = [json.loads(d)["content_block"] for n, d in events if n == "content_block_start"]
        assert [b["type"] for b in starts] == ["text", "tool_use"]
        partial = "".join(
            json.loads(d)["delta"].get("partial_json", "") for n, d in events if n == "content_block_delta"
        )
        assert json.loads(partial) == {"file_path": "a.txt", "content": "x"}
        delta = next(json.loads(d) for n, d in events if n == "message_delta")
        assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] == 80

        body["stream"] = False
        body["messages"] += [{"role": "assistant", "content": []}, {"role": "user", "content": "result"}]
        second = httpx.post(f"{server.url}/v1/messages", json=body).json()
        assert second["content"] == [{"type": "text", "text": "Done."}] and second["stop_reason"] == "end_turn"
        assert len(server.model_requests()) == 2


def test_failures_unknown_paths_and_side_calls() -> None:
    with ModelServer([Turn(text="ok")]) as server:
        server.fail_next(429, times=1, retry_after=2)
        limited = httpx.post(f"{server.url}/v1/messages", json={"messages": [], "tools": TOOLS})
        assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
        assert limited.json()["error"]["type"] == "rate_limit_error"
        assert httpx.post(f"{server.url}/v1/messages", json={"messages": [], "tools": TOOLS}).status_code == 200
        server.fail_next(401)
        denied = httpx.post(f"{server.openai_url}/responses", json={"input": [], "tools": [{}]})
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
        missing = httpx.get(f"{server.url}/v1/nothing-here")
        assert missing.status_code == 404 and "no route" in missing.json()["error"]["message"]
        side = httpx.post(f"{server.url}/v1/messages", json={"messages": [{"role": "user", "content": "title?"}]})
        assert side.json()["content"][0]["text"] == "Scripted reply."


def test_openai_chat_and_responses_shapes() -> None:
    turns = [Turn(tool_calls=(ToolCall("write", {"path": "a"}),)), Turn(text="Done.")]
    with ModelServer(turns) as server:
        chat = httpx.post(
            f"{server.openai_url}/chat/completions",
            json={
                "model": "gpt-4.1",
                "stream": True,
                "stream_options": {"include_usage": True},
                "tools": [{"type": "function"}],
                "messages": [{"role": "user", "content": "go"}],
            },
        )
        chunks = [json.loads(d) for _, d in sse_events(chat.text) if d != "[DONE]"]
        assert chat.text.rstrip().endswith("data: [DONE]")
        args = "".join(
            c["choices"][0]["delta"].get("tool_calls", [{}])[0].get("function", {}).get("arguments", "")
            for c in chunks
            if c["choices"]
        )
        assert json.loads(args) == {"path": "a"}
        assert chunks[-1]["usage"]["prompt_tokens"] == 1200

        responses = httpx.post(
            f"{server.openai_url}/responses",
            json={
                "model": "gpt-5",
                "stream": True,
                "tools": [{}],
                "input": [
                    {"type": "message", "role": "user", "content": []},
                    {"type": "function_call", "call_id": "c", "name": "write", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c", "output": "ok"},
                ],
            },
        )
        events = sse_events(responses.text)
        assert events[0][0] == "response.created" and events[-1][0] == "response.completed"
        done = json.loads(events[-1][1])["response"]
        assert done["output"][0]["content"][0]["text"] == "Done."
        assert done["usage"]["output_tokens"] == 80


def test_gemini_stream_generate_content_replays_text_chunks_then_a_function_call() -> None:
    turns = [
        Turn(text="Writing the file now, as the task asks.",
             tool_calls=(ToolCall("write_file", {"file_path": "a.txt", "content": "x"}),)),
        Turn(text="Done."),
    ]
    path = "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    tools = [{"functionDeclarations": [{"name": "write_file"}]}]
    with ModelServer(turns) as server:
        body = {"contents": [{"role": "user", "parts": [{"text": "go"}]}], "tools": tools}
        first = httpx.post(server.url + path, json=body, headers={"x-goog-api-key": "k"})
        chunks = [json.loads(d) for _, d in sse_events(first.text)]
        parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
        assert "".join(p.get("text", "") for p in parts) == "Writing the file now, as the task asks."
        assert len([p for p in parts if "text" in p]) > 1  # streamed in chunks
        assert parts[-1] == {"functionCall": {"name": "write_file", "args": {"file_path": "a.txt", "content": "x"}}}
        assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
        assert chunks[-1]["usageMetadata"]["promptTokenCount"] == 1200
        body["contents"] += [{"role": "model", "parts": parts}, {"role": "user", "parts": [{"text": "result"}]}]
        second = httpx.post(server.url + path.replace("streamGenerateContent?alt=sse", "generateContent"), json=body)
        assert second.json()["candidates"][0]["content"]["parts"] == [{"text": "Done."}]
        server.fail_next(429, times=1)
        limited = httpx.post(server.url + path, json=body)
        assert limited.status_code == 429 and limited.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
        assert len(server.model_requests()) == 3
        assert server.model_requests()[0].headers["x-goog-api-key"] == "k"
