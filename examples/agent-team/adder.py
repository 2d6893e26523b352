"""The middle agent: adds up each part it is sent and passes the partial sum to the reporter."""

from __future__ import annotations

import team

for message in team.messages():
    words = message["body"].split()
    if len(words) < 2 or words[0] != "add":
        team.say(f"ignoring {message['body']!r}")
        continue
    job, numbers = words[1], [int(n) for n in words[2:]]
    team.send("reporter", f"part {job} {sum(numbers)}")
    team.say(f"job {job}: {' + '.join(map(str, numbers))} = {sum(numbers)}")
