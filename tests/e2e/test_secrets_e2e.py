"""Secrets through the real CLI and server: injected by name, never stored or shown in plaintext, rotatable."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest
from tests.support.optio_server import OptioServer

from optio.security import crypto
from optio.security.redact import Redactor
from optio.services.secrets import SecretStore
from optio.store.db import Database

pytestmark = pytest.mark.slow

TOKEN = "tok-7f3a9c1e5b2d4f60"  # workspace secret
DB_PASSWORD = "pw-Zq81xYv02LmN"  # second workspace secret, never requested by the job
# The job prints the secret plainly, inside a bearer header, on stderr, and fails quoting it, and also
# prints it reversed: the reversed form proves the value reached the process.
COMMAND = (
    'echo "token=$API_TOKEN"; echo "curl -H \'Authorization: Bearer $API_TOKEN\'"; '
    'echo "$API_TOKEN" >&2; printf "%s" "$API_TOKEN" | rev; echo; '
    'echo "db=${DB_PASSWORD:-unset}"; echo "fatal: bad credentials $API_TOKEN" >&2; exit 3'
)


def every_file_byte(data_dir: Path) -> bytes:
    """Every byte under the data dir, agent output files included (they are removed once stored)."""
    return b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())


def test_secret_values_never_reach_storage_logs_or_streams(optio_server: OptioServer) -> None:
    s = optio_server
    res = s.cli("secret", "set", "API_TOKEN", "--value", TOKEN, check=True)
    assert TOKEN not in res.stdout + res.stderr
    s.cli("secret", "set", "DB_PASSWORD", "--value", DB_PASSWORD, check=True)
    listed = s.cli("secret", "list", "--json", check=True).stdout
    assert {x["name"] for x in json.loads(listed)} == {"API_TOKEN", "DB_PASSWORD"}
    assert TOKEN not in listed and DB_PASSWORD not in listed

    s.cli("job", "create", "--name", "leaky", "--prompt", "go", "--command", COMMAND, "--secret", "API_TOKEN",
          check=True)
    run = json.loads(s.cli("job", "run", "leaky", "--wait", "--json").stdout)
    assert run["state"] == "failed"

    lines = [x["text"] for x in s.api("GET", f"/api/runs/{run['id']}/logs").json()["items"]]
    assert TOKEN[::-1] in lines, lines  # the secret was injected under its own name
    assert "db=unset" in lines  # ...and only the secret the job named
    assert "token=***" in lines and "curl -H 'Authorization: Bearer ***'" in lines
    streamed = httpx.get(f"{s.url}/api/runs/{run['id']}/logs/stream", timeout=30,
                         headers={"Authorization": f"Bearer {s.admin_key}"}).text
    cli_logs = s.cli("run", "logs", str(run["id"]), check=True)
    shown = s.cli("run", "show", str(run["id"]), "--json", check=True).stdout
    events = s.api("GET", f"/api/runs/{run['id']}/events").text
    tasks = s.api("GET", "/api/tasks").text
    for text in (streamed, cli_logs.stdout, cli_logs.stderr, shown, events, tasks, s.log()):
        assert TOKEN not in text and DB_PASSWORD not in text

    s.stop()  # flush the WAL so the database file is complete
    raw = every_file_byte(s.data_dir)
    assert TOKEN.encode() not in raw and DB_PASSWORD.encode() not in raw
    assert TOKEN[::-1].encode() in raw  # the grep does see the logs
    with sqlite3.connect(s.data_dir / "optio.db") as db:
        for table in ("run_logs", "run_events", "job_runs", "audit_events", "secrets"):
            dump = json.dumps(db.execute(f"SELECT * FROM {table}").fetchall(), default=str)
            assert TOKEN not in dump and DB_PASSWORD not in dump, table
        injections = db.execute("SELECT target_id, actor, user_id, detail FROM audit_events "
                                "WHERE action='secret.inject'").fetchall()
        admin_id = db.execute("SELECT id FROM users WHERE username='admin'").fetchone()[0]
    # One row per injected secret, naming the secret, the run and the user who created the run.
    assert [(name, actor, user) for name, actor, user, _ in injections] == [("API_TOKEN", "admin", admin_id)]
    detail = json.loads(injections[0][3])
    assert (detail["run_kind"], detail["run_id"], detail["name"]) == ("job_run", run["id"], "API_TOKEN")
    key_file = s.data_dir / crypto.KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_rotate_key_reencrypts_everything_and_retires_the_old_key(optio_server: OptioServer) -> None:
    s = optio_server
    s.cli("secret", "set", "API_TOKEN", "--value", TOKEN, check=True)
    s.api("POST", "/api/workspaces", json={"slug": "other"}).raise_for_status()
    s.cli("--workspace", "other", "secret", "set", "DB_PASSWORD", "--value", DB_PASSWORD, check=True)
    key_file = s.data_dir / crypto.KEY_FILE_NAME
    old = json.loads(key_file.read_text())
    assert old["current"] == 1

    res = s.cli("secrets", "rotate-key", check=True)
    assert "version 2" in res.stdout

    new = json.loads(key_file.read_text())
    assert new["current"] == 2 and list(new["keys"]) == ["2"] and old["keys"]["1"] not in key_file.read_text()
    versions = {x["key_version"] for x in json.loads(s.cli("secret", "list", "--json", check=True).stdout)}
    assert versions == {2}
    # Every value opens with the key file as it is now, which no longer holds version 1...
    keyring = crypto.load_keyring(s.data_dir, None)
    with sqlite3.connect(s.data_dir / "optio.db") as db:
        rows = db.execute("SELECT workspace_id, scope_key, name, ciphertext FROM secrets ORDER BY name").fetchall()
    values = {name: keyring.decrypt(ct, aad=f"{ws}\x00{key}\x00{name}".encode()) for ws, key, name, ct in rows}
    assert values == {"API_TOKEN": TOKEN, "DB_PASSWORD": DB_PASSWORD}
    # ...and with the old key alone nothing opens any more.
    old_ring = crypto.Keyring({1: crypto.parse_key(old["keys"]["1"])}, 1)
    with pytest.raises(crypto.SecretDecryptError):
        old_ring.decrypt(rows[0][3], aad=f"{rows[0][0]}\x00{rows[0][1]}\x00{rows[0][2]}".encode())

    # After a restart the server reads the rotated secrets and injects them into a run.
    s.restart()
    s.cli("job", "create", "--name", "rev", "--prompt", "go", "--command", 'printf "%s" "$API_TOKEN" | rev',
          "--secret", "API_TOKEN", check=True)
    run = json.loads(s.cli("job", "run", "rev", "--wait", "--json").stdout)
    assert run["state"] == "completed"
    lines = [x["text"] for x in s.api("GET", f"/api/runs/{run['id']}/logs").json()["items"]]
    assert lines == [TOKEN[::-1]]
    audit = s.api("GET", "/api/audit", params={"action": "rotate_encryption_key"}).json()["items"]
    assert len(audit) == 1 and audit[0]["actor"] == "admin"


def run_logs(s: OptioServer, *args: str) -> tuple[dict, list[str]]:
    """Run a job through the CLI (args may start with --workspace <slug>) and return the run and its log lines."""
    run = json.loads(s.cli(*args, "--wait", "--json").stdout)
    headers = {"X-Optio-Workspace": args[1]} if args[0] == "--workspace" else {}
    items = s.api("GET", f"/api/runs/{run['id']}/logs", headers=headers).json()["items"]
    return run, [x["text"] for x in items]


def test_a_workspace_secret_masks_only_that_workspaces_output_and_stops_when_deleted(
        optio_server: OptioServer) -> None:
    s = optio_server
    s.api("POST", "/api/workspaces", json={"slug": "other"}).raise_for_status()
    b = ("--workspace", "other")
    refused = s.api("PUT", "/api/secrets/B_SECRET", json={"value": "FAILED"}, headers={"X-Optio-Workspace": "other"})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["field"] == "value" and "at least 8 characters" in error["message"]
    s.cli(*b, "secret", "set", "B_SECRET", "--value", "FAILED_01", check=True)

    report = 'echo "3 tests FAILED_01 in ws1"'
    s.cli("job", "create", "--name", "report", "--prompt", "go", "--command", report, check=True)
    s.cli(*b, "job", "create", "--name", "report", "--prompt", "go", "--command", report, check=True)
    _, a_lines = run_logs(s, "job", "run", "report")
    assert a_lines == ["3 tests FAILED_01 in ws1"]  # workspace A's logs are not B's to rewrite
    _, b_lines = run_logs(s, *b, "job", "run", "report")
    assert b_lines == ["3 tests *** in ws1"]

    # Encodings and a leaked prefix of B's secret, from a run that was given it.
    leak = ('printf %s "$B_SECRET" | base64; printf "x%s" "$B_SECRET" | base64; '
            'printf %s "$B_SECRET" | od -An -tx1 | tr -d " \\n"; echo; '
            'python3 -c "import os,urllib.parse as u; print(u.quote(\'?\'+os.environ[\'B_SECRET\']))"; '
            'printf "%s\\n" "$B_SECRET" | cut -c1-8')
    s.cli(*b, "job", "create", "--name", "leak", "--prompt", "go", "--command", leak, "--secret", "B_SECRET",
          check=True)
    _, leaked = run_logs(s, *b, "job", "run", "leak")
    assert len(leaked) == 5 and all("***" in line for line in leaked), leaked
    joined = " ".join(leaked)
    for form in ("RkFJTEVEXzAx", "GQUlMRURfMDE", "4641494c45445f3031", "FAILED_0"):
        assert form not in joined, (form, leaked)

    s.cli(*b, "secret", "rm", "B_SECRET", check=True)
    _, after = run_logs(s, *b, "job", "run", "report")
    assert after == ["3 tests FAILED_01 in ws1"]  # a deleted secret stops masking


def test_an_undecryptable_secret_is_reported_at_start_and_the_server_keeps_serving(
        optio_server: OptioServer) -> None:
    s = optio_server
    s.cli("secret", "set", "GOOD", "--value", TOKEN, check=True)
    s.cli("secret", "set", "BROKEN", "--value", DB_PASSWORD, check=True)
    assert s.api("GET", "/api/health").json()["unreadable_secrets"] == 0
    s.stop()
    with sqlite3.connect(s.data_dir / "optio.db") as db:  # BROKEN gets GOOD's ciphertext: it no longer opens
        db.execute("UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE name='GOOD') "
                   "WHERE name='BROKEN'")
    s.start()
    health = s.api("GET", "/api/health").json()
    assert health["status"] == "degraded" and health["unreadable_secrets"] == 1
    assert "secret_unreadable" in s.log() and '"name": "BROKEN"' in s.log()
    # The other secret still works and is still masked.
    s.cli("job", "create", "--name", "good", "--prompt", "go", "--command", 'echo "$GOOD"; echo "$GOOD" | rev',
          "--secret", "GOOD", check=True)
    run, lines = run_logs(s, "job", "run", "good")
    assert run["state"] == "completed" and lines == ["***", TOKEN[::-1]]
    s.cli("secret", "set", "BROKEN", "--value", DB_PASSWORD, check=True)  # setting it again repairs it
    assert s.api("GET", "/api/health").json() | {"queue_depth": 0} == health | {
        "status": "ok", "unreadable_secrets": 0, "queue_depth": 0}


def private(mode: int) -> bool:
    return mode & 0o077 == 0


def test_data_dir_and_everything_in_it_are_private_to_the_server(optio_server: OptioServer) -> None:
    s = optio_server
    s.cli("secret", "set", "API_TOKEN", "--value", TOKEN, check=True)
    s.cli("job", "create", "--name", "slow", "--prompt", "go", "--secret", "API_TOKEN",
          "--command", 'echo "$API_TOKEN"; sleep 4; echo done', check=True)
    run = s.api("POST", "/api/jobs/slow/runs", json={}).json()
    raw_modes: dict[str, int] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not raw_modes:
        for path in (s.data_dir / "runs").rglob("std*.log") if (s.data_dir / "runs").exists() else ():
            with contextlib.suppress(FileNotFoundError):
                raw_modes[str(path)] = stat.S_IMODE(path.stat().st_mode)
        time.sleep(0.05)
    assert raw_modes and all(mode == 0o600 for mode in raw_modes.values()), raw_modes
    assert s.wait_state(f"/api/runs/{run['id']}", {"completed"})["state"] == "completed"

    assert stat.S_IMODE(s.data_dir.stat().st_mode) == 0o700
    client_config = s.data_dir / "cli-config"  # the test's CLI keeps its config here; not the server's
    exposed = {str(p): oct(stat.S_IMODE(p.lstat().st_mode)) for p in s.data_dir.rglob("*")
               if not p.is_symlink() and client_config not in (p, *p.parents) and not private(p.lstat().st_mode)}
    assert exposed == {}
    for name in ("optio.db", "optio.db-wal", crypto.KEY_FILE_NAME, "session.secret"):
        path = s.data_dir / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_a_secret_written_during_a_rotation_survives_a_restart(optio_server: OptioServer,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The race of a write and a rotation, driven step by step over the server's own data dir, then a restart."""
    s = optio_server
    s.cli("secret", "set", "EXISTING", "--value", TOKEN, check=True)
    s.stop()
    store = SecretStore(Database(f"sqlite:///{s.data_dir / 'optio.db'}"), s.data_dir, None, Redactor())
    sealed, go = threading.Event(), threading.Event()
    real_version_of = crypto.key_version_of

    def pausing_version_of(token: str) -> int:  # between sealing the value and storing it
        if threading.current_thread().name == "writer":
            sealed.set()
            assert go.wait(10)
        return real_version_of(token)

    monkeypatch.setattr(crypto, "key_version_of", pausing_version_of)
    writer = threading.Thread(target=store.set, args=(1, "DURING", DB_PASSWORD), name="writer")
    writer.start()
    assert sealed.wait(10)
    rotation = threading.Thread(target=store.rotate_key, name="rotation")
    rotation.start()
    rotation.join(2)
    go.set()
    writer.join(10)
    rotation.join(10)
    monkeypatch.undo()
    assert json.loads((s.data_dir / crypto.KEY_FILE_NAME).read_text())["current"] == 2

    s.start()
    assert s.api("GET", "/api/health").json()["unreadable_secrets"] == 0
    s.cli("job", "create", "--name", "rev", "--prompt", "go", "--secret", "DURING", "--secret", "EXISTING",
          "--command", 'printf "%s" "$DURING" | rev; echo; printf "%s" "$EXISTING" | rev', check=True)
    run, lines = run_logs(s, "job", "run", "rev")
    assert run["state"] == "completed" and lines == [DB_PASSWORD[::-1], TOKEN[::-1]]
