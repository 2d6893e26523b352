"""Input that would jam the server or act on the wrong thing is refused at the API with a 422 naming the field:
control characters in text that reaches git or a shell, a default branch the remote does not have, secret
names that do not resolve, loosely written ids and numbers, a log cursor beyond any stored sequence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.support.git_remote import git, make_remote
from tests.support.optio_server import OptioServer

pytestmark = pytest.mark.slow

SCRIPT = {"command": "true"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("inputs")
    server = OptioServer(tmp / "data").start()
    try:
        remote = make_remote(tmp)
        seed = tmp / "remote.git-seed"
        git("checkout", "-qb", "dev", cwd=seed)
        git("push", "-q", "origin", "dev", cwd=seed)
        repo = server.api("POST", "/api/repos", json={"remote_url": str(remote), "name": "r"})
        assert repo.status_code == 201 and repo.json()["default_branch"] == "main", repo.text
        other = server.api("POST", "/api/repos", json={"remote_url": str(make_remote(tmp, "other.git")),
                                                       "name": "other"})
        assert other.status_code == 201, other.text
        server.api("PUT", "/api/secrets/WS_TOKEN", json={"value": "workspace-token-value"}).raise_for_status()
        server.api("PUT", "/api/secrets/R_TOKEN", json={"value": "repo-r-token-value", "repo": "r"}).raise_for_status()
        server.api("PUT", "/api/secrets/OTHER_TOKEN",
                   json={"value": "other-repo-token-value", "repo": "other"}).raise_for_status()
        job = server.api("POST", "/api/jobs", json={"name": "hello", "prompt_template": "hi",
                                                    "agent_config": {"command": "echo hello"}}).json()
        run = server.api("POST", "/api/jobs/hello/runs", json={}).json()
        server.wait_state(f"/api/runs/{run['id']}", {"completed"})
        yield {"server": server, "tmp": tmp, "remote": remote, "run_id": run["id"], "job_id": job["id"]}
    finally:
        server.stop()


def send(s: OptioServer, method: str, path: str, body: Any) -> httpx.Response:
    """A JSON request written with ASCII escapes, so a lone surrogate (`\\ud800`) reaches the server as JSON allows."""
    return s.api(method, path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


def invalid(res: httpx.Response, field: str, *, says: str = "") -> dict[str, Any]:
    assert res.status_code == 422, (res.status_code, res.text)
    error = res.json()["error"]
    assert error["field"] == field, error
    assert says in error["message"], error
    return error


def test_control_characters_in_titles_names_and_branches_are_refused(world: dict[str, Any]) -> None:
    s = world["server"]
    for bad in ("fix\x00it", "fix\x1b[2Jit", "fix\nit", "fix\x7fit", "fix\u0085it", "fix\ud800it"):
        invalid(send(s, "POST", "/api/repo-tasks", {"repo": "r", "title": bad, "prompt": "p"}), "title")
        invalid(send(s, "POST", "/api/tasks", {"type": "repo_task", "repo": "r", "title": bad, "prompt": "p"}),
                "title")
        invalid(send(s, "POST", "/api/jobs", {"name": bad, "prompt_template": "p", "agent_config": SCRIPT}), "name")
        invalid(send(s, "POST", "/api/repos", {"remote_url": str(world["remote"]), "name": bad}), "name")
        invalid(send(s, "POST", "/api/repos", {"remote_url": str(world["remote"]), "name": "x",
                                                "default_branch": bad}), "default_branch")
        invalid(send(s, "PATCH", "/api/repos/r", {"default_branch": bad}), "default_branch")
        invalid(send(s, "POST", "/api/tickets", {"title": bad}), "title")
    invalid(s.api("POST", "/api/repo-tasks", json={"repo": "r", "title": "t", "prompt": "a\x00b"}), "prompt")
    invalid(s.api("POST", "/api/repo-tasks", json={"repo": "r", "title": "t", "prompt": "p",
                                                   "agent_config": {"command": "echo \x00"}}), "agent_config")
    invalid(s.api("POST", "/api/jobs/hello/runs", json={"params": {"X": "a\x00"}}), "params.X")
    # Newlines and tabs are fine where text is multi-line, and nothing was created by the refusals above.
    ok = s.api("POST", "/api/tickets", json={"title": "multi-line body", "body": "line one\n\tline two"})
    assert ok.status_code == 201, ok.text
    assert "multi-line body" in [t["title"] for t in s.api("GET", "/api/tickets").json()]
    assert all("fix" not in t["title"] for t in s.api("GET", "/api/tickets").json())
    assert {j["name"] for j in s.api("GET", "/api/jobs").json()} == {"hello"}


def test_a_default_branch_the_remote_lacks_is_refused_at_add_and_at_change(world: dict[str, Any]) -> None:
    s, remote = world["server"], str(world["remote"])
    invalid(s.api("POST", "/api/repos", json={"remote_url": remote, "name": "nb", "default_branch": "nope"}),
            "default_branch", says="does not exist on the remote")
    invalid(s.api("POST", "/api/repos", json={"remote_url": remote, "name": "nb", "default_branch": "a..b"}),
            "default_branch", says="not a valid branch name")
    invalid(s.api("POST", "/api/repos", json={"remote_url": remote, "name": "nb", "default_branch": "-x"}),
            "default_branch")
    invalid(s.api("PATCH", "/api/repos/r", json={"default_branch": "nope"}), "default_branch",
            says="does not exist on the remote")
    invalid(s.api("PATCH", "/api/repos/r", json={"default_branch": "HEAD"}), "default_branch")
    assert s.api("GET", "/api/repos/r").json()["default_branch"] == "main"
    # An existing branch is accepted both ways; the CLI changes it too.
    added = s.api("POST", "/api/repos", json={"remote_url": remote, "name": "on-dev", "default_branch": "dev"})
    assert added.status_code == 201 and added.json()["default_branch"] == "dev", added.text
    s.cli("repo", "update", "on-dev", "--default-branch", "main", check=True)
    assert s.api("GET", "/api/repos/on-dev").json()["default_branch"] == "main"
    res = s.cli("repo", "update", "on-dev", "--default-branch", "gone")
    assert res.returncode != 0 and "does not exist on the remote" in res.stdout + res.stderr
    # An empty remote has no branch to work from.
    empty = world["tmp"] / "empty.git"
    git("init", "-q", "--bare", str(empty), cwd=world["tmp"])
    invalid(s.api("POST", "/api/repos", json={"remote_url": str(empty), "name": "empty"}), "default_branch",
            says="no branches")


def test_secret_names_must_be_valid_and_visible_when_created(world: dict[str, Any]) -> None:
    s = world["server"]
    job = {"prompt_template": "p", "agent_config": SCRIPT}
    task = {"repo": "r", "title": "t", "prompt": "p", "agent_config": SCRIPT}
    invalid(s.api("POST", "/api/jobs", json={**job, "name": "j1", "secret_names": ["../x"]}), "secret_names.0")
    invalid(s.api("POST", "/api/jobs", json={**job, "name": "j1", "secret_names": ["MISSING"]}), "secret_names",
            says="'MISSING'")
    # A job has no repo: a repo's secret is not visible to it.
    invalid(s.api("POST", "/api/jobs", json={**job, "name": "j1", "secret_names": ["R_TOKEN"]}), "secret_names",
            says="'R_TOKEN'")
    invalid(s.api("POST", "/api/repo-tasks", json={**task, "secret_names": ["WS_TOKEN", "MISSING"]}),
            "secret_names", says="'MISSING'")
    # Another repo's secret is not visible to a task of this repo.
    invalid(s.api("POST", "/api/repo-tasks", json={**task, "secret_names": ["OTHER_TOKEN"]}), "secret_names",
            says="'OTHER_TOKEN'")
    ticket = s.api("POST", "/api/tickets", json={"title": "needs a secret"}).json()
    invalid(s.api("POST", f"/api/tickets/{ticket['number']}/work", json={"repo": "r", "agent_config": SCRIPT,
                                                                         "secret_names": ["MISSING"]}),
            "secret_names")
    invalid(s.api("POST", "/api/repos", json={"remote_url": str(make_remote(world["tmp"], "sec.git")),
                                              "name": "sec", "secret_names": ["MISSING"]}), "secret_names")
    invalid(s.api("PATCH", "/api/repos/r", json={"secret_names": ["OTHER_TOKEN"]}), "secret_names")
    # Visible names are accepted: the workspace's, and for a task or repo its repo's own.
    assert s.api("POST", "/api/jobs", json={**job, "name": "j2", "secret_names": ["WS_TOKEN"]}).status_code == 201
    made = s.api("POST", "/api/repo-tasks", json={**task, "secret_names": ["WS_TOKEN", "R_TOKEN"]})
    assert made.status_code == 201, made.text
    patched = s.api("PATCH", "/api/repos/r", json={"secret_names": ["R_TOKEN"]})
    assert patched.status_code == 200 and patched.json()["secret_names"] == ["R_TOKEN"], patched.text


def test_ids_and_numbers_are_strict(world: dict[str, Any]) -> None:
    s = world["server"]
    key = s.api("POST", "/api/apikeys", json={"name": "victim"}).json()
    for spelling in (f"{key['id']}%20", f"%2B{key['id']}", f"{key['id']}.0", "true"):
        invalid(s.api("DELETE", f"/api/apikeys/{spelling}"), "key_id")
    assert s.api("GET", "/api/me", token=key["key"]).status_code == 200  # not revoked
    run_id = world["run_id"]
    for spelling in (f"{run_id}%20", f"%2B{run_id}", f"{run_id}.0", f"%20{run_id}"):
        invalid(s.api("GET", f"/api/runs/{spelling}"), "run_id")
        invalid(s.api("POST", f"/api/runs/{spelling}/retry"), "run_id")
    invalid(s.api("GET", "/api/runs", params={"limit": "1.0"}), "limit")
    invalid(s.api("GET", f"/api/runs/{run_id}/logs", params={"after": "+0"}), "after")
    job = {"name": "strict", "prompt_template": "p", "agent_config": SCRIPT}
    invalid(s.api("POST", "/api/jobs", json={**job, "max_retries": True}), "max_retries")
    invalid(s.api("POST", "/api/jobs", json={**job, "max_retries": "1"}), "max_retries")
    invalid(s.api("POST", "/api/jobs", json={**job, "max_retries": 1.0}), "max_retries")
    invalid(s.api("POST", "/api/jobs", json={**job, "agent_config": {"command": 123}}), "agent_config.command")
    invalid(s.api("POST", "/api/repo-tasks", json={"repo": "r", "title": "t", "prompt": "p", "depends_on": ["1"]}),
            "depends_on.0")
    invalid(s.api("POST", "/api/repo-tasks", json={"repo": "r", "title": "t", "prompt": "p", "priority": True}),
            "priority")
    invalid(s.api("PATCH", "/api/repos/r", json={"require_approval": "yes"}), "require_approval")
    assert {j["name"] for j in s.api("GET", "/api/jobs").json()}.isdisjoint({"strict"})


def test_a_log_cursor_beyond_any_sequence_is_a_422_not_a_broken_stream(world: dict[str, Any]) -> None:
    s, run_id = world["server"], world["run_id"]
    for path in (f"/api/runs/{run_id}/logs/stream", f"/api/runs/{run_id}/logs", "/api/repo-tasks/1/logs/stream",
                 "/api/repo-tasks/1/logs"):
        invalid(s.api("GET", path, params={"after": "9223372036854775808"}), "after")
        invalid(s.api("GET", path, params={"after": str(10**30)}), "after")
    # The largest valid cursor streams to a clean end.
    with httpx.stream("GET", f"{s.url}/api/runs/{run_id}/logs/stream", params={"after": str(2**63 - 1)},
                      headers={"Authorization": f"Bearer {s.admin_key}"}, timeout=30) as res:
        assert res.status_code == 200
        text = "".join(res.iter_text())
    assert "event: end" in text and '"state": "completed"' in text
