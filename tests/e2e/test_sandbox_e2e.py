"""The sandbox against a real server: what a member's job and a repo's CI command can reach of Optio.

A member's script job and a CI command try what an attacker would: read the key file and the database,
read another run's worktree and the server's environment, write the database. Each attempt must fail
while the run itself works (it reads its prompt, writes its worktree and HOME, runs python3 and git).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.git_remote import make_remote
from tests.support.optio_server import OPTIO, OptioServer
from tests.support.sandbox import require_sandbox

PROBE = r"""
import os, sqlite3, sys
data, pid = sys.argv[1], sys.argv[2]

def probe(name, action):
    try:
        action()
    except Exception as exc:
        print("BLOCKED", name, type(exc).__name__)
    else:
        print("LEAK", name)

def write_db():
    db = sqlite3.connect(f"file:{data}/optio.db?mode=rw", uri=True)
    db.execute("CREATE TABLE pwned (x)")
    db.commit()

probe("key-file", lambda: open(f"{data}/encryption.keys", "rb").read())
probe("database", lambda: open(f"{data}/optio.db", "rb").read(16))
probe("other-worktree", lambda: open(f"{data}/worktrees/task-1/a.txt").read())
probe("server-environ", lambda: open(f"/proc/{pid}/environ", "rb").read())
probe("database-write", write_db)
print("PROMPT", open(os.environ.get("OPTIO_PROMPT_FILE", "/nonexistent")).read().strip())
print("LOGDIR", sorted(os.listdir(os.path.dirname(os.environ.get("OPTIO_PROMPT_FILE", "/x/y")))))
"""

ATTEMPTS = ("key-file", "database", "other-worktree", "server-environ", "database-write")


def probe_command(data_dir: Path, server_pid: int) -> str:
    return f"python3 -c {shlex.quote(PROBE)} {shlex.quote(str(data_dir))} {server_pid}"


def fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OptioServer]:
    require_sandbox()
    srv = OptioServer(tmp_path / "data", env={"OPTIO_SANDBOX": "on"}).start()
    try:
        yield srv
    finally:
        srv.stop()


def assert_all_blocked(output: str) -> None:
    for name in ATTEMPTS:
        assert f"BLOCKED {name}" in output, output
    assert "LEAK" not in output, output


def test_a_members_job_cannot_reach_optios_data(server: OptioServer, tmp_path: Path) -> None:
    data = server.data_dir
    # Another run's worktree with something in it, and a secret so the key file exists.
    assert server.api("PUT", "/api/secrets/SOME_TOKEN", json={"value": "a-long-secret-value"}).status_code in (200, 201)
    remote = make_remote(tmp_path)
    assert server.api("POST", "/api/repos", json={"remote_url": str(remote), "name": "r",
                                                   "require_approval": True}).status_code == 201
    task = server.api("POST", "/api/repo-tasks", json={
        "repo": "r", "title": "t", "prompt": "p", "agent_type": "script",
        "agent_config": {"command": "echo private-work > a.txt"}}).json()
    server.wait_state(f"/api/repo-tasks/{task['id']}", {"pr_opened"}, timeout=90)
    assert (data / "worktrees" / "task-1" / "a.txt").read_text() == "private-work\n"
    assert (data / "encryption.keys").is_file()
    keys_before = fingerprint(data / "encryption.keys")

    member = server.api("PUT", "/api/members/mallory", json={"role": "member", "create_api_key": True}).json()
    token = member["api_key"]
    command = probe_command(data, server.proc.pid if server.proc else 0)
    job = {"name": "probe", "prompt_template": "the prompt text", "agent_config": {"command": command}}
    assert server.api("POST", "/api/jobs", token=token, json=job).status_code == 201
    run = server.api("POST", "/api/jobs/probe/runs", token=token, json={}).json()
    done = server.wait_state(f"/api/runs/{run['id']}", {"completed", "failed"}, timeout=60)
    lines = [item["text"] for item in server.api("GET", f"/api/runs/{run['id']}/logs").json()["items"]]
    output = "\n".join(lines)
    assert done["state"] == "completed", output
    assert_all_blocked(output)
    # What the run may see still works: its prompt, and of its log dir nothing but the prompt.
    assert "PROMPT the prompt text" in output
    assert "LOGDIR ['prompt.md']" in output

    assert fingerprint(data / "encryption.keys") == keys_before
    with sqlite3.connect(data / "optio.db") as db:
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'pwned'").fetchone() == (0,)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_ci_command_cannot_read_the_data_dir(server: OptioServer, tmp_path: Path) -> None:
    data = server.data_dir
    assert server.api("PUT", "/api/secrets/SOME_TOKEN", json={"value": "a-long-secret-value"}).status_code in (200, 201)
    ci = probe_command(data, server.proc.pid if server.proc else 0)
    remote = make_remote(tmp_path)
    assert server.api("POST", "/api/repos", json={"remote_url": str(remote), "name": "r", "ci_command": ci}
                      ).status_code == 201
    first = server.api("POST", "/api/repo-tasks", json={
        "repo": "r", "title": "t1", "prompt": "p", "agent_type": "script",
        "agent_config": {"command": "echo private-work > a.txt"}}).json()
    opened = server.wait_state(f"/api/repo-tasks/{first['id']}", {"pr_opened"}, timeout=90)
    assert (data / "worktrees" / "task-1" / "a.txt").exists()
    pr = server.api("GET", f"/api/prs/{opened['pr_id']}").json()
    for _ in range(300):
        if pr["ci_runs"] and pr["ci_runs"][0]["status"] != "pending":
            break
        time.sleep(0.2)
        pr = server.api("GET", f"/api/prs/{opened['pr_id']}").json()
    output = pr["ci_runs"][0]["output"]
    assert "BLOCKED key-file" in output and "BLOCKED database " in output + " ", output
    assert "BLOCKED server-environ" in output and "BLOCKED database-write" in output, output
    assert "LEAK" not in output, output
    with sqlite3.connect(data / "optio.db") as db:
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'pwned'").fetchone() == (0,)


def test_raw_output_files_are_private_while_the_run_runs(server: OptioServer) -> None:
    job = {"name": "slow", "prompt_template": "p", "agent_config": {"command": "echo started; sleep 30"}}
    assert server.api("POST", "/api/jobs", json=job).status_code == 201
    run = server.api("POST", "/api/jobs/slow/runs", json={}).json()
    server.wait_state(f"/api/runs/{run['id']}", {"running"})
    found: list[Path] = []
    for _ in range(100):
        found = [p for p in server.data_dir.rglob("std*.log")]
        if len(found) >= 2:
            break
        time.sleep(0.1)
    assert {p.name for p in found} == {"stdout.log", "stderr.log"}
    for path in found:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    server.api("POST", f"/api/runs/{run['id']}/cancel")


def fake_bwrap(tmp_path: Path) -> str:
    """A PATH whose `bwrap` cannot build a sandbox (as on a host without user namespaces)."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    fake = bin_dir / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    return f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"


def serve_briefly(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OPTIO_")}
    base.update({"OPTIO_DATA_DIR": str(tmp_path / "data"), "OPTIO_PORT": "1"}, **env)
    try:
        return subprocess.run([*OPTIO, "serve"], env=base, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired as exc:  # it started serving: that is an answer too
        return subprocess.CompletedProcess(exc.cmd, -1, str(exc.stdout or ""), str(exc.stderr or ""))


def test_a_server_with_auth_refuses_to_start_without_a_sandbox(tmp_path: Path) -> None:
    path = fake_bwrap(tmp_path)
    for mode in ("auto", "on"):
        res = serve_briefly(tmp_path, {"PATH": path, "OPTIO_SANDBOX": mode})
        assert res.returncode == 2, (mode, res.stderr)
        assert "sandbox" in res.stderr, res.stderr
        assert mode == "on" or "OPTIO_SANDBOX=off" in res.stderr, res.stderr
        assert "No permissions" in res.stderr, res.stderr


def test_sandbox_off_must_be_explicit_and_is_announced(tmp_path: Path) -> None:
    """Unconfined agents only with OPTIO_SANDBOX=off, or on a single-user server (auth disabled) under auto."""
    path = fake_bwrap(tmp_path)
    for name, env in (("off", {"OPTIO_SANDBOX": "off"}),
                      ("single-user", {"OPTIO_SANDBOX": "auto", "OPTIO_AUTH": "disabled"})):
        server = OptioServer(tmp_path / name, env={"PATH": path, **env}).start()
        try:
            assert "sandbox is OFF" in server.log()
        finally:
            server.stop()


def test_agents_doctor_reports_the_sandbox(tmp_path: Path) -> None:
    require_sandbox()

    def doctor(path: str) -> dict:
        env = {"PATH": path, "HOME": str(tmp_path)}
        res = subprocess.run([sys.executable, "-m", "optio.cli.main", "agents", "doctor", "--json"], env=env,
                             capture_output=True, text=True, timeout=120, check=True)
        return json.loads(res.stdout)["sandbox"]

    working = doctor(os.environ.get("PATH", "/usr/bin:/bin"))
    assert working["works"] and working["mode"] == "auto" and working["version"][0].isdigit(), working
    assert working["problem"] is None and set(working["limits"]) == {"memory", "processes", "file size"}
    broken = doctor(fake_bwrap(tmp_path))
    assert not broken["works"] and "No permissions" in broken["problem"], broken
