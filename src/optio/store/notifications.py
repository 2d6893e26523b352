"""Notification receivers and their deliveries. An event is queued as one delivery row per receiver in the
transaction of the state change it reports, so none is lost and none is sent for a change that rolled back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from optio.errors import NotFound
from optio.store.models import NotificationDelivery, NotificationWebhook
from optio.store.types import utcnow

# (run kind, state entered) → event name.
EVENTS: dict[tuple[str, str], str] = {
    ("repo_task", "needs_attention"): "task.needs_attention",
    ("repo_task", "pr_opened"): "pr.opened",
    ("repo_task", "completed"): "pr.merged",
    ("repo_task", "failed"): "task.failed",
    ("job_run", "completed"): "job_run.finished",
    ("job_run", "failed"): "job_run.finished",
    ("agent", "failed"): "agent.failed",
}
# Not a state: a run (a job run, a persistent agent) stopped because it spent its cost budget.
BUDGET_EXCEEDED = "budget.exceeded"
EVENT_NAMES = tuple(sorted(set(EVENTS.values()) | {BUDGET_EXCEEDED}))


def on_transition(session: Session, *, workspace_id: int, kind: str, run_id: int, from_state: str | None,
                  to_state: str | None, reason: str, now: datetime) -> None:
    """Queue the event a state change means (if any) for every receiver of the workspace that wants it."""
    if to_state is None or from_state == to_state:
        return
    event = EVENTS.get((kind, to_state))
    if event is None:
        return
    payload = {"event": event, "kind": kind, "id": run_id, "state": to_state, "from_state": from_state,
               "reason": reason, "at": now.isoformat()}
    queue_event(session, workspace_id=workspace_id, event=event, payload=payload, now=now)


def budget_exceeded(session: Session, *, workspace_id: int, kind: str, run_id: int, state: str, spent_usd: float,
                    budget_usd: float, reason: str, now: datetime) -> None:
    """Queue `budget.exceeded` for a run of any kind that was stopped for its cost, in the stop's transaction."""
    payload = {"event": BUDGET_EXCEEDED, "kind": kind, "id": run_id, "state": state, "reason": reason,
               "spent_usd": spent_usd, "budget_usd": budget_usd, "at": now.isoformat()}
    queue_event(session, workspace_id=workspace_id, event=BUDGET_EXCEEDED, payload=payload, now=now)


def queue_event(session: Session, *, workspace_id: int, event: str, payload: dict[str, Any], now: datetime) -> None:
    """One pending delivery of the event per receiver of the workspace that wants it (all events when it named
    none), in the caller's transaction."""
    receivers = session.scalars(select(NotificationWebhook).where(NotificationWebhook.workspace_id == workspace_id))
    for hook in receivers:
        if hook.events and event not in hook.events:
            continue
        session.add(NotificationDelivery(workspace_id=workspace_id, webhook_id=hook.id, event=event, payload=payload,
                                         state="pending", attempts=0, next_attempt_at=now, created_at=now))


def insert_webhook(session: Session, workspace_id: int, fields: dict[str, Any]) -> NotificationWebhook:
    row = NotificationWebhook(workspace_id=workspace_id, **fields)
    session.add(row)
    session.flush()
    return row


def find_webhook(session: Session, workspace_id: int, webhook_id: int) -> NotificationWebhook:
    row = session.scalar(select(NotificationWebhook).where(NotificationWebhook.id == webhook_id,
                                                           NotificationWebhook.workspace_id == workspace_id))
    if row is None:
        raise NotFound(f"webhook {webhook_id} not found")
    return row


def list_webhooks(session: Session, workspace_id: int) -> list[NotificationWebhook]:
    return list(session.scalars(select(NotificationWebhook).where(NotificationWebhook.workspace_id == workspace_id)
                                .order_by(NotificationWebhook.id)))


def delete_webhook(session: Session, row: NotificationWebhook) -> None:
    session.delete(row)


def set_secret(row: NotificationWebhook, ciphertext: str) -> None:
    row.secret_ciphertext = ciphertext


def deliveries(session: Session, workspace_id: int, webhook_id: int, limit: int = 100) -> list[NotificationDelivery]:
    return list(session.scalars(select(NotificationDelivery).where(
        NotificationDelivery.workspace_id == workspace_id, NotificationDelivery.webhook_id == webhook_id)
        .order_by(NotificationDelivery.id.desc()).limit(limit)))


def claim_due(session: Session, now: datetime, lease_s: float, limit: int = 20
              ) -> list[tuple[NotificationDelivery, NotificationWebhook]]:
    """Pending deliveries whose time came, each taken by compare-and-swap on its attempt count (another server
    taking it first is skipped) and hidden for `lease_s` while it is sent."""
    rows = list(session.scalars(select(NotificationDelivery).where(
        NotificationDelivery.state == "pending", NotificationDelivery.next_attempt_at <= now)
        .order_by(NotificationDelivery.next_attempt_at).limit(limit)))
    taken: list[tuple[NotificationDelivery, NotificationWebhook]] = []
    for row in rows:
        done = session.execute(update(NotificationDelivery).where(
            NotificationDelivery.id == row.id, NotificationDelivery.attempts == row.attempts,
            NotificationDelivery.state == "pending")
            .values(attempts=row.attempts + 1, next_attempt_at=now + timedelta(seconds=lease_s))
        ).rowcount  # type: ignore[attr-defined]
        if done:
            session.refresh(row)
            hook = session.get(NotificationWebhook, row.webhook_id)
            if hook is not None:
                taken.append((row, hook))
    return taken


def record_attempt(session: Session, delivery_id: int, *, ok: bool, status: int | None, error: str | None,
                   retry_at: datetime | None) -> None:
    """The result of one attempt: delivered, pending again at `retry_at`, or failed for good (no `retry_at`)."""
    values: dict[str, Any] = {"last_status": status, "last_error": error}
    if ok:
        values.update(state="delivered", delivered_at=utcnow(), last_error=None)
    elif retry_at is not None:
        values.update(next_attempt_at=retry_at)
    else:
        values.update(state="failed")
    session.execute(update(NotificationDelivery).where(NotificationDelivery.id == delivery_id).values(**values))


def with_secrets(session: Session) -> list[NotificationWebhook]:
    """Every receiver holding a sealed signing secret (key rotation re-seals them)."""
    return list(session.scalars(select(NotificationWebhook).where(NotificationWebhook.secret_ciphertext.is_not(None))))
