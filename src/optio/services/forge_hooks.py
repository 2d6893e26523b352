"""Forge webhooks: verify a delivery with the repo's forge, handle each delivery id once, wake the tasks it touches.

The route is unauthenticated (a forge cannot log in); the repo's forge verifies the delivery (GitHub's HMAC
signature, GitLab's token) before anything is written. The delivery id and every reconcile it causes are
written in one transaction, so a redelivery after a crash either finds the id or finds nothing done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from optio.control.ports import ForgeRegistry, UnknownForge
from optio.domain.states import TERMINAL, RunKind
from optio.forge.hosted import LOCAL
from optio.store import forge_hooks, queue
from optio.store.db import Database

log = structlog.get_logger("optio.forge_hooks")

KIND = RunKind.REPO_TASK.value
# Where forges put a delivery's id: GitHub, GitLab (per event), GitLab (per retried delivery).
DELIVERY_HEADERS = ("x-github-delivery", "x-gitlab-event-uuid", "idempotency-key", "x-gitlab-webhook-uuid")
EVENT_HEADERS = ("x-github-event", "x-gitlab-event")


@dataclass(frozen=True)
class HookResult:
    status: int  # 200 handled (or a duplicate), 204 a repo Optio does not track
    enqueued: int = 0
    duplicate: bool = False


def delivery_id(headers: Mapping[str, str]) -> str | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in DELIVERY_HEADERS:
        if lowered.get(name):
            return lowered[name].strip()
    return None


def event_name(headers: Mapping[str, str]) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    return next((lowered[n] for n in EVENT_HEADERS if lowered.get(n)), "")


def receive(db: Database, forges: ForgeRegistry, repo_id: int, headers: Mapping[str, str], body: bytes) -> HookResult:
    """Handle one delivery; raises `BadSignature` (→ 401) before anything is written when it does not verify."""
    with db.read() as session:
        repo = forge_hooks.repo_for_hook(session, repo_id)
        forge_kind = repo.forge if repo is not None else None
    if forge_kind is None or forge_kind == LOCAL:  # the local forge sends no webhooks: nothing to verify them by
        return HookResult(204)
    try:
        forge = forges.get(forge_kind)
    except UnknownForge:
        return HookResult(204)
    events = forge.parse_event(repo_id, headers, body)
    # An event naming a PR but not its task (GitLab's): the forge says whose it is when it can; when it cannot
    # (or is busy), every task of the repo with a branch looks again, which is never wrong, only slower.
    task_for_pr = getattr(forge, "task_for_pr", None)
    resolved: list[tuple[int, int | None]] = []
    for event in events:
        task = event.task_id
        if task is None and event.number and task_for_pr is not None:
            try:
                task = task_for_pr(repo_id, event.number)
            except Exception:
                log.warning("forge_hook_task_unknown", repo=repo_id, number=event.number)
        resolved.append((event.repo_id, task))
    finished = TERMINAL[RunKind.REPO_TASK]
    delivery = delivery_id(headers)
    name = event_name(headers)
    with db.write() as session:
        if delivery is not None and not forge_hooks.record_delivery(session, repo_id, delivery, name):
            return HookResult(200, duplicate=True)
        woken: dict[int, int] = {}
        for event_repo, task_id in resolved:
            if event_repo != repo_id:
                continue
            if task_id is None:
                woken.update(forge_hooks.tasks_with_branch(session, repo_id, finished))
                continue
            found = forge_hooks.task_of_repo(session, repo_id, task_id, finished)
            if found is not None:
                woken[found[0]] = found[1]
        for task_id, workspace_id in woken.items():
            queue.enqueue(session, KIND, task_id, workspace_id, reason=f"forge event {name}".strip())
    log.info("forge_hook", repo=repo_id, forge_event=name, delivery=delivery, events=len(events), enqueued=len(woken))
    return HookResult(200, enqueued=len(woken))
