"""Helpers of the crash and disk fault tests: an invocation ledger outside Optio, and end-state checks.

The ledger is a TCP server in the test process. Agents run sandboxed (they can write only their worktree and
their own HOME, both inside Optio's data dir) but share the host's network, so each invocation reports itself
over 127.0.0.1: a count Optio cannot touch, kept by a process that no kill of the server reaches.
"""

from __future__ import annotations

import errno
import os
import shutil
import socketserver
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.support.git_remote import git
from tests.support.optio_server import OptioServer


class Ledger:
    """Lines the agents sent, in arrival order, each a list of words."""

    def __init__(self) -> None:
        self.entries: list[list[str]] = []
        self._lock = threading.Lock()

    def add(self, line: str) -> None:
        if line.strip():
            with self._lock:
                self.entries.append(line.split())

    def snapshot(self) -> list[list[str]]:
        with self._lock:
            return list(self.entries)


@contextmanager
def ledger_server() -> Iterator[tuple[Ledger, int]]:
    """A ledger and the 127.0.0.1 port agents report to (`bash -c 'echo ... > /dev/tcp/127.0.0.1/PORT'`)."""
    ledger = Ledger()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for raw in self.rfile:
                ledger.add(raw.decode(errors="replace"))

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    with Server(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, name="ledger", daemon=True)
        thread.start()
        try:
            yield ledger, int(server.server_address[1])
        finally:
            server.shutdown()


def report_line(port: int, words: str) -> str:
    """Shell that sends one ledger line (`words` expanded by the agent's shell) over bash's /dev/tcp."""
    return f"echo \"{words}\" | bash -c 'cat > /dev/tcp/127.0.0.1/{port}'"


def all_logs(server: OptioServer, task_id: int) -> list[dict[str, Any]]:
    """Every stored log line of a task, paging through the API."""
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        page = server.api("GET", f"/api/repo-tasks/{task_id}/logs", params={"after": after, "limit": 1000}).json()
        items += page["items"]
        if not page["items"]:
            return items
        after = page["items"][-1]["seq"]


def leftover_processes(root: Path) -> list[str]:
    """Processes (other than this test's) whose command line or working directory is under `root`."""
    found: list[str] = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        if proc.pid == psutil.Process().pid:
            continue
        cmd = " ".join(proc.info["cmdline"] or [])
        cwd = proc.info["cwd"] or ""
        if str(root) in cmd or cwd.startswith(str(root)):
            found.append(f"{proc.pid}: {cmd} (cwd {cwd})")
    return found


def integrity(db_path: Path) -> str:
    with sqlite3.connect(db_path) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def leftover_checkouts(data_dir: Path) -> list[str]:
    """Task worktrees, CI and merge scratch checkouts left in the data dir and in the repo caches' worktree lists."""
    found: list[str] = []
    for name in ("worktrees", "ci", "merges"):
        root = data_dir / name
        if root.exists():
            found += [str(p) for p in root.iterdir()]
    for cache in (data_dir / "repos").glob("*/cache.git"):
        listed = git("worktree", "list", "--porcelain", cwd=cache).splitlines()
        found += [line for line in listed if line.startswith("worktree ") and Path(line.split(" ", 1)[1]) != cache]
    return found


@contextmanager
def small_filesystem(path: Path, size_mb: int) -> Iterator[Path]:
    """A real filesystem of `size_mb` at `path` (tmpfs; mounting needs root or sudo, as in CI), unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    sudo = ["sudo", "-n"] if os.geteuid() != 0 and shutil.which("sudo") else []
    options = f"size={size_mb}m,mode=0700,uid={os.getuid()},gid={os.getgid()}"
    res = subprocess.run([*sudo, "mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        message = f"cannot mount a small filesystem here: {res.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield path
    finally:
        subprocess.run([*sudo, "umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> int:
    """Write `path` until the filesystem under it is full (ENOSPC); the bytes written."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as fh:
        while chunk:
            try:
                written += fh.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk = chunk[: len(chunk) // 2]
    return written
