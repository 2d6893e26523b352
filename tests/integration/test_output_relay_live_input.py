"""Live input through the output relay, on real processes: a stand-in for Claude Code's stream-json mode.

The stand-in replays each user message it reads (as `--replay-user-messages` does) and answers each with a
`result`; it exits when its stdin closes. The relay must forward inbox messages while the agent runs, report
the ones the agent took, and close the agent's stdin once it has answered them all, so the run ends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from optio.agents.claude_code import user_message
from optio.control import output_relay

AGENT = r'''
import json, sys, time
for n, line in enumerate(sys.stdin):
    msg = json.loads(line)
    text = msg["message"]["content"][0]["text"]
    print(json.dumps({"type": "user", "isReplay": True, "message": msg["message"]}), flush=True)
    if n == 0:
        time.sleep(1.5)  # working on the prompt: a message sent now arrives mid-turn
    print(json.dumps({"type": "result", "subtype": "success", "result": "answered " + text}), flush=True)
print(json.dumps({"type": "bye"}), flush=True)
'''


def start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    first = tmp_path / "input.jsonl"
    first.write_text(user_message("the prompt"))
    inbox = output_relay.make_inbox(tmp_path / "inbox")
    with first.open("rb") as stdin:
        proc = subprocess.Popen(output_relay.wrap([sys.executable, "-c", AGENT], inbox=inbox), stdin=stdin,
                                stdout=subprocess.PIPE)
    return proc, inbox


def records(proc: subprocess.Popen[bytes]) -> list[tuple[str, str]]:
    assert proc.stdout is not None
    return [output_relay.split(line.decode().rstrip("\n"), "?") for line in proc.stdout]


def test_a_message_sent_mid_turn_reaches_the_agent_and_is_reported_taken(tmp_path: Path) -> None:
    proc, inbox = start(tmp_path)
    assert proc.stdout is not None
    first = output_relay.split(proc.stdout.readline().decode().rstrip("\n"), "?")
    assert first[0] == "stdout" and json.loads(first[1])["isReplay"]
    assert output_relay.send_message(inbox, 7, "keep it short")
    rest = records(proc)
    assert proc.wait(timeout=20) == 0
    texts = [json.loads(t).get("result") for s, t in rest if s == "stdout"]
    assert "answered the prompt" in texts and "answered keep it short" in texts
    assert ("delivered", json.dumps({"delivered": 7})) in rest
    assert json.loads(rest[-1][1]) == {"type": "bye"}  # the relay closed its stdin after the last answer
    assert not output_relay.send_message(inbox, 8, "too late")  # nobody reads the inbox any more


def test_without_messages_the_agent_ends_after_its_first_answer(tmp_path: Path) -> None:
    proc, _ = start(tmp_path)
    started = time.monotonic()
    rest = records(proc)
    assert proc.wait(timeout=20) == 0 and time.monotonic() - started < 10
    assert not any(stream == "delivered" for stream, _ in rest)


def test_no_inbox_no_message(tmp_path: Path) -> None:
    assert not output_relay.send_message(tmp_path / "missing", 1, "x")
    plain = tmp_path / "plain"
    plain.write_text("")
    assert not output_relay.send_message(plain, 1, "x")
