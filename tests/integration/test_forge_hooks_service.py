"""The forge webhook service on a real database: verify first, handle each delivery id once, wake exactly the
tasks an event names (by its task, or by asking the forge whose PR it is), every task of the repo otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from tests.support.forge_db import repo_world

from optio.control.ports import BadSignature, ForgeEvent, ForgeRegistry
from optio.services.forge_hooks import receive
from optio.store.models import ReconcileItem, Repo, RepoTask


class HookForge:
    """A forge whose deliveries are `b"ok"` (anything else fails verification) and name these events."""

    name = "hooky"

    def __init__(self, events: list[ForgeEvent], owners: dict[int, int] | None = None) -> None:
        self.events = events
        self.owners = owners or {}

    def parse_event(self, repo_id: int, headers: Mapping[str, str], body: bytes) -> list[ForgeEvent]:
        if body != b"ok":
            raise BadSignature("no")
        return self.events

    def task_for_pr(self, repo_id: int, number: int) -> int | None:
        return self.owners.get(number)


@pytest.fixture
def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    db, _remote, repo_id = repo_world(tmp_path, forge="hooky")
    ids = []
    with db.write() as session:
        ws = session.get(Repo, repo_id).workspace_id  # type: ignore[union-attr]
        for n, state in enumerate(("pr_opened", "pr_opened", "completed")):
            task = RepoTask(workspace_id=ws, repo_id=repo_id, title=f"t{n}", prompt="p", agent_type="script",
                            agent_config={}, state=state, branch=f"optio/{n}")
            session.add(task)
            session.flush()
            ids.append(task.id)
    return db, repo_id, ids


def queued(db) -> set[int]:  # type: ignore[no-untyped-def]
    with db.read() as session:
        return {item.run_id for item in session.query(ReconcileItem).all()}


def test_bad_signature_writes_nothing_and_a_delivery_counts_once(world) -> None:  # type: ignore[no-untyped-def]
    db, repo_id, (a, _b, _done) = world
    forges = ForgeRegistry({"hooky": HookForge([ForgeEvent(repo_id, 5, "ci", a)])})
    with pytest.raises(BadSignature):
        receive(db, forges, repo_id, {"X-GitHub-Delivery": "d1"}, b"forged")
    assert queued(db) == set()
    first = receive(db, forges, repo_id, {"X-GitHub-Delivery": "d1"}, b"ok")
    assert (first.status, first.enqueued, first.duplicate) == (200, 1, False) and queued(db) == {a}
    again = receive(db, forges, repo_id, {"X-GitHub-Delivery": "d1"}, b"ok")
    assert again.duplicate and again.enqueued == 0
    assert receive(db, forges, 999, {}, b"ok").status == 204


def test_an_event_without_its_task_asks_the_forge_whose_pr_it_is(world) -> None:  # type: ignore[no-untyped-def]
    db, repo_id, (_a, b, _done) = world
    forges = ForgeRegistry({"hooky": HookForge([ForgeEvent(repo_id, 8, "review")], owners={8: b})})
    assert receive(db, forges, repo_id, {"X-Gitlab-Event-UUID": "u1"}, b"ok").enqueued == 1
    assert queued(db) == {b}


def test_a_base_move_wakes_every_unfinished_task_with_a_branch(world) -> None:  # type: ignore[no-untyped-def]
    db, repo_id, (a, b, done) = world
    forges = ForgeRegistry({"hooky": HookForge([ForgeEvent(repo_id, 0, "base_moved")])})
    assert receive(db, forges, repo_id, {}, b"ok").enqueued == 2
    assert queued(db) == {a, b} and done not in queued(db)
