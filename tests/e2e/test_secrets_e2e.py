"""Secrets through the real CLI and server: injected by name, never stored or shown in plaintext, rotatable."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import httpx
import pytest
from tests.support.optio_server import OptioServer

from optio.security import crypto

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
        reads = db.execute("SELECT target_id FROM audit_events WHERE action='secret.inject'").fetchall()
    assert ("API_TOKEN",) in reads
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
