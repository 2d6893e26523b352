"""Triggers: create, list, pause/resume, delete, fire now, and the signed webhook that fires one.

A webhook call proves itself with `X-Optio-Signature: sha256=<hex HMAC-SHA256(secret, "<ts>." + body)>` and
`X-Optio-Timestamp`; the timestamp is inside the signature and must be within five minutes, so a captured
call cannot be replayed later. Every refusal is the same 401, whether the trigger exists or not.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from optio.control import triggers as firing
from optio.domain.params import check_json_path, coerce, mapped_params, parse_schema
from optio.domain.templates import TemplateError
from optio.errors import AppError, Conflict, Invalid
from optio.security import signatures
from optio.security.crypto import Keyring, SecretDecryptError
from optio.store import blueprints as blueprint_store
from optio.store import jobs as job_store
from optio.store import ticket_sources as source_store
from optio.store import triggers as trigger_store
from optio.store.db import Database
from optio.store.models import Blueprint, Job, Trigger, TriggerFire
from optio.store.session import Session
from optio.store.types import utcnow

TYPES = ("manual", "schedule", "webhook", "ticket")
TARGET_TYPES = ("job", "blueprint")
MAX_SKEW_S = 300
TICKET_FILTER_KEYS = ("label", "state", "assignee", "project")


class BadSignature(AppError):
    status = 401
    code = "unauthorized"


@dataclass(frozen=True)
class Created:
    trigger: Trigger
    target_name: str
    secret: str | None


def aad_for(trigger_id: int) -> bytes:
    return f"trigger:{trigger_id}".encode()


def _check_params(schema: dict[str, Any], params: dict[str, Any], param_map: dict[str, str]) -> dict[str, Any]:
    specs = parse_schema(schema)
    out: dict[str, Any] = {}
    for name, value in params.items():
        if specs and name not in specs:
            raise Invalid(f"the target has no parameter {name!r}", field=f"params.{name}")
        try:
            out[name] = coerce(specs[name], value) if name in specs else value
        except TemplateError as exc:
            raise Invalid(str(exc), field=f"params.{name}") from None
    for name, path in param_map.items():
        if specs and name not in specs:
            raise Invalid(f"the target has no parameter {name!r}", field=f"param_map.{name}")
        try:
            check_json_path(path)
        except TemplateError as exc:
            raise Invalid(str(exc), field=f"param_map.{name}") from None
    return out


def create(db: Database, keyring: Keyring, workspace_id: int, data: dict[str, Any]) -> Created:
    """A new trigger; a webhook's secret is in the result, and only there: it is stored sealed."""
    kind, target_type = data["type"], data.get("target_type") or "job"
    if kind not in TYPES:
        raise Invalid(f"type must be one of {', '.join(TYPES)}", field="type")
    if target_type not in TARGET_TYPES:
        raise Invalid(f"target_type must be one of {', '.join(TARGET_TYPES)}", field="target_type")
    cron, zone = data.get("cron"), data.get("timezone") or "UTC"
    if kind == "schedule":
        if not cron:
            raise Invalid("a schedule needs a cron expression", field="cron")
        firing.check_schedule(cron, zone)
    elif cron:
        raise Invalid("only a schedule has a cron expression", field="cron")
    param_map = dict(data.get("param_map") or {})
    if param_map and kind != "webhook":
        raise Invalid("only a webhook maps its body to parameters", field="param_map")
    ticket_filter = {k: data[k] for k in TICKET_FILTER_KEYS if data.get(k)}
    if kind == "ticket":
        if not data.get("source"):
            raise Invalid("a ticket trigger needs a ticket source", field="source")
        if target_type != "blueprint":
            raise Invalid("a ticket trigger starts a blueprint (its tickets become repo tasks)", field="target_type")
        ticket_filter.setdefault("state", "open")
        if ticket_filter["state"] not in ("open", "closed"):
            raise Invalid("state must be open or closed", field="state")
    elif data.get("source") or ticket_filter:
        raise Invalid("only a ticket trigger has a source and a ticket filter", field="source")
    with db.write() as session:
        source_id = None
        if kind == "ticket":
            try:
                source_id = source_store.find(session, workspace_id, data["source"]).id
            except AppError as exc:
                raise Invalid(exc.message, field="source") from None
        try:
            target: Job | Blueprint = (job_store.find_job(session, workspace_id, data["target"])
                                       if target_type == "job" else
                                       blueprint_store.find(session, workspace_id, data["target"]))
        except AppError as exc:
            raise Invalid(exc.message, field="target") from None
        params = _check_params(target.params_schema, dict(data.get("params") or {}), param_map)
        now = utcnow()
        row = trigger_store.insert(session, workspace_id, dict(
            type=kind, target_type=target_type, target_id=target.id, cron=cron if kind == "schedule" else None,
            timezone=zone if kind == "schedule" else None, params=params, param_map=param_map, paused=False,
            last_due_at=now if kind == "schedule" else None, version=1, created_at=now, source_id=source_id,
            ticket_filter=ticket_filter))
        secret = None
        if kind == "webhook":
            secret = "whsec_" + secrets.token_urlsafe(32)
            trigger_store.set_secret(session, row, keyring.encrypt(secret, aad=aad_for(row.id)))
        return Created(row, target.name, secret)


def view(row: Trigger, target: str) -> dict[str, Any]:
    """What the API shows of a trigger (never its secret), with a schedule's next due time."""
    due = None
    if row.type == "schedule" and not row.paused and row.cron and row.timezone:
        due = firing.next_due(row.cron, row.timezone, row.last_due_at or row.created_at)
    return dict(id=row.id, type=row.type, target_type=row.target_type, target_id=row.target_id, target=target,
                cron=row.cron, timezone=row.timezone, params=row.params or {}, param_map=row.param_map or {},
                paused=row.paused, last_fired_at=row.last_fired_at, next_due_at=due, created_at=row.created_at,
                source_id=row.source_id, ticket_filter=row.ticket_filter or {})


def _target_name(session: Session, row: Trigger) -> str:
    if row.target_type == "blueprint":
        return blueprint_store.name_of(session, row.target_id)
    return job_store.job_name(session, row.target_id)


def list_triggers(db: Database, workspace_id: int) -> list[tuple[Trigger, str]]:
    with db.read() as session:
        return [(t, _target_name(session, t)) for t in trigger_store.list_triggers(session, workspace_id)]


def get(db: Database, workspace_id: int, trigger_id: int) -> tuple[Trigger, str]:
    with db.read() as session:
        row = trigger_store.find(session, workspace_id, trigger_id)
        return row, _target_name(session, row)


def delete(db: Database, workspace_id: int, trigger_id: int) -> None:
    with db.write() as session:
        trigger_store.delete(session, trigger_store.find(session, workspace_id, trigger_id))


def set_paused(db: Database, workspace_id: int, trigger_id: int, paused: bool) -> tuple[Trigger, str]:
    with db.write() as session:
        row = trigger_store.find(session, workspace_id, trigger_id)
        if row.paused != paused:
            trigger_store.set_paused(session, row, paused, resume_from=utcnow() if row.type == "schedule" else None)
        return row, _target_name(session, row)


def fires(db: Database, workspace_id: int, trigger_id: int) -> list[TriggerFire]:
    with db.read() as session:
        trigger_store.find(session, workspace_id, trigger_id)
        return trigger_store.fires(session, workspace_id, trigger_id)


def _fire(db: Database, trigger_id: int, workspace_id: int, *, source: str, params: dict[str, Any],
          payload: object) -> tuple[str, int]:
    with db.write() as session:
        row = trigger_store.find(session, workspace_id, trigger_id)
        if row.paused:
            raise Conflict(f"trigger {trigger_id} is paused; resume it first")
        try:
            return firing.fire(session, row, source=source, now=utcnow(), params=params, payload=payload)
        except TemplateError as exc:
            raise Invalid(str(exc), field=f"params.{exc.field}" if exc.field else "params") from None


def fire_now(db: Database, workspace_id: int, trigger_id: int, params: dict[str, Any]) -> tuple[str, int]:
    """Run now: any trigger but a ticket one (which fires per ticket) can be fired by hand, with extra
    parameters over its own."""
    with db.read() as session:
        if trigger_store.find(session, workspace_id, trigger_id).type == "ticket":
            raise Invalid("a ticket trigger fires once per matching ticket, not by hand", field="type")
    return _fire(db, trigger_id, workspace_id, source="manual", params=params, payload=None)


def receive(db: Database, keyring: Keyring, trigger_id: int, *, timestamp: str | None, signature: str | None,
            body: bytes, now: datetime | None = None) -> tuple[str, int]:
    """Check a webhook call and fire its trigger with the body as payload; 401 unless it proves itself."""
    refused = BadSignature("missing or invalid webhook signature, or a stale timestamp")
    with db.read() as session:
        row = trigger_store.get(session, trigger_id)
    if row is None or row.type != "webhook" or not row.secret_ciphertext:
        raise refused
    ts = (timestamp or "").strip()
    if not (ts.isascii() and ts.isdigit() and len(ts) <= 12):
        raise refused
    if abs((now or utcnow()).timestamp() - int(ts)) > MAX_SKEW_S:
        raise refused
    try:
        secret = keyring.decrypt(row.secret_ciphertext, aad=aad_for(row.id))
    except SecretDecryptError:
        raise refused from None
    if not signatures.verify(secret, ts.encode("ascii") + b"." + body, signature):
        raise refused
    try:
        payload = json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise Invalid("the body is not JSON", field="body") from None
    return _fire(db, row.id, row.workspace_id, source="webhook", params=mapped_params(payload, row.param_map or {}),
                 payload=payload)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Optio-Signature` a sender puts on `body` sent at `timestamp` (unix seconds)."""
    return signatures.sign(secret, str(timestamp).encode("ascii") + b"." + body)
