"""Schedule triggers on a real database with an injected clock: each due time fires once, across restarts and
with two claimers on one database; missed ticks fire once; pause and resume; the webhook path's checks."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from optio.control import triggers as firing
from optio.errors import Conflict, Invalid, NotFound
from optio.security import crypto
from optio.services import jobs as job_service
from optio.services import triggers as trigger_service
from optio.store import jobs as job_store
from optio.store import migrate, workspaces
from optio.store.db import Database
from optio.store.models import Trigger
from optio.store.types import utcnow


def _open(url: str) -> Database:
    db = Database(url)
    migrate.upgrade(db)
    with db.write() as s:
        workspaces.ensure_default(s)
    return db


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'optio.db'}"


@pytest.fixture
def keyring(tmp_path: Path) -> crypto.Keyring:
    return crypto.load_keyring(tmp_path / "keys", None)


def _job(db: Database, schema: dict[str, object] | None = None, template: str = "report for {{WHO}}") -> int:
    job = job_service.create_job(db, 1, {"name": f"job-{uuid.uuid4().hex[:6]}", "prompt_template": template,
                                         "agent_type": "script", "agent_config": {"command": "true"},
                                         "params_schema": schema or {"WHO": {"default": "ops"}}})
    return job.id


def _schedule(db: Database, keyring: crypto.Keyring, job_id: int, cron: str = "* * * * *") -> tuple[int, datetime]:
    created = trigger_service.create(db, keyring, 1, {"type": "schedule", "target": str(job_id), "cron": cron,
                                                      "timezone": "Europe/Berlin"})
    assert created.trigger.last_due_at is not None
    return created.trigger.id, created.trigger.last_due_at


def _runs(db: Database, job_id: int) -> list[str]:
    with db.read() as s:
        return [r.prompt for r, _ in job_store.list_runs(s, 1, job=str(job_id), state=None, limit=500, before=None)]


def _ticks(start: datetime, seconds: int, step: int = 20) -> list[datetime]:
    return [start + timedelta(seconds=s) for s in range(step, seconds + 1, step)]


def test_every_minute_for_three_minutes_fires_exactly_three_runs(url: str, keyring: crypto.Keyring) -> None:
    db = _open(url)
    job_id = _job(db)
    _, t0 = _schedule(db, keyring, job_id)
    fired = sum(firing.tick(db, now) for now in _ticks(t0, 180))
    assert fired == 3
    assert _runs(db, job_id) == ["report for ops"] * 3
    # Ticking the same instants again (a second look, a slow clock) fires nothing more.
    assert sum(firing.tick(db, now) for now in _ticks(t0, 180)) == 0


def test_a_restart_in_the_middle_still_fires_exactly_three(url: str, keyring: crypto.Keyring) -> None:
    db = _open(url)
    job_id = _job(db)
    _, t0 = _schedule(db, keyring, job_id)
    ticks = _ticks(t0, 180)
    first = sum(firing.tick(db, now) for now in ticks[:4])
    db.engine.dispose()  # the process goes away; a new one opens the same file
    again = _open(url)
    second = sum(firing.tick(again, now) for now in ticks[3:])  # it re-looks at the last instant, too
    assert first + second == 3
    assert len(_runs(again, job_id)) == 3


def test_ticks_missed_while_down_fire_once_on_start(url: str, keyring: crypto.Keyring) -> None:
    db = _open(url)
    job_id = _job(db)
    _, t0 = _schedule(db, keyring, job_id)
    first = t0.replace(second=0, microsecond=0) + timedelta(minutes=1)  # the first due time
    assert firing.tick(db, first + timedelta(seconds=10)) == 1
    assert firing.tick(db, first + timedelta(minutes=30, seconds=5)) == 1  # 30 due times passed: one run
    assert firing.tick(db, first + timedelta(minutes=30, seconds=40)) == 0
    assert firing.tick(db, first + timedelta(minutes=31, seconds=5)) == 1
    assert len(_runs(db, job_id)) == 3


def test_pause_stops_fires_and_resume_does_not_make_them_up(url: str, keyring: crypto.Keyring) -> None:
    db = _open(url)
    job_id = _job(db)
    trigger_id, t0 = _schedule(db, keyring, job_id)
    trigger_service.set_paused(db, 1, trigger_id, True)
    assert firing.tick(db, t0 + timedelta(minutes=5)) == 0
    row, _ = trigger_service.set_paused(db, 1, trigger_id, False)
    resumed = row.last_due_at
    assert resumed is not None and resumed > t0
    assert firing.tick(db, resumed) == 0
    assert firing.tick(db, resumed + timedelta(seconds=61)) == 1


def _race(urls: list[str], job_id: int, t0: datetime) -> int:
    """Two servers (own engines) tick the same instants at the same moments; returns the runs made."""
    dbs = [_open(u) for u in urls]
    totals = [0] * len(dbs)
    barrier = threading.Barrier(len(dbs))

    def claimer(i: int) -> None:
        for now in _ticks(t0, 180, step=10):
            barrier.wait(10)
            totals[i] += firing.tick(dbs[i], now)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(len(dbs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(totals) == 3, totals
    return len(_runs(dbs[0], job_id))


def test_two_claimers_on_one_sqlite_file_fire_once_per_tick(url: str, keyring: crypto.Keyring) -> None:
    db = _open(url)
    job_id = _job(db)
    _, t0 = _schedule(db, keyring, job_id)
    assert _race([url, url], job_id, t0) == 3



def test_two_claimers_on_one_postgres_database_fire_once_per_tick(pg_url: str, keyring: crypto.Keyring) -> None:
    db = _open(pg_url)
    job_id = _job(db)
    _, t0 = _schedule(db, keyring, job_id)
    assert _race([pg_url, pg_url], job_id, t0) == 3


def test_a_due_time_already_fired_is_refused_by_the_database(url: str, keyring: crypto.Keyring) -> None:
    """Even a claimer that skipped the version check cannot fire one due time twice: the fire row is unique."""
    db = _open(url)
    job_id = _job(db)
    trigger_id, t0 = _schedule(db, keyring, job_id)
    due = t0 + timedelta(minutes=1)
    for attempt in range(2):
        try:
            with db.write() as s:
                row = s.get(Trigger, trigger_id)
                assert row is not None
                firing.fire(s, row, source="schedule", now=due, due_at=due)
        except Conflict:
            assert attempt == 1
    assert len(_runs(db, job_id)) == 1  # the second run rolled back with its fire


# --- create / fire / webhook checks at the service level ----------------------------------------------------


def test_bad_triggers_are_refused_naming_the_field(url: str, keyring: crypto.Keyring) -> None:
    db = _open(url)
    job_id = _job(db, {"N": {"type": "integer"}}, "n={{N}}")
    base = {"target": str(job_id)}
    for data, field in [
        ({"type": "schedule"}, "cron"), ({"type": "schedule", "cron": "61 * * * *"}, "cron"),
        ({"type": "schedule", "cron": "* * * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"type": "manual", "params": {"N": "x"}}, "params.N"), ({"type": "manual", "params": {"M": 1}}, "params.M"),
        ({"type": "webhook", "param_map": {"N": "alert.n"}}, "param_map.N"), ({"type": "cron"}, "type"),
        ({"type": "manual", "target": "no-such-job"}, "target"),
    ]:
        with pytest.raises(Invalid) as info:
            trigger_service.create(db, keyring, 1, {**base, **data})
        assert info.value.field == field, data


def test_a_trigger_of_another_workspace_is_not_found(url: str, keyring: crypto.Keyring) -> None:
    db = _open(url)
    with db.write() as s:
        other = workspaces.Workspace(slug="other", name="Other")
        s.add(other)
        s.flush()
        other_id = other.id
    job_id = _job(db)
    created = trigger_service.create(db, keyring, 1, {"type": "manual", "target": str(job_id)})
    assert [t.id for t, _ in trigger_service.list_triggers(db, other_id)] == []
    for act in (lambda: trigger_service.get(db, other_id, created.trigger.id),
                lambda: trigger_service.fire_now(db, other_id, created.trigger.id, {}),
                lambda: trigger_service.delete(db, other_id, created.trigger.id)):
        with pytest.raises(NotFound):
            act()
    assert _runs(db, job_id) == []


def test_webhook_signature_and_timestamp_checks(url: str, keyring: crypto.Keyring) -> None:
    db = _open(url)
    job_id = _job(db, {"NAME": {}, "SEV": {"type": "integer", "default": 1}},
                  "alert {{NAME}} sev {{SEV}}{{#if payload.note}}: {{payload.note}}{{/if}}")
    created = trigger_service.create(db, keyring, 1, {"type": "webhook", "target": str(job_id),
                                                      "param_map": {"NAME": "$.alert.name", "SEV": "$.alert.sev"}})
    assert created.secret and created.secret not in (created.trigger.secret_ciphertext or "")
    body = json.dumps({"alert": {"name": "disk", "sev": 3}, "note": "{{NAME}}"}).encode()
    now = int(time.time())

    def call(secret: str, ts: int, payload: bytes = body, signature: str | None = None) -> tuple[str, int]:
        sig = signature if signature is not None else trigger_service.sign(secret, ts, payload)
        return trigger_service.receive(db, keyring, created.trigger.id, timestamp=str(ts), signature=sig,
                                       body=payload)

    for bad in (lambda: call("whsec_wrong", now), lambda: call(created.secret or "", now - 600),
                lambda: call(created.secret or "", now + 600), lambda: call(created.secret or "", now, signature=""),
                lambda: call(created.secret or "", now, signature="sha1=abc")):
        with pytest.raises(trigger_service.BadSignature):
            bad()
    assert _runs(db, job_id) == []
    kind, _run_id = call(created.secret, now)
    assert kind == "job_run"
    assert _runs(db, job_id) == ["alert disk sev 3: {{NAME}}"]
    with pytest.raises(Invalid) as info:  # signed, but the body lacks a required parameter
        call(created.secret, now, json.dumps({"alert": {}}).encode())
    assert info.value.field == "params.NAME"
    assert len(_runs(db, job_id)) == 1


def test_a_schedule_whose_job_refuses_its_params_claims_the_tick_and_starts_nothing(
        url: str, keyring: crypto.Keyring) -> None:
    db = _open(url)
    job_id = _job(db, {"WHO": {}}, "for {{WHO}}")  # required, and the schedule gives none
    _, t0 = _schedule(db, keyring, job_id)
    assert firing.tick(db, t0 + timedelta(minutes=1, seconds=1)) == 0
    assert _runs(db, job_id) == []
    assert utcnow() > t0


def test_key_rotation_reseals_webhook_secrets_and_they_still_verify(url: str, tmp_path: Path) -> None:
    from optio.security.redact import Redactor
    from optio.services.secrets import SecretStore

    db = _open(url)
    store = SecretStore(db, tmp_path / "keys2", None, Redactor())
    job_id = _job(db)
    created = trigger_service.create(db, store.keyring, 1, {"type": "webhook", "target": str(job_id)})
    assert created.secret is not None
    before = created.trigger.secret_ciphertext or ""
    assert crypto.key_version_of(before) == 1
    rotation = store.rotate_key()
    assert rotation.current_version == 2 and store.keyring.versions == [2]  # version 1 retired: nothing needs it
    with db.read() as s:
        row = s.get(Trigger, created.trigger.id)
        assert row is not None and crypto.key_version_of(row.secret_ciphertext or "") == 2
    body = b'{"x": 1}'
    now = int(time.time())
    kind, _ = trigger_service.receive(db, store.keyring, created.trigger.id, timestamp=str(now),
                                      signature=trigger_service.sign(created.secret, now, body), body=body)
    assert kind == "job_run"
