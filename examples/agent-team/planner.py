"""The first agent: splits a person's "sum: 1 2 3 ..." request into parts for the adder.

It tells the reporter how many parts to expect, then sends each part to the adder, so the work
crosses three agents before anything is written.
"""

from __future__ import annotations

import team

for message in team.messages():
    body = message["body"].strip()
    if not body.startswith("sum:"):
        team.say(f"ignoring {body!r}")
        continue
    job = message.get("id", "0")
    numbers = body[len("sum:"):].split()
    parts = [numbers[i:i + 3] for i in range(0, len(numbers), 3)]
    team.send("reporter", f"expect {job} {len(parts)}")
    for part in parts:
        team.send("adder", f"add {job} {' '.join(part)}")
    team.say(f"job {job}: {len(parts)} part(s) sent to the adder")
