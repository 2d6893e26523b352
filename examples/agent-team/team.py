"""What the three example agents share: reading the messages a turn drained, and sending with `optio agent-msg`.

A turn's prompt carries its messages as JSON envelopes, one per line, between the
``=== BEGIN OPTIO MESSAGES v1 ===`` and ``=== END OPTIO MESSAGES ===`` lines; the
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


BEGIN = "=== BEGIN OPTIO MESSAGES"
END = "=== END OPTIO MESSAGES"


def messages(text: str | None = None) -> list[dict]:
    """The envelopes of this turn's messages, oldest first (fields: v, id, from, type, created_at, body)."""
    found, inside = [], False
    for line in (prompt() if text is None else text).splitlines():
        if line.startswith(BEGIN):
            inside = True
        elif line.startswith(END):
            inside = False
        elif inside and line.strip():
            found.append(json.loads(line))
    return found


def send(slug: str, text: str) -> None:
    """`optio agent-msg send`: the turn's OPTIO_API_URL and OPTIO_AGENT_TOKEN do the rest."""
    subprocess.run(["optio", "agent-msg", "send", slug, text], check=True)


def say(text: str) -> None:
    print(text, flush=True)
