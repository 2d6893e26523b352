"""What the three example agents share: reading the messages a turn drained, and sending with `optio agent-msg`.

A turn's prompt carries its messages as JSON envelopes, one per line, between begin/end markers; the
script agent also gets the prompt on stdin and in the file named by OPTIO_PROMPT_FILE. Only the
standard library is used, so the scripts run under any Python 3 the sandbox shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def prompt() -> str:
    path = os.environ.get("OPTIO_PROMPT_FILE")
    return Path(path).read_text() if path else sys.stdin.read()


def messages(text: str | None = None) -> list[dict]:
    """The envelopes of this turn's messages, oldest first."""
    found = []
    for line in (prompt() if text is None else text).splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            envelope = json.loads(line)
        except ValueError:
            continue
        if isinstance(envelope, dict) and "body" in envelope:
            found.append(envelope)
    return found


def send(slug: str, text: str) -> None:
    """`optio agent-msg send`: the turn's OPTIO_API_URL and OPTIO_AGENT_TOKEN do the rest."""
    subprocess.run(["optio", "agent-msg", "send", slug, text], check=True)


def say(text: str) -> None:
    print(text, flush=True)
