"""GitHub webhook deliveries (already verified) as the PR changes they mean for Optio's tasks.

A task's PR is recognised by its head branch ``optio/<task-id>``; a push to any other branch (the base
moving) may change every open PR's mergeability, so it names no task and wakes them all.
"""

from __future__ import annotations

import json
from typing import Any

from optio.forge.base import ForgeEvent
from optio.forge.hosted import task_of_branch

PR_EVENTS = {"pull_request": "pr", "pull_request_review": "review", "pull_request_review_comment": "review",
             "pull_request_review_thread": "review"}


def _pr_event(repo_id: int, kind: str, pull: dict[str, Any]) -> list[ForgeEvent]:
    task = task_of_branch((pull.get("head") or {}).get("ref"))
    return [] if task is None else [ForgeEvent(repo_id, int(pull.get("number") or 0), kind, task)]


def parse_delivery(repo_id: int, event: str, body: bytes, *, default_branch: str) -> list[ForgeEvent]:
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return []
    if not isinstance(payload, dict):
        return []
    if event in PR_EVENTS:
        return _pr_event(repo_id, PR_EVENTS[event], payload.get("pull_request") or {})
    if event in ("check_run", "check_suite"):
        item = payload.get(event) or {}
        suite = item if event == "check_suite" else (item.get("check_suite") or {})
        found = [_pr_event(repo_id, "ci", pr) for pr in item.get("pull_requests") or []]
        events = [e for group in found for e in group]
        task = task_of_branch(suite.get("head_branch"))
        if task is not None and not any(e.task_id == task for e in events):
            events.append(ForgeEvent(repo_id, 0, "ci", task))
        return events
    if event == "status":
        tasks = {task_of_branch(b.get("name")) for b in payload.get("branches") or [] if isinstance(b, dict)}
        return [ForgeEvent(repo_id, 0, "ci", t) for t in sorted(t for t in tasks if t is not None)]
    if event == "push":
        branch = str(payload.get("ref") or "").removeprefix("refs/heads/")
        task = task_of_branch(branch)
        if task is not None:
            return [ForgeEvent(repo_id, 0, "push", task)]
        return [ForgeEvent(repo_id, 0, "base_moved", None)] if branch == default_branch else []
    return []
