"""Task lists at volume through a real `optio serve` (HTTP only) over thousands of tasks in three workspaces.

Keyset pages return every task exactly once, newest first, while other tasks are being created; a state filter
returns exactly that state's tasks; a cursor taken from another workspace or filter only positions the page
(it never shows another workspace's task); a malformed cursor is a 422 naming the field, never a 5xx.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from tests.support.optio_server import OptioServer
from tests.support.volume import Scope, insert_tasks, scopes

from optio.store.db import Database
from optio.store.models import RepoTask

pytestmark = pytest.mark.slow
PER_WORKSPACE = 1200


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OptioServer, Database, list[Scope]]]:
    """One server for the module: the tests only read, but for the tasks one of them adds, which the others'
    expectations (read from the database when they run) include."""
    tmp_path = tmp_path_factory.mktemp("volume")
    server = OptioServer(tmp_path / "data")
    server.serve_args = ["--role", "api"]  # nothing reconciles: states stay as seeded
    server.start()
    db = Database(f"sqlite:///{tmp_path / 'data' / 'optio.db'}")
    try:
        sc = scopes(db)
        insert_tasks(db, sc, PER_WORKSPACE * len(sc))
        yield server, db, sc
    finally:
        server.stop()
        db.dispose()


def ids_of(db: Database, workspace_id: int, state: str | None = None) -> list[int]:
    with db.read() as s:
        q = select(RepoTask.id).where(RepoTask.workspace_id == workspace_id)
        if state:
            q = q.where(RepoTask.state == state)
        return list(s.scalars(q))


def walk(server: OptioServer, path: str, params: dict[str, Any], on_page: Any = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        res = server.api("GET", path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert res.status_code == 200, res.text
        page = res.json()
        assert len(page["items"]) <= params["limit"]
        items += page["items"]
        if on_page is not None:
            on_page()
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def cursor_of(task_id: int) -> str:
    return base64.urlsafe_b64encode(str(task_id).encode()).decode().rstrip("=")


def test_keyset_pages_list_every_task_once_in_order_while_tasks_are_created(
        seeded: tuple[OptioServer, Database, list[Scope]]) -> None:
    server, db, sc = seeded
    ws = sc[0].workspace_id
    before = ids_of(db, ws)
    made = 0

    def create_more() -> None:  # another client creates tasks between (and during) page reads
        nonlocal made
        insert_tasks(db, sc[:1], 7, first=100_000 + made)
        made += 7

    creator = threading.Thread(target=lambda: [create_more() for _ in range(5)])
    creator.start()
    items = walk(server, "/api/repo-tasks", {"limit": 97}, on_page=create_more)
    creator.join()
    seen = [t["id"] for t in items]
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    assert set(before) <= set(seen)
    assert set(seen) <= set(ids_of(db, ws))  # nothing of another workspace
    assert made > 0

    # The feed pages on (created_at, type, id): the same, every task of the workspace once, newest first.
    feed = walk(server, "/api/tasks", {"limit": 150, "type": "repo_task"}, on_page=create_more)
    feed_ids = [t["id"] for t in feed]
    assert len(feed_ids) == len(set(feed_ids))
    assert set(before) <= set(feed_ids) <= set(ids_of(db, ws))
    stamps = [t["created_at"] for t in feed]
    assert stamps == sorted(stamps, reverse=True)


@pytest.mark.parametrize("path", ["/api/repo-tasks", "/api/tasks"])
def test_a_state_filter_pages_through_exactly_that_states_tasks(seeded: tuple[OptioServer, Database, list[Scope]],
                                                                 path: str) -> None:
    server, db, sc = seeded
    ws = sc[0].workspace_id
    for state in ("running", "completed"):
        items = walk(server, path, {"limit": 40, "state": state})
        assert {t["state"] for t in items} == {state}
        assert sorted(t["id"] for t in items) == sorted(ids_of(db, ws, state))


def test_a_cursor_from_elsewhere_only_positions_the_page_and_a_malformed_one_is_a_422(
        seeded: tuple[OptioServer, Database, list[Scope]]) -> None:
    server, db, sc = seeded
    mine = set(ids_of(db, sc[0].workspace_id))
    theirs = ids_of(db, sc[1].workspace_id)
    # A cursor made from another workspace's task id: this workspace's tasks below it, nothing of theirs.
    pivot = sorted(theirs)[len(theirs) // 2]
    page = server.api("GET", "/api/repo-tasks", params={"cursor": cursor_of(pivot), "limit": 50}).json()
    assert page["items"] and all(t["id"] in mine and t["id"] < pivot for t in page["items"])
    # A cursor from a state-filtered page, used without the filter: every task below it, in order.
    running = server.api("GET", "/api/repo-tasks", params={"state": "running", "limit": 5}).json()
    page = server.api("GET", "/api/repo-tasks", params={"cursor": running["next_cursor"], "limit": 50}).json()
    expected = sorted((i for i in mine if i < running["items"][-1]["id"]), reverse=True)[:50]
    assert [t["id"] for t in page["items"]] == expected
    # Another workspace's task is not there to open.
    assert server.api("GET", f"/api/repo-tasks/{theirs[0]}").status_code == 404
    bad = ["not-a-cursor", "%%%", cursor_of(-5), base64.urlsafe_b64encode(b"abc").decode(), cursor_of(2**70),
           base64.urlsafe_b64encode(b'["x", 1, 2]').decode()]
    for path in ("/api/repo-tasks", "/api/runs", "/api/tasks"):
        for cursor in bad:
            res = server.api("GET", path, params={"cursor": cursor})
            assert res.status_code == 422, (path, cursor, res.text)
            assert res.json()["error"]["field"] == "cursor"


def test_optio_task_list_pages_on_with_the_cursor_it_prints(seeded: tuple[OptioServer, Database, list[Scope]]) -> None:
    server, db, sc = seeded
    newest = sorted(ids_of(db, sc[0].workspace_id), reverse=True)[:10]
    first = server.cli("task", "list", "--limit", "5", "--json", check=True)
    assert [t["id"] for t in json.loads(first.stdout)] == newest[:5]
    table = server.cli("task", "list", "--limit", "5", check=True)
    hint = table.stderr.strip().splitlines()[-1]
    assert hint.startswith("more: optio task list --cursor ")
    more = server.cli("task", "list", "--limit", "5", "--json", "--cursor", hint.rsplit(" ", 1)[1], check=True)
    assert [t["id"] for t in json.loads(more.stdout)] == newest[5:10]
