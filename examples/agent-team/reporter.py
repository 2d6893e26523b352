"""The last agent: collects partial sums in its memory file and writes result.txt when a job is complete.

Its parts and the planner's "expect" note may arrive in any order and across several turns, so what
it knows lives in memory.json in its own workspace, which persists between turns (sticky lifecycle).
"""

from __future__ import annotations

import json
from pathlib import Path

import team

memory_file = Path("memory.json")
memory = json.loads(memory_file.read_text()) if memory_file.exists() else {}
for message in team.messages():
    words = message["body"].split()
    if len(words) != 3 or words[0] not in ("expect", "part"):
        team.say(f"ignoring {message['body']!r}")
        continue
    job = memory.setdefault(words[1], {"expect": None, "parts": []})
    if words[0] == "expect":
        job["expect"] = int(words[2])
    else:
        job["parts"].append(int(words[2]))
for name, job in sorted(memory.items()):
    if job["expect"] is not None and len(job["parts"]) == job["expect"] and not job.get("done"):
        job["done"] = True
        line = f"job {name}: total {sum(job['parts'])}"
        with Path("result.txt").open("a") as out:
            out.write(line + "\n")
        team.say(f"RESULT {line}")
memory_file.write_text(json.dumps(memory, indent=1, sort_keys=True))
