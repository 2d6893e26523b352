"""Persistent agents' model and wake entry point on a real SQLite file: a message and its reconcile enqueue
commit together, slugs are unique per workspace, senders and bodies are checked, a turn drains oldest first."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from optio.errors import Conflict, Invalid, NotFound
from optio.services import persistent_agents as svc
from optio.store import migrate, workspaces
from optio.store import persistent_agents as store
from optio.store.db import Database
from optio.store.models import ReconcileItem, Workspace
from optio.store.types import utcnow


@pytest.fixture
def db(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'optio.db'}")
    migrate.upgrade(db)
    with db.write() as s:
        workspaces.ensure_default(s)
        s.add(Workspace(slug="other", name="Other"))
    return db


def _agent(db: Database, slug: str = "scribe", ws: int = 1) -> int:
    return svc.create_agent(db, ws, {"slug": slug, "agent_type": "script",
                                     "agent_config": {"command": "cat"}}).id


def test_send_inserts_the_message_and_enqueues_the_agent_in_one_transaction(db: Database) -> None:
    agent_id = _agent(db)
    with db.read() as s:
        assert s.scalar(select(ReconcileItem).where(ReconcileItem.kind == "agent")) is None
    svc.send_message(db, 1, "scribe", "hello", sender="user:1")
    with db.read() as s:
        item = s.scalar(select(ReconcileItem).where(ReconcileItem.kind == "agent", ReconcileItem.run_id == agent_id))
        assert item is not None and item.workspace_id == 1
    # A message that fails its checks leaves nothing behind, not even an enqueue.
    with db.write() as s:
        s.query(ReconcileItem).delete()
    with pytest.raises(Invalid):
        svc.send_message(db, 1, "scribe", "  ", sender="user:1")
    with db.read() as s:
        assert s.scalar(select(ReconcileItem)) is None
    assert svc.get_agent(db, 1, "scribe").pending_messages == 1


def test_slugs_are_unique_per_workspace_only(db: Database) -> None:
    _agent(db, "a")
    with pytest.raises(Conflict):
        _agent(db, "a")
    _agent(db, "a", ws=2)  # the same slug in another workspace is another agent
    with pytest.raises(NotFound):
        svc.send_message(db, 2, "missing", "x", sender="user:1")
    with pytest.raises(Invalid) as bad:
        _agent(db, "Bad Slug")
    assert bad.value.field == "slug"


@pytest.mark.parametrize("sender", ["user:1", "agent:default/peer", "system:schedule", "external:github"])
def test_every_sender_form_is_accepted(db: Database, sender: str) -> None:
    _agent(db)
    assert svc.send_message(db, 1, "scribe", "x", sender=sender).sender == sender


@pytest.mark.parametrize("sender", ["", "user:x", "agent:noslash", "robot:1", "system:", "agent:a/b/c"])
def test_malformed_senders_are_refused(db: Database, sender: str) -> None:
    _agent(db)
    with pytest.raises(Invalid) as bad:
        svc.send_message(db, 1, "scribe", "x", sender=sender)
    assert bad.value.field == "sender"


def test_agent_to_agent_messages_name_the_sender_by_workspace_and_slug(db: Database) -> None:
    _agent(db, "a")
    _agent(db, "b")
    _agent(db, "c")
    msg = svc.send_from_agent(db, 1, "a", "b", "ping")
    ws_slug = msg.sender.split(":", 1)[1].split("/")[0]
    assert msg.sender == f"agent:{ws_slug}/a"
    sent = svc.broadcast_from_agent(db, 1, "a", "all hands")
    assert sorted(m.agent_id for m in sent) == sorted(a.id for a in svc.list_peers(db, 1, exclude_slug="a"))
    assert [m.body for m in svc.read_inbox(db, 1, "b")] == ["ping", "all hands"]


def test_a_turn_drains_oldest_first_and_only_success_marks_them_processed(db: Database) -> None:
    agent_id = _agent(db)
    for i in range(5):
        svc.send_message(db, 1, "scribe", f"m{i}", sender="user:1")
    with db.write() as s:
        agent = store.load(s, agent_id, 1)
        assert agent is not None
        turn, drained = store.start_turn(s, agent, number=1, now=utcnow(), max_messages=3)
        assert [m.body for m in drained] == ["m0", "m1", "m2"]
        store.close_turn(s, agent_id, turn, outcome="failed", error="boom", now=utcnow())
    assert svc.get_agent(db, 1, "scribe").pending_messages == 5  # a failed turn leaves them for the retry
    with db.write() as s:
        agent = store.load(s, agent_id, 1)
        assert agent is not None
        turn, drained = store.start_turn(s, agent, number=2, now=utcnow(), max_messages=10)
        assert [m.body for m in drained] == ["m0", "m1", "m2", "m3", "m4"]
        # A message arriving during the turn is not the turn's.
        store.insert_message(s, agent, sender="user:1", type="text", body="late")
        assert store.pending_count(s, agent_id, not_in_turn=turn.id) == 1
        store.close_turn(s, agent_id, turn, outcome="succeeded", error=None, now=utcnow())
    assert svc.get_agent(db, 1, "scribe").pending_messages == 1
    assert [m.body for m in svc.read_inbox(db, 1, "scribe", pending_only=True)] == ["late"]


def test_schedule_and_webhook_triggers_wake_an_agent_with_a_message(db: Database, tmp_path: Path) -> None:
    import json
    import time as clock
    from datetime import timedelta

    from optio.control import triggers as firing
    from optio.security import crypto
    from optio.services import triggers as trigger_service

    keyring = crypto.load_keyring(tmp_path / "keys", None)
    _agent(db, "watcher")
    created = trigger_service.create(db, keyring, 1, {"type": "schedule", "target_type": "persistent_agent",
                                                      "target": "watcher", "cron": "* * * * *",
                                                      "params": {"topic": "ops"}})
    assert created.target_name == "watcher"
    start = created.trigger.last_due_at
    assert start is not None
    assert firing.tick(db, start + timedelta(seconds=61)) == 1
    (msg,) = svc.read_inbox(db, 1, "watcher")
    assert msg.sender == f"system:trigger-{created.trigger.id}" and msg.type == "event"
    assert json.loads(msg.body)["params"] == {"topic": "ops"}
    hook = trigger_service.create(db, keyring, 1, {"type": "webhook", "target_type": "persistent_agent",
                                                   "target": "watcher"})
    assert hook.secret is not None
    body = b'{"alert": "disk full"}'
    ts = int(clock.time())
    kind, agent_id = trigger_service.receive(db, keyring, hook.trigger.id, timestamp=str(ts),
                                             signature=trigger_service.sign(hook.secret, ts, body), body=body)
    assert kind == "agent" and agent_id == svc.get_agent(db, 1, "watcher").agent.id
    last = svc.read_inbox(db, 1, "watcher")[-1]
    assert last.sender == f"external:trigger-{hook.trigger.id}"
    assert json.loads(last.body)["payload"] == {"alert": "disk full"}
    assert svc.get_agent(db, 1, "watcher").pending_messages == 2
    with pytest.raises(Invalid) as bad:
        trigger_service.create(db, keyring, 1, {"type": "manual", "target_type": "persistent_agent",
                                                "target": "nobody"})
    assert bad.value.field == "target"


def test_update_checks_fields_and_null_removes_a_limit(db: Database) -> None:
    svc.create_agent(db, 1, {"slug": "capped", "agent_type": "script", "agent_config": {"command": "true"},
                             "max_cost_usd": 2.5, "max_turn_s": 60})
    changed = svc.update_agent(db, 1, "capped", {"max_cost_usd": None, "lifecycle": "sticky", "name": None})
    assert changed.max_cost_usd is None and changed.max_turn_s == 60 and changed.lifecycle == "sticky"
    assert changed.name == "capped"
    with pytest.raises(Invalid) as bad:
        svc.update_agent(db, 1, "capped", {"lifecycle": "forever"})
    assert bad.value.field == "lifecycle"
    with pytest.raises(Invalid) as bad:
        svc.update_agent(db, 1, "capped", {"agent_config": {"command": ""}})
    assert bad.value.field == "agent_config.command"
    with pytest.raises(Invalid) as bad:
        svc.update_agent(db, 1, "capped", {"secret_names": ["MISSING"]})
    assert bad.value.field == "secret_names"


def test_a_turn_is_live_only_while_it_is_the_agents_open_turn(db: Database) -> None:
    agent_id = _agent(db)
    svc.send_message(db, 1, "scribe", "hi", sender="user:1")
    with db.write() as s:
        agent = store.load(s, agent_id, 1)
        assert agent is not None
        agent.state = "running"
        turn, _ = store.start_turn(s, agent, number=1, now=utcnow(), max_messages=10)
        turn_id = turn.id
    assert svc.live_turn(db, 1, agent_id, turn_id) is not None
    assert svc.live_turn(db, 2, agent_id, turn_id) is None  # another workspace
    with db.write() as s:
        done = store.turn_by_id(s, turn_id)
        assert done is not None
        store.close_turn(s, agent_id, done, outcome="succeeded", error=None, now=utcnow())
    assert svc.live_turn(db, 1, agent_id, turn_id) is None
