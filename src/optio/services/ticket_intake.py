"""Ticket intake: a ticket trigger's matching tickets become repo tasks from its blueprint, and the tracker
hears back (pick-up, PR opened, merged and closed).

* A ticket is seen through the source's signed webhook (`POST /api/ticket-hooks/{source_id}`) or the poller
  (`OPTIO_TICKET_POLL_INTERVAL_S`, the safety net). Either way `spawn` creates the task and the ticket's link
  in one transaction, and the link is unique by (source, external id): a duplicate webhook, a relabel, a
  restart or two servers at once spawn nothing more.
* The blueprint gets params `title`, `body`, `number` (the ticket's key) and `url` (those its schema declares,
  all four when it declares none), and the whole ticket as `payload`.
* Notes to the tracker are outbox rows (`store.ticket_sources`), queued with the state change they report;
  `TicketSync` sends them off the reconcile loop with retries and backoff, so a tracker outage delays its
  comments and nothing else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from optio.control import triggers as firing
from optio.domain.params import parse_schema
from optio.domain.templates import TemplateError
from optio.errors import AppError, Conflict, Invalid, NotFound
from optio.security.crypto import Keyring
from optio.services import ticket_sources as source_service
from optio.services.notifications import retry_delay
from optio.services.secrets import SecretStore
from optio.store import blueprints as blueprint_store
from optio.store import ticket_sources as source_store
from optio.store import tickets as local_store
from optio.store import triggers as trigger_store
from optio.store.db import Database
from optio.store.models import RepoTask, TicketAction, TicketLink, TicketSource, Trigger
from optio.store.tickets import REF_PREFIX
from optio.store.types import utcnow
from optio.tickets.base import BadTicketSignature, Ticket, TicketFilter, TicketProvider, TicketProviderError

log = structlog.get_logger("optio.tickets")
PROVIDER_TTL_S = 300.0
FILTER_KEYS = ("label", "state", "assignee", "project")


class BadSignature(AppError):
    status = 401
    code = "unauthorized"


@dataclass(frozen=True)
class Accepted:
    events: int
    spawned: list[int]


def filter_of(trigger: Trigger) -> TicketFilter:
    raw = dict(trigger.ticket_filter or {})
    return TicketFilter(label=raw.get("label"), state=raw.get("state", "open"), assignee=raw.get("assignee"),
                        project=raw.get("project"))


def params_for(schema: Mapping[str, Any], ticket: Ticket) -> dict[str, Any]:
    given = {"title": ticket.title, "body": ticket.body, "number": ticket.key, "url": ticket.url}
    declared = parse_schema(schema)
    return {k: v for k, v in given.items() if k in declared} if declared else given


def payload_of(ticket: Ticket) -> dict[str, Any]:
    data = asdict(ticket)
    data["labels"] = list(ticket.labels)
    data["updated_at"] = ticket.updated_at.isoformat() if ticket.updated_at else None
    return data


def spawn(db: Database, trigger_id: int, source_id: int, ticket: Ticket, *, now: datetime | None = None) -> int | None:
    """The ticket's task, from the trigger's blueprint, and its link, in one transaction; None when the ticket
    is linked already (or the trigger went away, or the blueprint refused the start, which is logged)."""
    now = now or utcnow()
    try:
        with db.write() as session:
            trigger = trigger_store.get(session, trigger_id)
            source = source_store.get(session, source_id)
            if trigger is None or source is None or trigger.paused or trigger.source_id != source_id:
                return None
            if source_store.linked_ids(session, source_id, [ticket.external_id]):
                return None
            blueprint = blueprint_store.find(session, trigger.workspace_id, trigger.target_id)
            _kind, task_id = firing.fire(session, trigger, source="ticket", now=now,
                                         params=params_for(blueprint.params_schema, ticket),
                                         payload=payload_of(ticket))
            source_store.insert_link(session, source, external_id=ticket.external_id, trigger_id=trigger.id,
                                     task_id=task_id, key=ticket.key, url=ticket.url, title=ticket.title, now=now)
            if source.kind == "local" and ticket.external_id.isdigit():
                source_store.set_task_ticket_ref(session, task_id, f"{REF_PREFIX}{ticket.external_id}")
                local_store.link_task(session, source.workspace_id, int(ticket.external_id), task_id)
            else:
                source_store.set_task_ticket_ref(session, task_id, f"{source.name}{ticket.key}")
    except Conflict:
        return None  # linked meanwhile (another webhook, the poller, another server): nothing more to do
    except (TemplateError, Invalid, NotFound) as exc:
        log.warning("ticket_not_started", trigger=trigger_id, source=source_id, ticket=ticket.key, error=str(exc))
        return None
    log.info("ticket_spawned", trigger=trigger_id, source=source_id, ticket=ticket.key, task=task_id)
    return task_id


def sync(db: Database, source_id: int, tickets: list[Ticket]) -> list[int]:
    """Spawn a task for each ticket some active trigger of the source matches and no link names yet."""
    with db.read() as session:
        triggers = source_store.triggers_of(session, source_id)
        linked = source_store.linked_ids(session, source_id, [t.external_id for t in tickets])
    spawned: list[int] = []
    for ticket in tickets:
        if ticket.external_id in linked:
            continue
        for trigger in triggers:
            if ticket.matches(filter_of(trigger)):
                task_id = spawn(db, trigger.id, source_id, ticket)
                if task_id is not None:
                    spawned.append(task_id)
                break
    return spawned


def poll_source(db: Database, provider: TicketProvider, source_id: int) -> list[int]:
    """List each trigger's matching tickets from the tracker and spawn the new ones."""
    with db.read() as session:
        triggers = source_store.triggers_of(session, source_id)
    seen: dict[str, Ticket] = {}
    for trigger in triggers:
        for ticket in provider.list_tickets(filter_of(trigger)):
            seen.setdefault(ticket.external_id, ticket)
    return sync(db, source_id, list(seen.values()))


def receive(db: Database, vault: SecretStore, keyring: Keyring, source_id: int, headers: Mapping[str, str],
            body: bytes) -> Accepted:
    """A webhook delivery: verified by the source's provider (401 unless it proves itself), then each ticket
    it names is re-read from the tracker and spawned if a trigger matches. A tracker that cannot be read now
    is left to the poller: the delivery is still accepted."""
    refused = BadSignature("missing or invalid webhook signature")
    with db.read() as session:
        row = source_store.get(session, source_id)
    if row is None:
        raise refused
    secret = source_service.webhook_secret(keyring, row)
    try:
        provider = source_service.provider_for(db, vault, row)
    except TicketProviderError as exc:
        log.warning("ticket_source_unusable", source=source_id, error=str(exc))
        raise refused from None
    try:
        events = provider.parse_webhook(headers, body, secret)
    except BadTicketSignature:
        raise refused from None
    wanted = list(dict.fromkeys(e.external_id for e in events))
    with db.read() as session:
        linked = source_store.linked_ids(session, source_id, wanted)
    tickets: list[Ticket] = []
    for external_id in wanted:
        if external_id in linked:
            continue  # a ticket spawns once: no need to ask the tracker about it again
        try:
            tickets.append(provider.get(external_id))
        except TicketProviderError as exc:
            log.warning("ticket_read_failed", source=source_id, ticket=external_id, error=str(exc))
    return Accepted(events=len(events), spawned=sync(db, source_id, tickets) if tickets else [])


def sync_local(db: Database, workspace_id: int, number: int) -> list[int]:
    """A local ticket was filed or relabelled: pick it up now rather than at the next poll."""
    with db.read() as session:
        sources = [s for s in source_store.polled_sources(session)
                   if s.kind == "local" and s.workspace_id == workspace_id]
    spawned: list[int] = []
    for source in sources:
        try:
            provider = source_service.provider_for(db, None, source)
            spawned += sync(db, source.id, [provider.get(str(number))])
        except TicketProviderError:
            continue
    return spawned


# --- lifecycle notes --------------------------------------------------------------------------------------------

def note_text(event: str, task: RepoTask | None, link: TicketLink, public_url: str) -> str:
    base = public_url.rstrip("/")
    if task is None:
        return f"Optio: the task for {link.key} is gone."
    task_url = f"{base}/tasks/{task.id}"
    pr_url = f"{base}/prs/{task.pr_id}" if task.pr_id else task_url
    if event == "picked_up":
        return f"Optio picked this up as task #{task.id}: {task_url}"
    if event == "pr_opened":
        return f"Optio opened a pull request for this: {pr_url} (task #{task.id}: {task_url})"
    return f"The pull request merged: {pr_url} (task #{task.id}: {task_url}). Closing this ticket."


class TicketSync:
    """Two threads beside the loop: the poller (every `poll_interval_s`) and the outbox sender. A dead or slow
    tracker costs these threads time (bounded by the providers' timeouts), never the reconcile loop's."""

    def __init__(self, db: Database, vault: SecretStore, *, public_url: str, poll_interval_s: float,
                 backoff_s: float, max_attempts: int, tick_s: float = 0.5) -> None:
        self.db, self.vault, self.public_url = db, vault, public_url
        self.poll_interval_s, self.backoff_s, self.max_attempts = poll_interval_s, backoff_s, max_attempts
        self.tick_s = tick_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="optio-tickets")
        self._providers: dict[int, tuple[datetime, float, TicketProvider]] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        for name, target in (("optio-ticket-poll", self._poll_loop), ("optio-ticket-outbox", self._outbox_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def provider(self, source: TicketSource) -> TicketProvider:
        """The source's provider, kept a few minutes (its credential is read when it is built)."""
        with self._lock:
            cached = self._providers.get(source.id)
        if cached is not None and cached[0] == source.updated_at and time.monotonic() - cached[1] < PROVIDER_TTL_S:
            return cached[2]
        built = source_service.provider_for(self.db, self.vault, source)
        with self._lock:
            self._providers[source.id] = (source.updated_at, time.monotonic(), built)
        return built

    # --- polling -------------------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("ticket_poll_error")
            self._stop.wait(self.poll_interval_s)

    def poll_once(self) -> int:
        with self.db.read() as session:
            sources = source_store.polled_sources(session)
        spawned = 0
        for source in sources:
            error = None
            try:
                spawned += len(poll_source(self.db, self.provider(source), source.id))
            except TicketProviderError as exc:
                error = str(exc)[:500]
                log.warning("ticket_poll_failed", source=source.id, error=error)
            with self.db.write() as session:
                source_store.record_poll(session, source.id, error=error, now=utcnow())
        return spawned

    # --- the outbox ----------------------------------------------------------------------------------------

    def _outbox_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.deliver_due(utcnow())
            except Exception:
                log.exception("ticket_outbox_error")
                sent = 0
            if not sent:
                self._stop.wait(self.tick_s)

    def deliver_due(self, now: datetime) -> int:
        with self.db.write() as session:
            batch = source_store.claim_due(session, now, lease_s=60.0)
            items = [(a.id, a.attempts, a.event, link.external_id, link, source, task)
                     for a, link, source, task in batch]

        def one(item: tuple[int, int, str, str, TicketLink, TicketSource, RepoTask | None]) -> None:
            action_id, attempts, event, external_id, link, source, task = item
            text = note_text(event, task, link, self.public_url)
            error = None
            try:
                provider = self.provider(source)
                if event == "merged":
                    provider.close(external_id, text)
                else:
                    provider.comment(external_id, text)
            except TicketProviderError as exc:
                error = str(exc)[:500]
            except Exception as exc:  # a provider bug: logged, retried like an outage
                error = f"{type(exc).__name__}: {exc}"[:500]
            retry_at = None
            if error is not None and attempts < self.max_attempts:
                retry_at = utcnow() + timedelta(seconds=retry_delay(attempts, self.backoff_s))
            with self.db.write() as session:
                source_store.record_action(session, action_id, ok=error is None, error=error, retry_at=retry_at)
            log.info("ticket_note", action=action_id, note=event, ticket=link.key, attempt=attempts,
                     ok=error is None, error=error)

        list(self._pool.map(one, items))
        return len(items)


def actions_view(db: Database, workspace_id: int) -> list[tuple[TicketLink, TicketSource, list[TicketAction]]]:
    """Every link of the workspace with its source and its notes (the API's and the dashboard's view)."""
    with db.read() as session:
        return [(link, source, source_store.actions_of(session, link.id))
                for link, source in source_store.links(session, workspace_id)]
