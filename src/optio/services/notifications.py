"""Outgoing notifications: per-workspace receivers, and the notifier thread that delivers what the state
changes queued (`store.notifications`), with retries and backoff, off the reconcile loop.

A receiver gets either Optio's JSON, signed like incoming webhooks (`X-Optio-Timestamp`, `X-Optio-Signature:
sha256=<hex HMAC-SHA256(secret, "<ts>." + body)>`, `X-Optio-Event`), or a Slack incoming-webhook message.
Every URL passes the SSRF guard when it is saved and again on every attempt.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog

from optio.errors import Invalid
from optio.security import signatures
from optio.security.crypto import Keyring, SecretDecryptError
from optio.security.ssrf import UnsafeURLError, check_url, guarded_client
from optio.store import notifications as store
from optio.store.db import Database
from optio.store.models import NotificationDelivery, NotificationWebhook
from optio.store.types import utcnow

log = structlog.get_logger("optio.notify")
FORMATS = ("optio", "slack")


def aad_for(webhook_id: int) -> bytes:
    return f"notification-webhook:{webhook_id}".encode()


def create(db: Database, keyring: Keyring, workspace_id: int, data: dict[str, Any], *,
           allowlist: Sequence[str]) -> tuple[NotificationWebhook, str | None]:
    """A receiver; an `optio` one gets a signing secret, returned this once."""
    url, fmt = data["url"], data.get("format") or "optio"
    if fmt not in FORMATS:
        raise Invalid(f"format must be one of {', '.join(FORMATS)}", field="format")
    events = list(dict.fromkeys(data.get("events") or []))
    for event in events:
        if event not in store.EVENT_NAMES:
            raise Invalid(f"unknown event {event!r}; events are {', '.join(store.EVENT_NAMES)}", field="events")
    try:
        check_url(url, allowlist=allowlist)
    except UnsafeURLError as exc:
        raise Invalid(str(exc), field="url") from None
    except ValueError as exc:
        raise Invalid(f"not a usable URL: {exc}", field="url") from None
    with db.write() as session:
        row = store.insert_webhook(session, workspace_id, {"url": url, "format": fmt, "events": events})
        secret = None
        if fmt == "optio":
            secret = "whsec_" + secrets.token_urlsafe(32)
            store.set_secret(row, keyring.encrypt(secret, aad=aad_for(row.id)))
        return row, secret


def list_webhooks(db: Database, workspace_id: int) -> list[NotificationWebhook]:
    with db.read() as session:
        return store.list_webhooks(session, workspace_id)


def delete(db: Database, workspace_id: int, webhook_id: int) -> None:
    with db.write() as session:
        store.delete_webhook(session, store.find_webhook(session, workspace_id, webhook_id))


def deliveries(db: Database, workspace_id: int, webhook_id: int) -> list[NotificationDelivery]:
    with db.read() as session:
        store.find_webhook(session, workspace_id, webhook_id)
        return store.deliveries(session, workspace_id, webhook_id)


def render(hook: NotificationWebhook, payload: dict[str, Any]) -> bytes:
    if hook.format == "slack":
        what = "task" if payload.get("kind") == "repo_task" else "job run"
        text = f"Optio: {payload.get('event')} ({what} #{payload.get('id')}, {payload.get('state')})"
        if payload.get("reason"):
            text += f": {payload['reason']}"
        return json.dumps({"text": text}).encode()
    return json.dumps(payload, sort_keys=True).encode()


def retry_delay(attempts: int, base_s: float) -> float:
    """Doubling from `base_s`, at most an hour."""
    return float(min(3600.0, base_s * (2 ** max(0, attempts - 1))))


class Notifier:
    """One thread that sends due deliveries; a slow or dead receiver costs this thread time, never the loop's."""

    def __init__(self, db: Database, keyring: Keyring, *, allowlist: Sequence[str], backoff_s: float,
                 max_attempts: int, timeout_s: float, tick_s: float = 0.5,
                 owner: Callable[[], bool] | None = None) -> None:
        self.db, self.keyring = db, keyring
        self.allowlist, self.backoff_s, self.max_attempts = list(allowlist), backoff_s, max_attempts
        self.timeout_s, self.tick_s = timeout_s, tick_s
        # Whether this replica is the sender now (one at a time across replicas); None: always.
        self.owner = owner
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="optio-notify")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="optio-notifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        with guarded_client(self.allowlist, timeout=self.timeout_s, follow_redirects=False) as client:
            while not self._stop.is_set():
                if self.owner is not None and not self.owner():
                    self._stop.wait(self.tick_s)
                    continue
                try:
                    sent = self.deliver_due(client, utcnow())
                except Exception:
                    log.exception("notify_error")
                    sent = 0
                if not sent:
                    self._stop.wait(self.tick_s)

    def deliver_due(self, client: httpx.Client, now: datetime) -> int:
        """Send what is due; returns how many attempts were made."""
        with self.db.write() as session:
            batch = [(d.id, d.attempts, dict(d.payload), d.event, h) for d, h in
                     store.claim_due(session, now, lease_s=self.timeout_s * 3)]
        def one(item: tuple[int, int, dict[str, Any], str, NotificationWebhook]) -> None:
            delivery_id, attempts, payload, event, hook = item
            ok, status, error = self._send(client, hook, event, payload)
            retry_at = None
            if not ok and attempts < self.max_attempts:
                retry_at = utcnow() + timedelta(seconds=retry_delay(attempts, self.backoff_s))
            with self.db.write() as session:
                store.record_attempt(session, delivery_id, ok=ok, status=status, error=error, retry_at=retry_at)
            log.info("notify", delivery=delivery_id, notify_event=event, attempt=attempts, ok=ok, status=status)

        # Receivers are called side by side: one slow receiver delays its own deliveries, not the others'.
        list(self._pool.map(one, batch))
        return len(batch)

    def _send(self, client: httpx.Client, hook: NotificationWebhook, event: str, payload: dict[str, Any]
              ) -> tuple[bool, int | None, str | None]:
        body = render(hook, payload)
        headers = {"Content-Type": "application/json", "User-Agent": "optio-notify", "X-Optio-Event": event}
        if hook.format == "optio" and hook.secret_ciphertext:
            try:
                secret = self.keyring.decrypt(hook.secret_ciphertext, aad=aad_for(hook.id))
            except SecretDecryptError as exc:
                return False, None, f"signing secret unreadable: {exc}"
            ts = str(int(time.time()))
            headers["X-Optio-Timestamp"] = ts
            headers["X-Optio-Signature"] = signatures.sign(secret, ts.encode() + b"." + body)
        try:
            res = client.post(hook.url, content=body, headers=headers)
        except UnsafeURLError as exc:
            return False, None, str(exc)
        except httpx.HTTPError as exc:
            return False, None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= res.status_code < 300:
            return True, res.status_code, None
        return False, res.status_code, f"HTTP {res.status_code}"
