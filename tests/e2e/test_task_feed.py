"""`/api/tasks`: job runs and repo tasks in one newest-first, keyset-paginated stream; creation by type."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.git_remote import make_remote
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow


def test_unified_list_pages_filters_and_creates_every_kind(optio_server: OptioServer, tmp_path: Path) -> None:
    s = optio_server
    s.api("POST", "/api/jobs", json={"name": "j", "prompt_template": "p", "agent_config": {"command": "true"}})
    s.api("POST", "/api/repos", json={"remote_url": str(make_remote(tmp_path)), "name": "r",
                                      "require_approval": True}).raise_for_status()
    created = []
    for i in range(7):
        body = ({"type": "job_run", "job": "j"} if i % 2 == 0 else
                {"type": "repo_task", "repo": "r", "title": f"t{i}", "prompt": "p",
                 "agent_config": {"command": "echo x > x.txt"}})
        res = s.api("POST", "/api/tasks", json=body)
        assert res.status_code == 201, res.text
        assert res.json()["type"] == body["type"]
        created.append((res.json()["type"], res.json()["id"]))
    assert s.api("POST", "/api/tasks", json={"type": "nope"}).status_code == 422

    seen, cursor = [], None
    while True:
        page = s.api("GET", "/api/tasks", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["items"]) <= 2
        seen += [(t["type"], t["id"]) for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == created[::-1]
    only_jobs = s.api("GET", "/api/tasks", params={"type": "job_run"}).json()["items"]
    assert [t["id"] for t in only_jobs] == [i for k, i in created[::-1] if k == "job_run"]
    s.wait_state("/api/runs/1", {"completed"})
    done = s.api("GET", "/api/tasks", params={"state": "completed"}).json()["items"]
    assert done and all(t["state"] == "completed" and t["type"] == "job_run" for t in done)
    assert s.api("GET", "/api/tasks", params={"cursor": "not-a-cursor"}).json()["error"]["field"] == "cursor"
    assert s.api("GET", f"/api/repo-tasks/{created[1][1]}").json()["title"] == "t1"
