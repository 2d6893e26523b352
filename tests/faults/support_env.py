"""Helpers of the environment fault tests: processes found by a marker, a held SQLite lock, a private PostgreSQL.

Each test file imports what it needs from here explicitly (the fault suite has no conftest).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.support.optio_server import OptioServer, free_port

T = TypeVar("T")
END = {"completed", "failed", "cancelled", "needs_attention"}


def new_marker() -> str:
    """A token unique to one test, carried by every process it starts (argv or environment)."""
    return f"optiofault{uuid.uuid4().hex[:12]}"


def marked_pids(marker: str) -> list[int]:
    """Pids of live processes (not zombies) whose command line or environment carries `marker`."""
    needle = marker.encode()
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        base = f"/proc/{entry}"
        try:
            with open(f"{base}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                    continue
            with open(f"{base}/cmdline", "rb") as fh:
                cmdline = fh.read()
            try:
                with open(f"{base}/environ", "rb") as fh:
                    environ = fh.read()
            except OSError:
                environ = b""
        except (OSError, IndexError):
            continue
        if needle in cmdline or needle in environ:
            found.append(int(entry))
    return found


def wait_for(check: Callable[[], T], what: str, timeout: float = 60.0, every: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def new_task(server: OptioServer, *args: str) -> dict[str, Any]:
    res = server.cli("task", "new", *args, "--json", check=True)
    return dict(json.loads(res.stdout))


# --- SQLite: another writer holds the database ------------------------------------------------------------

_HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
db.close()
print("released", flush=True)
"""


@contextmanager
def sqlite_held(path: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holds `path`'s write lock (BEGIN EXCLUSIVE) for `seconds`; yields once it holds it.

    Leaving the block waits for the holder to let go (it is killed if the block raised).
    """
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        yield proc
        proc.wait(seconds + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# --- PostgreSQL: a private cluster this test may stop and start -------------------------------------------

def postgres_bin() -> Path:
    """The PostgreSQL server binaries scripts/start-test-postgres.sh uses (skip without them, fail in CI)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: [int(x) for x in p.parent.name.split(".")
                                                                             if x.isdigit()])
    if found and (found[-1] / "initdb").exists():
        return found[-1]
    if os.environ.get("CI") == "true":
        pytest.fail("PostgreSQL server binaries are missing; CI installs them (scripts/start-test-postgres.sh)")
    pytest.skip("PostgreSQL server binaries not installed (scripts/start-test-postgres.sh installs them)")


class PrivatePostgres:
    """A throwaway cluster in a temporary dir on a free port, owned by one test (so it may be stopped)."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        # Outside pytest's tmp_path, whose parents the `postgres` user (the server as root) cannot enter.
        self.root = Path(tempfile.mkdtemp(prefix="optio-fault-pg."))
        self.data = self.root / "pgdata"
        self.port = free_port()
        self.url = f"postgresql+psycopg://optio@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []
        if os.getuid() == 0:  # PostgreSQL refuses to run as root
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as, *argv], check=True, capture_output=True, timeout=120)

    def init(self) -> PrivatePostgres:
        self.data.mkdir(parents=True)
        if self._as:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.data, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "optio")
        return self.start()

    def start(self) -> PrivatePostgres:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.data / "server.log"), "-o",
                  f"-p {self.port} -h 127.0.0.1 -k {self.data} -c fsync=off -c max_connections=100", "start")
        return self

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop")

    def destroy(self) -> None:
        subprocess.run([*self._as, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


# --- work in flight across an outage: repo tasks whose agents print until let go, and a job that counts -----

# Prints numbered lines until the test lets it go (a file in its HOME), then changes the repo so CI passes.
GATED_AGENT = ('i=0; touch "$HOME/ready"; until [ -f "$HOME/gate" ]; do i=$((i+1)); echo "tick $i"; sleep 0.1; '
               'done; echo "last $i"; echo done > done.txt')
GATED_CI = "test -f done.txt"
COUNTING_JOB = 'for i in $(seq 1 {n}); do echo "line $i"; sleep 0.1; done'


class InFlight:
    """Repo tasks with running agents and a running job on one server, started before an outage."""

    def __init__(self, server: OptioServer, tmp_path: Path, *, tasks: int = 3, job_lines: int = 300) -> None:
        from tests.support.git_remote import make_remote

        self.server = server
        self.job_lines = job_lines
        remote = make_remote(tmp_path)
        server.cli("repo", "add", str(remote), "--name", "outage", "--ci-command", GATED_CI, check=True)
        server.cli("job", "create", "--name", "counter", "--prompt", "count",
                   "--command", COUNTING_JOB.format(n=job_lines), check=True)
        self.tasks = [new_task(server, "--repo", "outage", "--title", f"Task {i}", "--prompt", "p",
                               "--command", GATED_AGENT)["id"] for i in range(tasks)]
        self.job_run = int(json.loads(server.cli("job", "run", "counter", "--json", check=True).stdout)["id"])
        for task_id in self.tasks:
            wait_for(lambda t=task_id: (self.home(t) / "ready").exists(), f"task {task_id}'s agent to start")
        wait_for(lambda: self.job_logs(), "the job to print")

    def home(self, task_id: int) -> Path:
        return self.server.data_dir / "homes" / f"repo_task-{task_id}"

    def let_agents_finish(self) -> None:
        for task_id in self.tasks:
            (self.home(task_id) / "gate").touch()

    def job_logs(self) -> list[str]:
        return self.server.cli("run", "logs", str(self.job_run), check=True).stdout.splitlines()

    def task_logs(self, task_id: int) -> list[str]:
        items = self.server.api("GET", f"/api/repo-tasks/{task_id}/logs", params={"limit": 5000}).json()["items"]
        return [item["text"] for item in items if item.get("stream") in ("stdout", None)]

    def assert_all_done(self, timeout: float = 120.0) -> None:
        """Every task merged and the job completed, none failed, every line stored once and in order."""
        for task_id in self.tasks:
            final = self.server.wait_state(f"/api/repo-tasks/{task_id}", END, timeout=timeout)
            assert (final["state"], final["pr_state"]) == ("completed", "merged"), (final, self.server.log()[-3000:])
            assert final["resume_count"] == 0, final
            lines = [line for line in self.task_logs(task_id) if line.startswith(("tick ", "last "))]
            ticks = int(lines[-1].split()[1])
            assert lines == [f"tick {i}" for i in range(1, ticks + 1)] + [f"last {ticks}"], lines[-5:]
        run = self.server.wait_state(f"/api/runs/{self.job_run}", END, timeout=timeout)
        assert run["state"] == "completed", run
        assert self.job_logs() == [f"line {i}" for i in range(1, self.job_lines + 1)]
